"""Config dataclasses shared by every algorithm, and their validation.

Configs are frozen and validated on construction: a bad value raises ``ValueError`` naming the
field, the value and what is allowed. Field names follow Stable-Baselines3 / RL-Zoo where the
concept is the same, so a Zoo hyperparameter file translates line for line. The field docstrings
are the CLI's help text (tyro reads them).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np


def require(name: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise ``ValueError("name=value is invalid: allowed")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: {allowed}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they are (``np.int64(3)`` is a valid seed); tuples inside."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
MAX_N_ENVS = 4096  # more is a typo, not a plan: 10^6 envs took minutes to build and then hung
MAX_TORCH_THREADS = 1024  # torch.set_num_threads(100000) segfaults


def positive_int(name: str, value: Any) -> None:
    require(name, value, _is_int(value) and value >= 1, "must be an integer >= 1")


def non_negative_int(name: str, value: Any) -> None:
    require(name, value, _is_int(value) and value >= 0, "must be an integer >= 0")


def in_range(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = (
        _is_num(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    require(name, value, ok, f"must be a number in {left}{low}, {high}{right}")


def positive(name: str, value: Any) -> None:
    require(name, value, _is_num(value) and value > 0, "must be a finite number > 0")


def non_negative(name: str, value: Any) -> None:
    require(name, value, _is_num(value) and value >= 0, "must be a finite number >= 0")


def fits_rollout(name: str, value: Any, n_steps: int, n_envs: int) -> None:
    """A minibatch size: an integer from 1 to the rollout's n_steps × n_envs samples."""
    positive_int(name, value)
    require(
        name, value, value <= n_steps * n_envs, f"must be <= n_steps × n_envs = {n_steps * n_envs} (the rollout size)"
    )


def flag(name: str, value: Any) -> None:
    """A real boolean (numpy's too): the string "no" is truthy."""
    require(name, value, isinstance(value, (bool, np.bool_)), "must be True or False")


def sizes(name: str, value: Any, optional: bool = False) -> None:
    """Hidden layer sizes: a tuple of integers >= 1 (or None where ``optional``)."""
    ok = (optional and value is None) or (isinstance(value, tuple) and all(_is_int(h) and h >= 1 for h in value))
    require(name, value, ok, "must be a tuple of integers >= 1" + (" or None" if optional else ""))


def critic_sizes(cfg) -> tuple[int, ...]:
    """The critics' hidden sizes of an off-policy config: ``critic_hidden_sizes``, else ``hidden_sizes``."""
    return cfg.hidden_sizes if cfg.critic_hidden_sizes is None else cfg.critic_hidden_sizes


def critic_options(cfg) -> dict:
    """The Q critics' network options of an off-policy config (``QEnsemble``'s keyword arguments)."""
    return dict(
        activation=cfg.activation, layer_norm=cfg.critic_layer_norm, dropout=cfg.critic_dropout, network=cfg.network
    )


def valid_seed(name: str, value: Any) -> None:
    require(name, value, _is_int(value) and 0 <= value < 2**31, "must be an integer in [0, 2^31)")


def one_of(name: str, value: Any, choices: tuple) -> None:
    require(name, value, value in choices, f"must be one of {', '.join(map(repr, choices))}")


