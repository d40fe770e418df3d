"""The on-policy loops: collect T × N transitions → estimate → update (and REINFORCE's whole episodes).

An on-policy algorithm supplies ``policy`` (an :class:`~pgrad.networks.ActorCritic`) and
``update(buffer, progress_remaining) -> dict[str, float]``, one update from a full buffer.

The loop owns everything else: the env, acting (``a ~ π_θold`` from one seeded stream per env,
:class:`EnvSlice`), the buffer, the bootstrap values of the real final observations at truncations
(CHECKLIST items 1-3), episode statistics, and calling ``on_update`` (logging, evaluation,
checkpoints) after each update. ``update`` never writes files or prints.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from pgrad.buffers import CompactReplayBuffer, EpisodeBuffer, NStepReplayBuffer, ReplayBuffer, RolloutBuffer
from pgrad.config import schedule, set_learning_rate
from pgrad.distributions import EnvGenerators
from pgrad.envs import VecEnv
from pgrad.estimators import n_step_return
from pgrad.networks import reset_where
from pgrad.optim import norms
from pgrad.spaces import action_storage

# A finished episode: (step of the rollout it ended at, env index in the run, return, length)
Episode = tuple[int, int, float, int]
OnUpdate = Callable[[int, dict[str, float]], None]  # (global_step, metrics) after each update
Poll = Callable[[int], None]  # (global_step) where a loop may stop: checkpoints, stop requests


def no_poll(global_step: int) -> None:
    """The default ``poll``: nothing to check between steps."""


class OnPolicyAlgorithm(Protocol):
    cfg: object  # with .seed
    policy: torch.nn.Module

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]: ...


class EnvSlice:
    """How a loop acts for its environments: envs ``env_ids`` of a run with ``n_total`` of them.

    Env ``i``'s actions come from its own generator (seeded from the run's seed and ``i``), and the
    policy always sees a batch shaped for all ``n_total`` envs with this slice's rows in their
    places: a matrix product's rounding depends on the batch's shape and a row's place in it, not
    on the other rows. So a loop stepping a slice (a Ray rollout worker, ``pgrad.distributed``)
    computes bit for bit what the single-process loop computes for those envs. A single process is
    the slice of all envs, and then nothing is padded.
    """

    not_state = ("env_ids", "n_total", "rows")

    def __init__(self, seed: int, env_ids: Sequence[int], n_total: int, device: torch.device | str = "cpu"):
        self.env_ids, self.n_total = [int(i) for i in env_ids], n_total
        self.rows = slice(self.env_ids[0], self.env_ids[-1] + 1)
        self.streams = EnvGenerators(seed + 1, self.env_ids, device)

    def _full(self, obs: Tensor) -> Tensor:
        if len(self.env_ids) == self.n_total:
            return obs
        full = obs.new_zeros((self.n_total, *obs.shape[1:]))
        full[self.rows] = obs
        return full

    def _mine(self, x):
        return x if len(self.env_ids) == self.n_total else x[self.rows]

    def act(self, policy, obs: Tensor, exploration: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``a ~ π(·|s)``: ``(actions, log π(a|s), V(s))`` for this slice's observations (gSDE's
        from its held ``exploration`` noise, :meth:`exploration_noise`)."""
        dist, values = policy(self._full(obs))
        dist, values = self._mine(dist), self._mine(values)
        actions = dist.sample(self.streams if exploration is None else exploration)
        return actions, dist.log_prob(actions), values

    def exploration_noise(self, shape: tuple[int, int], like: Tensor) -> Tensor:
        """gSDE's ε ``[n_envs, d, D]`` ~ N(0, 1), each env's from its own stream."""
        return self.streams.draw("normal", torch.Size((len(self.env_ids), *shape)), like)

    def value(self, policy, obs: Tensor) -> Tensor:
        return self._mine(policy.value(self._full(obs)))

    def act_recurrent(
        self, policy, obs: Tensor, state: Tensor, exploration: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``a ~ π(·|s, h)`` of a recurrent policy from the envs' states (reset where an episode
        starts): ``(actions, log π(a|s, h), V, next states)``."""
        dist, values, state = policy.step(self._full(obs), self._full(state))
        dist, values = self._mine(dist), self._mine(values)
        actions = dist.sample(self.streams if exploration is None else exploration)
        return actions, dist.log_prob(actions), values, self._mine(state)

    def value_recurrent(self, policy, obs: Tensor, state: Tensor) -> Tensor:
        return self._mine(policy.step_value(self._full(obs), self._full(state)))

    def ended(self, t: int, dones: np.ndarray) -> list[tuple[int, int]]:
        """``(t, env index in the run)`` of each episode ending at step ``t``, in the env's order."""
        return [(t, self.env_ids[i]) for i in np.flatnonzero(dones)]