@dataclass(frozen=True)
class RunConfig:
    """What every run has, whatever the algorithm."""

    env: str = "CartPole-v1"
    """Gymnasium environment id."""
    total_steps: int = 100_000
    """Environment steps to train for (summed over the parallel envs)."""
    seed: int = 0
    """Seed for python, numpy, torch and the environments (sub-env i gets seed + i)."""
    n_envs: int = 1
    """Number of parallel environments."""
    vectorization: Literal["sync", "async"] = "sync"
    """Step the envs in this process (sync) or in subprocesses (async)."""
    normalize_obs: bool = False
    """Running mean/std normalisation of observations (saved with the agent, frozen at evaluation)."""
    network: Literal["mlp", "simba"] = "mlp"
    """Hidden layers: plain MLPs, or SimBa's residual blocks (Lee et al., ICLR 2025; needs normalize_obs)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    device: str = "auto"
    """Torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps."""
    torch_threads: int = 1
    """Torch CPU threads (1 is fastest for small MLPs on small machines: see benchmarks/)."""
    mixed_precision: Literal["off", "bf16"] = "off"
    """bf16: each update's matrix products and convolutions in bfloat16 (torch.autocast); weights, gradients,
    optimiser state, losses, acting and evaluation stay float32. Pays on CPUs with AMX or AVX512-BF16 and on
    GPUs (benchmarks/RESULTS.md); not for trpo, npg (their conjugate gradient) or a3c (its workers' gradients)."""
    flush_denormals: bool = True
    """Inside each update on the CPU, read and write float32 subnormals (|x| < 1.2e-38) as zero (x86 FTZ/DAZ, as
    XLA runs): they occur in trained networks' Adam moments and gradients, at ~100 cycles each. False: IEEE."""
    eval_episodes: int = 10
    """Deterministic evaluation episodes at the end of training (0 to skip)."""
    eval_every: int = 0
    """Also evaluate every this many steps during training (0: only at the end): a row in eval.csv, a line
    on stdout, TensorBoard, and best_model.safetensors whenever the mean return improves."""
    eval_deterministic: bool = True
    """Evaluate with the policy's mode (False: sample actions)."""
    stop_at_return: float | None = None
    """Stop training once an evaluation's mean return reaches this (needs eval_every > 0)."""
    save_final_checkpoint: bool = False
    """Keep the training state at the end, so `pgrad train --resume RUN --total-steps N` can extend the run
    (runs with checkpoint_every > 0 keep it anyway)."""
    init_from: str | None = None
    """Start from the policy weights and observation normaliser of this saved run (fine-tuning; same spaces)."""
    checkpoint_every: int = 0
    """Save the agent every this many steps (0: only at the end)."""
    log_interval: int = 1
    """Write a progress row every this many updates (and after the last)."""
    run_dir: str | None = None
    """Run directory (default runs/<algo>-<env>-<seed>-<time>)."""
    overwrite: bool = False
    """Allow writing into an existing run directory."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    progress_bar: bool = True
    """Show a progress bar while training (plain lines every few seconds where stderr is not a terminal)."""
    track: tuple[str, ...] = ()
    """Also log to these experiment trackers: wandb (WANDB_MODE=offline works without an account), mlflow."""
    track_project: str = "pgrad"
    """The W&B project / MLflow experiment of tracked runs."""
    tracking_uri: str | None = None
    """MLflow's tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)."""
    verbose: int = 1
    """0: nothing on stdout; 1: evaluation lines and the final summary; 2: also every progress row."""
    images: Literal["auto", "channels-first", "channels-last", "off"] = "auto"
    """Which 3-dim Box observations are images for a CNN: auto (uint8 in [0, 255], as SB3 detects them),
    channels-first/-last (every 3-dim Box, that channel order), off (none: flattened)."""
    frame_stack: int = 1
    """Observe the last N observations stacked (gymnasium's FrameStackObservation; 1: off)."""
    preprocess: Literal["none", "atari"] = "none"
    """atari: gymnasium's AtariPreprocessing as RL Zoo applies it (no-op reset, frame skip 4, 84×84 gray,
    terminal on life loss)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, plain(getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):  # flags must be real booleans: "no" is truthy
            if f.type in ("bool", bool):
                flag(f.name, getattr(self, f.name))
        require("env", self.env, isinstance(self.env, str) and bool(self.env), "must be a gymnasium env id")
        positive_int("total_steps", self.total_steps)
        valid_seed("seed", self.seed)
        require("n_envs", self.n_envs, _is_int(self.n_envs) and 1 <= self.n_envs <= MAX_N_ENVS,
                f"must be an integer in [1, {MAX_N_ENVS}]")  # fmt: skip
        one_of("vectorization", self.vectorization, ("sync", "async"))
        require("device", self.device, isinstance(self.device, str) and DEVICE.fullmatch(self.device) is not None,
                "must be auto, cpu, cuda, cuda:N or mps")  # fmt: skip
        require("torch_threads", self.torch_threads, _is_int(self.torch_threads) and
                1 <= self.torch_threads <= MAX_TORCH_THREADS, f"must be an integer in [1, {MAX_TORCH_THREADS}]")  # fmt: skip
        one_of("mixed_precision", self.mixed_precision, ("off", "bf16"))
        require("run_dir", self.run_dir, self.run_dir is None or (isinstance(self.run_dir, str) and
                bool(self.run_dir.strip()) and "\0" not in self.run_dir), "must be a directory path (not empty)")  # fmt: skip
        non_negative_int("eval_episodes", self.eval_episodes)
        non_negative_int("eval_every", self.eval_every)
        non_negative_int("checkpoint_every", self.checkpoint_every)
        if self.stop_at_return is not None:
            require("stop_at_return", self.stop_at_return, _is_num(self.stop_at_return), "must be a finite number")
            require("stop_at_return", self.stop_at_return, self.eval_every > 0,
                    "needs eval_every > 0 (it stops on an evaluation during training)")  # fmt: skip
        require("init_from", self.init_from, self.init_from is None or (isinstance(self.init_from, str) and
                bool(self.init_from.strip())), "must be the path of a saved run or agent")  # fmt: skip
        require("track", self.track, isinstance(self.track, tuple) and len(set(self.track)) == len(self.track)
                and all(t in ("wandb", "mlflow") for t in self.track), "must be a tuple of 'wandb', 'mlflow'")  # fmt: skip
        require("track_project", self.track_project, isinstance(self.track_project, str) and bool(self.track_project),
                "must be a name")  # fmt: skip
        require("verbose", self.verbose, self.verbose in (0, 1, 2) and _is_int(self.verbose), "must be 0, 1 or 2")
        positive_int("log_interval", self.log_interval)
        one_of("images", self.images, ("auto", "channels-first", "channels-last", "off"))
        require("frame_stack", self.frame_stack, _is_int(self.frame_stack) and 1 <= self.frame_stack <= 64,
                "must be an integer in [1, 64]")  # fmt: skip
        one_of("preprocess", self.preprocess, ("none", "atari"))
        one_of("network", self.network, ("mlp", "simba"))
        if self.network == "simba":
            require("normalize_obs", self.normalize_obs, self.normalize_obs,
                    "must be True with network='simba' (its running observation normalisation)")  # fmt: skip
            for name in ("hidden_sizes", "vf_hidden_sizes", "critic_hidden_sizes"):
                sizes = getattr(self, name, None)
                require(name, sizes, sizes is None or (len(sizes) >= 1 and len(set(sizes)) == 1),
                        "must be one width repeated with network='simba' (w × residual blocks, e.g. (256, 256))")  # fmt: skip

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PolicyConfig(RunConfig):
    """A policy network trained by gradient: discount, optimiser and architecture."""

    gamma: float = 0.99
    """Discount factor γ."""
    learning_rate: float = 3e-4
    """Initial learning rate."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Constant, or linear decay to 0 over training (CHECKLIST item 10)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (0 disables)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy network (and of the value network unless vf_hidden_sizes is set)."""
    vf_hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer sizes of the value network (SB3's net_arch=dict(pi=..., vf=...)); None: hidden_sizes."""
    activation: Literal["tanh", "relu", "elu", "silu"] = "tanh"
    """Hidden activation."""
    shared_network: bool = False
    """One torso for policy and value (default: separate networks)."""
    ortho_init: bool = True
    """Orthogonal init (gains √2 hidden, 0.01 policy head, 1 value head)."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (Box actions)."""
    state_dependent_std: bool = False
    """Gaussian log-std from a network head instead of a free parameter."""
    workers: int = 0
    """Ray rollout workers sharing the n_envs envs (0: sample in this process). Same result as 0."""
    ray_address: str | None = None
    """Ray cluster to join with workers > 0 (default: start a local Ray runtime on this machine's cores)."""

    def validate(self) -> None:
        super().validate()
        in_range("gamma", self.gamma, 0.0, 1.0)
        positive("learning_rate", self.learning_rate)
        one_of("lr_schedule", self.lr_schedule, ("constant", "linear"))
        non_negative("max_grad_norm", self.max_grad_norm)
        require(
            "hidden_sizes",
            self.hidden_sizes,
            isinstance(self.hidden_sizes, tuple) and all(_is_int(h) and h >= 1 for h in self.hidden_sizes),
            "must be a tuple of integers >= 1",
        )
        one_of("activation", self.activation, ("tanh", "relu", "elu", "silu"))
        sizes("vf_hidden_sizes", self.vf_hidden_sizes, optional=True)
        if self.vf_hidden_sizes is not None and self.shared_network:
            require("vf_hidden_sizes", self.vf_hidden_sizes, False, "must be None with shared_network=True")
        in_range("log_std_init", self.log_std_init, -20.0, 2.0)
        require("workers", self.workers, _is_int(self.workers) and self.workers >= 0, "must be an integer >= 0")
        if self.workers and self.n_envs % self.workers:
            raise ValueError(f"workers={self.workers} is invalid: must divide n_envs={self.n_envs}")


@dataclass(frozen=True)
class OnPolicyConfig(PolicyConfig):
    """Collect ``n_steps`` × ``n_envs`` transitions, estimate advantages, update."""

    GAE_LAMBDA_OPTIONAL: ClassVar[bool] = False  # True where None selects n-step returns (A2C)
    RECURRENT: ClassVar[bool] = True  # whether the algorithm takes a recurrent policy (rnn)

    n_steps: int = 2048
    """Steps per env per rollout (T)."""
    gae_lambda: float = 0.95
    """GAE λ: 1 is the Monte Carlo advantage, 0 the one-step TD error."""
    use_sde: bool = False
    """gSDE (Box actions): exploration noise θ_εᵀφ(s) from the policy's features, ε held for sde_sample_freq steps."""
    sde_sample_freq: int = -1
    """Draw gSDE's ε every this many steps (-1: only at each rollout's start), as SB3."""
    full_std: bool = True
    """gSDE's σ per (feature, action dim); False: one per feature, shared by the action dims."""
    rnn: Literal["none", "lstm", "gru"] = "none"
    """A recurrent core between the observation and the MLPs (sb3-contrib's RecurrentPPO): none, lstm or gru."""
    rnn_hidden_size: int = 256
    """Units of the recurrent core (sb3-contrib's lstm_hidden_size)."""
    rnn_layers: int = 1
    """Stacked recurrent layers (sb3-contrib's n_lstm_layers)."""
    rnn_shared: bool = False
    """One recurrent core for π and V (V reads it detached, as sb3-contrib's shared_lstm); default: one each."""

    def validate(self) -> None:
        super().validate()
        positive_int("n_steps", self.n_steps)
        if not (self.gae_lambda is None and self.GAE_LAMBDA_OPTIONAL):
            in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        flag("use_sde", self.use_sde)
        flag("full_std", self.full_std)
        require("sde_sample_freq", self.sde_sample_freq,
                _is_int(self.sde_sample_freq) and (self.sde_sample_freq == -1 or self.sde_sample_freq >= 1),
                "must be -1 (only at each rollout's start) or an integer >= 1")  # fmt: skip
        if self.use_sde and self.state_dependent_std:
            require("state_dependent_std", True, False, "must be False with use_sde=True (gSDE's σ is its own)")
        one_of("rnn", self.rnn, ("none", "lstm", "gru"))
        positive_int("rnn_hidden_size", self.rnn_hidden_size)
        positive_int("rnn_layers", self.rnn_layers)
        flag("rnn_shared", self.rnn_shared)
        if self.rnn != "none":
            if not self.RECURRENT:
                raise ValueError(
                    f"rnn={self.rnn!r} is invalid here: a recurrent policy is available for ppo, a2c, a3c and "
                    "actor_critic (this algorithm's update needs feed-forward states)"
                )
            if self.shared_network:
                require(
                    "shared_network", True, False, "must be False with a recurrent policy (rnn_shared shares the core)"
                )


def schedule(value: float, kind: str, progress_remaining: float) -> float:
    """``value`` held constant, or decayed linearly to 0 as ``progress_remaining`` goes 1 → 0."""
    return value * progress_remaining if kind == "linear" else value


def set_learning_rate(optimizer, learning_rate: float) -> None:
    """Apply a scheduled learning rate to every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def to_jsonable(config: RunConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_jsonable(config_class: type[RunConfig], values: dict[str, Any]) -> RunConfig:
    names = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for {config_class.__name__}")
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class TrustRegionConfig(OnPolicyConfig):
    """What NPG and TRPO share (field names as sb3-contrib's TRPO). ``learning_rate`` is the critic's."""

    RECURRENT: ClassVar[bool] = False  # the Fisher products and the value fit take independent states

    learning_rate: float = 1e-3
    """The critic's Adam learning rate (the policy moves by the natural-gradient step)."""
    target_kl: float = 0.01
    """δ, the trust region's size: the mean KL(π_θold‖π_θ') ≤ δ over the batch's states."""
    cg_max_steps: int = 15
    """Conjugate-gradient iterations to solve F x = ∇L."""
    cg_damping: float = 0.1
    """ζ in (F + ζI): keeps the solve well-posed (CHECKLIST item 23)."""
    cg_tolerance: float = 1e-10
    """Stop CG once the squared residual is below this."""
    n_critic_updates: int = 10
    """Epochs of value regression on the GAE returns per update."""
    batch_size: int = 128
    """Minibatch size of the value regression."""
    normalize_advantage: bool = True
    """Normalise advantages over the whole batch."""

    def validate(self) -> None:
        super().validate()
        positive("target_kl", self.target_kl)
        positive_int("cg_max_steps", self.cg_max_steps)
        non_negative("cg_damping", self.cg_damping)
        positive("cg_tolerance", self.cg_tolerance)
        positive_int("n_critic_updates", self.n_critic_updates)
        fits_rollout("batch_size", self.batch_size, self.n_steps, self.n_envs)
        require("mixed_precision", self.mixed_precision, self.mixed_precision == "off",
                "must be 'off' for trpo and npg: the conjugate gradient and line search need float32 Fisher products")  # fmt: skip


@dataclass(frozen=True)
class OffPolicyConfig(RunConfig):
    """Act → store → sample → update, from a replay buffer (field names as SB3's)."""

    gamma: float = 0.99
    """Discount factor γ."""
    learning_rate: float = 3e-4
    """Learning rate of every network (Adam)."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Constant, or decayed linearly to 0 over training (every optimiser, SAC's temperature's too, as SB3)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 100
    """Uniformly random actions for this many env steps before learning starts."""
    batch_size: int = 256
    """Transitions per gradient step."""
    tau: float = 0.005
    """Polyak factor of the target networks: θ' ← τθ + (1 − τ)θ'."""
    train_freq: int = 1
    """Vector-env steps between training rounds (finished episodes with train_freq_unit=episode)."""
    train_freq_unit: Literal["step", "episode"] = "step"
    """What train_freq counts: vector-env steps, or finished episodes (SB3's train_freq=(n, "episode"))."""
    gradient_steps: int = 1
    """Gradient steps per training round (-1: as many as env steps since the last round)."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor (and of the critics unless critic_hidden_sizes is set)."""
    critic_hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer sizes of the critics (SB3's net_arch=dict(pi=..., qf=...)); None: hidden_sizes."""
    activation: Literal["relu", "tanh", "elu", "silu"] = "relu"
    """Hidden activation of the actor and critics."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden layer of the Q critics (Ball et al. 2023; DroQ's)."""
    critic_dropout: float = 0.0
    """Dropout rate in each hidden layer of the Q critics, targets included (DroQ: 0.01 with LayerNorm and
    gradient_steps ≈ 20, Hiraoka et al., ICLR 2022)."""
    log_interval: int = 200
    """Write a progress row every this many training rounds."""
    n_steps: int = 1
    """n-step targets: y = Σ_{k<n} γ^k r_{t+k} + γ^n (1 − d) V(s_{t+n}), cut where an episode ends (SB3's n_steps)."""
    save_replay_buffer: bool = True
    """Keep the replay buffer in checkpoints (exact resume); without it a resumed run refills it."""
    optimize_memory_usage: bool = False
    """Store each observation once (the next one is the same env's next row; episode ends' real final
    observations kept on the side): half the buffer's memory, as SB3's option, truncations still exact."""

    def validate(self) -> None:
        super().validate()
        in_range("gamma", self.gamma, 0.0, 1.0)
        positive("learning_rate", self.learning_rate)
        one_of("lr_schedule", self.lr_schedule, ("constant", "linear"))
        positive_int("buffer_size", self.buffer_size)
        require(
            "n_steps",
            self.n_steps,
            _is_int(self.n_steps) and 1 <= self.n_steps <= 1000,
            "must be an integer in [1, 1000]",
        )
        if self.n_steps > 1 and self.optimize_memory_usage:
            require("n_steps", self.n_steps, False, "must be 1 with optimize_memory_usage (not combined yet)")
        non_negative_int("learning_starts", self.learning_starts)
        positive_int("batch_size", self.batch_size)
        in_range("tau", self.tau, 0.0, 1.0, low_open=True)
        positive_int("train_freq", self.train_freq)
        one_of("train_freq_unit", self.train_freq_unit, ("step", "episode"))
        require("gradient_steps", self.gradient_steps, _is_int(self.gradient_steps) and
                (self.gradient_steps >= 1 or self.gradient_steps == -1), "must be an integer >= 1, or -1")  # fmt: skip
        if self.optimize_memory_usage:
            require("learning_starts", self.learning_starts, self.learning_starts > self.n_envs,
                    f"must be > n_envs={self.n_envs} with optimize_memory_usage (a row's successor is the next "
                    "vector step's)")  # fmt: skip
            require("buffer_size", self.buffer_size, self.buffer_size > self.n_envs,
                    f"must be > n_envs={self.n_envs} with optimize_memory_usage")  # fmt: skip
        sizes("critic_hidden_sizes", self.critic_hidden_sizes, optional=True)
        one_of("activation", self.activation, ("relu", "tanh", "elu", "silu"))
        in_range("critic_dropout", self.critic_dropout, 0.0, 1.0, high_open=True)
        if self.network == "simba":
            require("critic_layer_norm", self.critic_layer_norm, not self.critic_layer_norm,
                    "must be False with network='simba' (its blocks are layer-normalised)")  # fmt: skip
            require("critic_dropout", self.critic_dropout, self.critic_dropout == 0, "must be 0 with network='simba'")
        require(
            "hidden_sizes",
            self.hidden_sizes,
            isinstance(self.hidden_sizes, tuple) and all(_is_int(h) and h >= 1 for h in self.hidden_sizes),
            "must be a tuple of integers >= 1",
        )


@dataclass(frozen=True)
class DeterministicConfig(OffPolicyConfig):
    """A deterministic actor μ(s) explored with additive noise (DDPG, TD3)."""

    learning_rate: float = 1e-3
    """Learning rate of the actor and the critics (Adam)."""
    hidden_sizes: tuple[int, ...] = (400, 300)
    """Hidden layer sizes of the actor and the critics."""
    noise: Literal["normal", "ou"] = "normal"
    """Exploration noise: Gaussian, or Ornstein–Uhlenbeck (the DDPG paper's)."""
    noise_std: float = 0.1
    """σ of the exploration noise, in units of half the action range."""
    ou_theta: float = 0.15
    """θ, the mean reversion rate of the OU noise."""

    def validate(self) -> None:
        super().validate()
        one_of("noise", self.noise, ("normal", "ou"))
        positive("noise_std", self.noise_std)
        in_range("ou_theta", self.ou_theta, 0.0, 1.0, low_open=True)