def tag_episodes(ended: list[tuple[int, int]], env: VecEnv) -> list[Episode]:
    """Pair the ``(t, env)`` of each ending, in order, with the env's recorded returns and lengths."""
    returns, lengths = env.pop_episodes()
    return [(t, i, r, n) for (t, i), r, n in zip(ended, returns, lengths, strict=True)]


def restart_episodes(loop) -> None:
    """Let ``loop`` start new episodes at its next step (an env whose simulator state was not
    restored): a fresh reset, and a recurrent policy's states from 0."""
    loop.obs = None
    if getattr(loop, "recurrent", False):
        loop.episode_start[:] = True


@contextmanager
def precision(cfg, device: torch.device) -> Iterator[None]:
    """Where an update runs.

    With ``flush_denormals`` (the default), float32 subnormals (|x| < 1.2e-38) read and written as
    zero on the CPU (x86 FTZ/DAZ, as XLA runs its CPU code): in a trained network's Adam moments and
    backward passes they occur, and each costs ~100 cycles; SAC on Pendulum updates ~10% faster
    in situ (benchmarks/RESULTS.md). Only inside the update: acting, the envs and evaluation keep
    IEEE arithmetic, and a thread that already flushed is left so.

    With ``mixed_precision="bf16"``, in ``torch.autocast`` to bfloat16 (its matrix products and
    convolutions; parameters, gradients and optimiser state stay float32, and autocast keeps
    losses, reductions and softmaxes in float32). Without autocast's weight-cast cache: an update
    that steps an optimizer and then runs the same network again (PPO's epochs, SAC's actor through
    the critic) must see the new weights, which the cache would hide until the context ends."""
    flush = cfg.flush_denormals and device.type == "cpu" and not _flushing()
    if flush and not torch.set_flush_denormal(True):  # not an x86 CPU with SSE3: nothing to do
        flush = False
    try:
        if cfg.mixed_precision == "off":
            yield
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
                yield
    finally:
        if flush:
            torch.set_flush_denormal(False)


_SUBNORMAL = torch.tensor([1e-39], dtype=torch.float32)


def _flushing() -> bool:
    """Whether this thread already reads subnormals as zero (torch has no getter for the mode)."""
    return bool((_SUBNORMAL * 1.0)[0] == 0)


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf; the message names the step and the quantity."""


def check_finite(metrics: dict[str, float], step: int, params: Sequence[tuple[str, Tensor]] = ()) -> None:
    """Raise :class:`NonFiniteError` naming the step and the quantity: a loss, or one of the named
    parameters ``params`` (a NaN gradient shows up there after the optimizer step). Callers list
    ``module.named_parameters()`` once: listing them costs more than checking them."""
    bad = [
        k
        for k, v in metrics.items()
        if k.startswith("losses/")
        and k != "losses/explained_variance"
        and isinstance(v, float)
        and not math.isfinite(v)
    ]
    if bad:
        raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}")
    if params:
        # One fused norm over all tensors (NaN/inf propagate into it); name them only if it fails.
        with torch.no_grad():
            total = torch.stack(norms([p for _, p in params]))
        if bool(total.isfinite().all()):
            return
        finite = torch.stack([p.detach().isfinite().all() for _, p in params])
        if not bool(finite.all()):
            names = [name for (name, _), ok in zip(params, finite.tolist(), strict=True) if not ok]
            raise NonFiniteError(f"non-finite parameter(s) {', '.join(names)} at step {step}")


class EpisodeStats:
    """Means over the last 100 finished episodes (raw rewards), as SB3's ``ep_rew_mean``."""

    def __init__(self) -> None:
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.episodes = 0

    def add(self, env: VecEnv) -> dict[str, float]:
        returns, lengths = env.pop_episodes()
        return self.add_episodes([(0, 0, r, n) for r, n in zip(returns, lengths, strict=True)])

    def add_episodes(self, episodes: list[Episode]) -> dict[str, float]:
        """Episodes in the order they ended (by step, then env index)."""
        self.episodes += len(episodes)
        self.returns.extend(r for _, _, r, _ in episodes)
        self.lengths.extend(n for _, _, _, n in episodes)
        # math.fsum over ≤ 100 floats: exact, and ~10x cheaper than np.mean of a deque (every update)
        return {
            "charts/episodic_return": math.fsum(self.returns) / len(self.returns) if self.returns else float("nan"),
            "charts/episodic_length": math.fsum(self.lengths) / len(self.lengths) if self.lengths else float("nan"),
            "charts/episodes": float(self.episodes),
        }


class OnPolicyLoop:
    """Collect ``n_steps`` × ``n_envs`` transitions, bootstrap, update; ``ceil(total / (T·N))`` times.

    The attributes are the loop's whole state (``pgrad.state`` checkpoints them), so ``run``
    continues a restored loop exactly where it stopped. ``on_update(global_step, metrics)``
    receives the update's metrics plus ``charts/episodic_return`` and ``charts/episodic_length``
    (means over the last 100 finished episodes, NaN before the first).
    """

    # named_params: views of the policy's parameters, for check_finite; n_updates: from the config
    # (an extended run, `--resume RUN --total-steps N`, has more)
    not_state = ("named_params", "n_updates", "sde_shape")

    def __init__(
        self,
        algo: OnPolicyAlgorithm,
        env: VecEnv,
        n_steps: int,
        total_steps: int,
        device: torch.device,
        env_slice: EnvSlice | None = None,
    ):
        self.algo, self.env, self.n_steps, self.device = algo, env, n_steps, device
        self.env_slice = env_slice or EnvSlice(algo.cfg.seed, range(env.n_envs), env.n_envs, device)
        action_shape, action_dtype = action_storage(env.action_space)
        self.recurrent = getattr(algo.policy, "recurrent", False)
        state_shape = None
        if self.recurrent:  # each env's state, and whether its next step starts an episode
            self.memory = algo.policy.initial_state(env.n_envs)
            self.episode_start = torch.ones(env.n_envs, dtype=torch.bool, device=device)
            state_shape = tuple(self.memory.shape[1:])
        self.buf = RolloutBuffer(
            n_steps, env.n_envs, env.obs_shape, action_shape, action_dtype, device, env.obs_dtype, state_shape
        )
        if getattr(algo.policy, "use_sde", False):  # gSDE's ε per env: [features, action dims]
            self.sde_shape = (algo.policy.log_std.shape[0], algo.policy.spec["action_dim"])
        self.n_updates = math.ceil(total_steps / (n_steps * env.n_envs))
        self.stats = EpisodeStats()
        self.named_params = list(algo.policy.named_parameters())  # for check_finite
        self.update = self.global_step = 0
        self.obs: np.ndarray | None = None

    def collect(self) -> list[Episode]:
        """Fill the buffer with one rollout (and its bootstrap values); return the episodes that
        ended in it."""
        env, buf, device, acting = self.env, self.buf, self.device, self.env_slice
        policy = self.algo.policy.for_acting()  # π_θold, V_θold: fixed for the whole rollout
        if self.obs is None:
            self.obs = env.reset()
        obs = torch.as_tensor(self.obs, device=device)
        final_values: dict[int, tuple[np.ndarray, Tensor]] = {}
        ended: list[tuple[int, int]] = []
        sde, resample_every = getattr(self.algo.policy, "use_sde", False), getattr(self.algo.cfg, "sde_sample_freq", -1)
        exploration = None
        for t in range(self.n_steps):
            if sde and (t == 0 or (resample_every > 0 and t % resample_every == 0)):
                # gSDE: a fresh ε at each rollout's start and every sde_sample_freq steps (as SB3)
                exploration = acting.exploration_noise(self.sde_shape, self.buf.rewards)
            with torch.inference_mode():
                if self.recurrent:  # h_t = RNN(s_t, h_{t−1}), from 0 where an episode starts
                    state = reset_where(self.memory, self.episode_start)
                    buf.store_memory(t, state, self.episode_start)
                    actions, log_probs, values, self.memory = acting.act_recurrent(policy, obs, state, exploration)
                else:
                    actions, log_probs, values = acting.act(policy, obs, exploration)
            next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions.cpu().numpy())
            buf.store(t, obs, actions, log_probs, values, rewards, terminated, truncated)
            cut = truncated & ~terminated
            if cut.any():
                # Truncation is not termination: bootstrap from V of the real final observation.
                # (All rows go through the network, as at every step: see EnvSlice.)
                cut_envs = np.flatnonzero(cut)
                with torch.inference_mode():
                    real_next = torch.as_tensor(real_next_obs, device=device)
                    final_values[t] = (cut_envs, self._value(acting, policy, real_next)[cut_envs])
            if env.ended.any():  # the episodes the env recorded (whole games of an Atari env)
                ended += acting.ended(t, env.ended)
            if self.recurrent:
                self.episode_start = torch.as_tensor(terminated | truncated, device=device)
            obs = torch.as_tensor(next_obs, device=device)
        self.obs = next_obs
        with torch.inference_mode():
            last_values = self._value(acting, policy, obs, self.recurrent)
        buf.finish(last_values, final_values)
        return tag_episodes(ended, env)

    def _value(self, acting: EnvSlice, policy, obs: Tensor, next_episode: bool = False) -> Tensor:
        """V of ``obs``: a recurrent policy's from the envs' current states (the state after an
        episode's last step for its final observation; with ``next_episode``, reset where the
        next step starts an episode, as for the rollout's last observations)."""
        if not self.recurrent:
            return acting.value(policy, obs)
        state = reset_where(self.memory, self.episode_start) if next_episode else self.memory
        return acting.value_recurrent(policy, obs, state)

    def next_rollout(self) -> dict[str, float]:
        """Collect one rollout into the buffer; the episode statistics after it."""
        episode_stats = self.stats.add_episodes(self.collect())
        self.global_step += self.n_steps * self.buf.n_envs
        return episode_stats

    def progress_remaining(self) -> float:
        """1 before the first update, → 0 at the last (schedules)."""
        return 1.0 - self.update / self.n_updates

    def updated(self, metrics: dict[str, float], episode_stats: dict[str, float], on_update: OnUpdate) -> None:
        """The update is done: count it, check it, report it."""
        self.update += 1
        check_finite(metrics, self.global_step, self.named_params)
        on_update(self.global_step, episode_stats | metrics)

    def run(self, on_update: OnUpdate, poll: Poll = no_poll) -> int:
        """``on_update(global_step, metrics)`` after each update, then ``poll(global_step)``
        (checkpoints, stop requests: the loop's state is whole there)."""
        while self.update < self.n_updates:
            episode_stats = self.next_rollout()
            with precision(self.algo.cfg, self.device):
                metrics = self.algo.update(self.buf, progress_remaining=self.progress_remaining())
            self.updated(metrics, episode_stats, on_update)
            poll(self.global_step)
        return self.global_step


class EpisodicAlgorithm(Protocol):
    cfg: object  # with .seed
    policy: torch.nn.Module

    def update(self, batch: EpisodeBuffer, progress_remaining: float) -> dict[str, float]: ...


class EpisodeLoop:
    """REINFORCE's loop: every update sees whole episodes only.

    Each update resets all envs and lets each run ``ceil(episodes_per_update / N)`` complete
    episodes from the reset; an env that has finished its quota keeps stepping with the others
    but those steps are masked out. Waiting for a fixed number of *first* finishers instead would
    favour short episodes. All env steps taken count towards ``total_steps``.
    """

    # the batch in progress (rebuilt every update), and total_steps (the config's: an extended run has more)
    not_state = ("obs", "finished", "ended", "used", "named_params", "total_steps")

    def __init__(
        self,
        algo: EpisodicAlgorithm,
        env: VecEnv,
        episodes_per_update: int,
        total_steps: int,
        device: torch.device,
        env_slice: EnvSlice | None = None,
        quota: int | None = None,
    ):
        self.algo, self.env, self.total_steps, self.device = algo, env, total_steps, device
        self.env_slice = env_slice or EnvSlice(algo.cfg.seed, range(env.n_envs), env.n_envs, device)
        self.quota = quota or math.ceil(episodes_per_update / env.n_envs)
        action_shape, action_dtype = action_storage(env.action_space)
        self.batch = EpisodeBuffer(
            env.n_envs, env.obs_shape, action_shape, action_dtype, device, obs_dtype=env.obs_dtype
        )
        self.stats = EpisodeStats()
        self.named_params = list(algo.policy.named_parameters())  # for check_finite
        self.global_step = 0
        self.started = False

    def begin(self) -> None:
        """Reset every env for a new batch of episodes."""
        # The first reset seeds the envs; later ones start fresh episodes, the RNG continuing.
        obs_np = self.env.reset(seed=None) if self.started else self.env.reset()
        self.started = True
        self.batch.clear()
        self.finished = np.zeros(self.env.n_envs, np.int64)
        self.obs = torch.as_tensor(obs_np, device=self.device)
        self.ended: list[tuple[int, int]] = []
        self.used: list[bool] = []  # per ended episode: within its env's quota (in the update)

    @property
    def quota_met(self) -> bool:
        return bool((self.finished >= self.quota).all())

    def step(self) -> None:
        """One step of every env; the steps of envs past their quota are stored as invalid."""
        active = self.finished < self.quota
        with torch.inference_mode():
            actions, _, _ = self.env_slice.act(self.algo.policy, self.obs)
        next_obs, rewards, terminated, truncated, _ = self.env.step(actions.cpu().numpy())
        # A time-limit cut ends the episode of the finite-horizon objective REINFORCE estimates.
        dones = terminated | truncated
        self.batch.store(self.obs, actions, rewards, dones, active)
        ends = self.env.ended  # the episodes the env recorded (whole games of an Atari env)
        if ends.any():
            self.ended += self.env_slice.ended(self.batch.length - 1, ends)
            self.used += active[ends].tolist()
        self.finished += dones & active
        self.obs = torch.as_tensor(next_obs, device=self.device)

    def end(self) -> list[Episode]:
        """The episodes of the batch since :meth:`begin`: those past an env's quota (stepped while
        the slowest env finishes, masked out of the update) are not logged either, since counting
        them would favour short episodes."""
        episodes = tag_episodes(self.ended, self.env)
        return [episode for episode, used in zip(episodes, self.used, strict=True) if used]

    def collect(self) -> list[Episode]:
        """Fill the batch with every env's quota of whole episodes."""
        self.begin()
        while not self.quota_met:
            self.step()
        return self.end()

    def run(self, on_update: OnUpdate, poll: Poll = no_poll) -> int:
        """As :meth:`OnPolicyLoop.run`: ``on_update`` and ``poll`` after each update."""
        while self.global_step < self.total_steps:
            episode_stats = self.stats.add_episodes(self.collect())
            self.global_step += self.batch.length * self.batch.n_envs
            progress_remaining = max(0.0, 1.0 - self.global_step / self.total_steps)
            with precision(self.algo.cfg, self.device):
                metrics = self.algo.update(self.batch, progress_remaining=progress_remaining)
            check_finite(metrics, self.global_step, self.named_params)
            on_update(self.global_step, episode_stats | metrics)
            poll(self.global_step)
        return self.global_step


class OffPolicyAlgorithm(Protocol):
    policy: torch.nn.Module

    def explore(self, obs: Tensor) -> np.ndarray: ...
    def episodes_ended(self, envs: np.ndarray) -> None: ...
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]: ...


class OffPolicyLoop:
    """The off-policy loop: act → store → sample → update.

    Actions are in the policy's space ([−1, 1]^D for Box, rescaled by the env; ints for Discrete):
    uniformly random for the first ``learning_starts`` steps, then ``algo.explore``. Every
    ``train_freq`` vector steps (or, with ``train_freq_unit="episode"``, every ``train_freq``
    finished episodes), ``gradient_steps`` updates on uniform replay samples of ``batch_size``
    (``-1``: as many as env steps since the last round, SB3's); ``on_update`` follows each round.
    """

    not_state = ("named_params",)

    def __init__(self, algo: OffPolicyAlgorithm, env: VecEnv, cfg, device: torch.device):
        self.algo, self.env, self.cfg, self.device = algo, env, cfg, device
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.action_shape, action_dtype = action_storage(env.action_space)
        buffer_class, extra = ReplayBuffer, {}
        if cfg.optimize_memory_usage:
            buffer_class, extra = CompactReplayBuffer, {"n_envs": env.n_envs}
        elif cfg.n_steps > 1:
            buffer_class, extra = NStepReplayBuffer, {"n_envs": env.n_envs, "n_steps": cfg.n_steps}
        self.buffer = buffer_class(
            cfg.buffer_size, env.obs_shape, self.action_shape, action_dtype, device, env.obs_dtype, **extra
        )
        self.buffer.in_checkpoints = cfg.save_replay_buffer
        self.stats = EpisodeStats()
        self.named_params = list(algo.policy.named_parameters())  # for check_finite
        self.sample_generator = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.global_step = self.vector_step = 0
        self.steps_since_round = self.episodes_since_round = 0  # since the last training round
        self.obs: np.ndarray | None = None

    def round_due(self) -> bool:
        """Whether a training round is due after this vector step."""
        cfg = self.cfg
        if self.global_step < cfg.learning_starts:
            return False
        if cfg.train_freq_unit == "episode":
            return self.episodes_since_round >= cfg.train_freq
        return self.vector_step % cfg.train_freq == 0

    def env_step(self) -> bool:
        """One vector step: act (uniformly at random during the warm-up), step the envs, store the
        transitions; whether a training round is due after it."""
        algo, env, cfg, N, norm = self.algo, self.env, self.cfg, self.env.n_envs, self.env.normalizer
        if self.obs is None:
            self.obs = env.reset(raw=True)
        if self.global_step < cfg.learning_starts:
            if self.discrete:
                actions = self.rng.integers(0, env.action_space.n, N)
            else:
                actions = self.rng.uniform(-1.0, 1.0, (N, *self.action_shape)).astype(np.float32)
        else:
            with torch.inference_mode():
                actions = algo.explore(torch.as_tensor(norm.obs(self.obs), device=self.device))
        next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions, raw=True)
        # Store the real successor and termination only: truncation still bootstraps. Raw
        # observations and rewards: normalised when sampled, with the statistics of then.
        dones = terminated | truncated
        self.buffer.add(self.obs, actions, rewards, real_next_obs, terminated, dones)
        if dones.any():
            algo.episodes_ended(np.flatnonzero(dones))
        self.obs = next_obs
        self.global_step += N
        self.vector_step += 1
        self.steps_since_round += N
        self.episodes_since_round += int(dones.sum())
        return self.round_due()

    def begin_round(self) -> int:
        """A training round begins: its number of gradient steps; the learning rates of now."""
        cfg = self.cfg
        steps = cfg.gradient_steps if cfg.gradient_steps > 0 else self.steps_since_round
        self.steps_since_round = self.episodes_since_round = 0
        if cfg.lr_schedule != "constant":
            lr = schedule(cfg.learning_rate, cfg.lr_schedule, 1.0 - self.global_step / cfg.total_steps)
            for optimizer in optimizers_of(self.algo):
                set_learning_rate(optimizer, lr)
        return steps

    def batch(self) -> dict[str, Tensor]:
        """One gradient step's uniform replay sample, normalised (and its n-step returns)."""
        cfg = self.cfg
        batch = normalized(self.buffer.sample(cfg.batch_size, self.sample_generator), self.env.normalizer)
        if "mask" in batch:  # n-step: R = Σ_{j<k} γ^j r_{t+j} of the normalised rewards, and γ^k
            batch["rewards"], batch["discount"] = n_step_return(batch["rewards"], batch.pop("mask"), cfg.gamma)
        return batch

    def end_round(self, metrics: dict[str, float], on_update: OnUpdate) -> None:
        """The round's last update is done: check it, report it."""
        check_finite(metrics, self.global_step, self.named_params)
        on_update(self.global_step, self.stats.add(self.env) | metrics)

    def run(self, on_update: OnUpdate, poll: Poll = no_poll) -> int:
        """``on_update`` after each training round, ``poll`` after every vector step (the
        warm-up's too): a stop request or a checkpoint never waits for an update."""
        while self.global_step < self.cfg.total_steps:
            if self.env_step():
                for _ in range(self.begin_round()):
                    batch = self.batch()
                    with precision(self.cfg, self.device):
                        metrics = self.algo.update(batch)
                self.end_round(metrics, on_update)
            poll(self.global_step)
        return self.global_step


def optimizers_of(algo: object) -> list[torch.optim.Optimizer]:
    """Every optimiser an off-policy algorithm holds: its own attributes' (actor, critics, SAC v1's
    V) and its temperature's (SAC's α, when learned)."""
    found = [v for v in vars(algo).values() if isinstance(v, torch.optim.Optimizer)]
    temperature = getattr(getattr(algo, "temperature", None), "optimizer", None)
    return found + ([temperature] if temperature is not None else [])


def normalized(batch: dict[str, Tensor], norm) -> dict[str, Tensor]:
    """A replay sample of raw data with the normaliser's current statistics applied (as SB3's)."""
    if norm.active:
        batch["obs"], batch["next_obs"] = norm.obs_tensor(batch["obs"]), norm.obs_tensor(batch["next_obs"])
        batch["rewards"] = norm.rewards_tensor(batch["rewards"])
    return batch
