"""``pgrad lab probe``: how good the policy-gradient estimates of a deep policy are on a real task.

Ilyas et al. (ICLR 2020, "A Closer Look at Deep Policy Gradients", §3) drew many gradient estimates
from batches of the size PPO trains on and compared them with a "true" gradient from a far larger
sample: the estimates agreed poorly with it and with each other, and the learned value function was
far from the true values. This module repeats that measurement for any on-policy agent and env
pgrad trains, for every estimator of the notes.

The objective is the notes' J(θ) = E[Σ_t γ^t r_t] over the env's episodes as they are (a time limit
ends one). By the policy gradient theorem with a state baseline b,

    ∇J = E[ Σ_t γ^t ∇log π(a_t|s_t) (G_t − b(s_t)) ],   G_t = Σ_{t'≥t} γ^{t'−t} r_{t'},

and the *reference* is that estimator (b = the learned V) averaged over a large sample of whole
episodes, drawn apart from the batches; its standard error comes from batch means (the sample cut
into groups of equal episode counts).

Each estimator is the gradient of a surrogate on a batch of E whole episodes,
(1/E) Σ_episodes Σ_t w_t log π(a_t|s_t), with weights w computed by :mod:`pgrad.estimators` (the
functions training uses), or PPO's own loss (:func:`pgrad.algos.ppo.ppo_loss`) at θ = θ_old.
A batch of M state-action pairs holds round(M / L̄) whole episodes (L̄: the mean episode length of the
reference sample), a fixed count, so a batch mean averages iid episodes and stays unbiased.
For each estimator and batch size, over K independent batches:

- ``cos``: E[cos(ĝ, g_ref)], with its standard error over the K batches;
- ``pairwise_cos``: E[cos(ĝ_k, ĝ_l)], k ≠ l (Ilyas et al.'s measure: it needs no reference);
- ``variance``: tr Cov(ĝ) (unbiased over the K estimates), in total and per parameter tensor;
- ``bias``: √max(0, ‖ḡ − g_ref‖² − tr Cov(ĝ)/K − se_ref²), since E‖ḡ − g_ref‖² = ‖E ĝ − ∇J‖² +
  tr Cov(ĝ)/K + se_ref²: the estimator's distance from ∇J with both samples' noise subtracted.

PPO's surrogate averages over steps and standardises the advantages, so its scale is not ∇J's:
its cosines are comparable, its variance and bias are not reported.

The value check restores the env's exact state (:meth:`pgrad.envs.VecEnv.load_sim_state`, which
classic control and MuJoCo support, Box2D does not) at states the policy visits, rolls the policy out
from each many times, and compares the Monte Carlo value with the learned V (mean relative
error), and the squared advantage G − V̂(s) with G − V_MC(s) (the MC value from the other rollouts).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pgrad import estimators
from pgrad.callbacks import Callback
from pgrad.config import _is_int, positive_int, require
from pgrad.distributions import Categorical
from pgrad.envs import VecEnv
from pgrad.lab.mdps import TabularMDP

PROBED_ALGOS = ("ppo", "a2c", "a3c", "trpo", "npg", "actor_critic")


@dataclass(frozen=True)
class ProbeConfig:
    batch_sizes: tuple[int, ...] = (256, 1024, 4096)
    """State-action pairs per batch (each batch holds round(M / L̄) whole episodes, at least one)."""
    estimates: int = 32
    """K: independent batch estimates per estimator and batch size."""
    reference_steps: int = 100_000
    """State-action pairs (about) in the reference sample."""
    groups: int = 32
    """Batch means of the reference sample, for its standard error."""
    lambdas: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
    """λ grid of the GAE(λ) estimators."""
    n_steps: tuple[int, ...] = (1, 5, 20)
    """n grid of the n-step estimators."""
    value_states: int = 64
    """States of the value check (0: no value check)."""
    value_rollouts: int = 16
    """Rollouts from each of them."""
    n_envs: int = 16
    """Vector envs that sample the episodes."""
    seed: int = 0

    def __post_init__(self) -> None:
        require("batch_sizes", list(self.batch_sizes), bool(self.batch_sizes) and all(_is_int(m) and m >= 1
                for m in self.batch_sizes), "give one or more integers >= 1")  # fmt: skip
        require("estimates", self.estimates, _is_int(self.estimates) and self.estimates >= 3, "must be an integer >= 3")
        require("groups", self.groups, _is_int(self.groups) and self.groups >= 4, "must be an integer >= 4")
        positive_int("reference_steps", self.reference_steps)
        require("lambdas", list(self.lambdas), all(0.0 <= lam <= 1.0 for lam in self.lambdas), "each must be in [0, 1]")
        require("n_steps", list(self.n_steps), all(_is_int(n) and n >= 1 for n in self.n_steps), "each must be >= 1")
        require("value_states", self.value_states, _is_int(self.value_states) and self.value_states >= 0,
                "must be an integer >= 0")  # fmt: skip
        require("value_rollouts", self.value_rollouts, _is_int(self.value_rollouts) and self.value_rollouts >= 2,
                "must be an integer >= 2")  # fmt: skip
        positive_int("n_envs", self.n_envs)
        require("seed", self.seed, _is_int(self.seed) and self.seed >= 0, "must be an integer >= 0")


@dataclass
class Subject:
    """What is probed: a policy with ``distribution(obs)``, ``value(obs)`` and ``policy_parameters()``
    (an :class:`~pgrad.networks.ActorCritic`), the observation normalisation it reads through, the
    scale of its V (the reward normaliser's σ, 1 without), its discount, and PPO's loss settings for
    the PPO surrogate (its own config for a PPO agent, PPO's defaults with the agent's γ, λ otherwise)."""

    policy: nn.Module
    observe: Callable[[np.ndarray], Tensor]
    gamma: float
    ppo: Any
    value_scale: float = 1.0
    step: int | None = None

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        ids = {id(p) for p in self.policy.policy_parameters()}
        return [(name, p) for name, p in self.policy.named_parameters() if id(p) in ids]


def subject_of(agent: Any, step: int | None = None) -> Subject:
    """A frozen copy of an on-policy agent (a live one keeps training untouched)."""
    from pgrad.algos.ppo import PPOConfig

    if agent.algo not in PROBED_ALGOS:
        raise ValueError(
            f"the probe measures on-policy policy gradients: {agent.algo!r} is not one of {', '.join(PROBED_ALGOS)}"
        )
    if agent.recurrent:
        raise ValueError("the probe takes feed-forward policies: this agent's is recurrent (rnn)")
    policy = copy.deepcopy(agent.policy).eval()
    normalizer = copy.deepcopy(agent.normalizer)
    normalizer.training = False
    device = next(policy.parameters()).device
    cfg = dict(agent.config)
    gamma = float(cfg.get("gamma", 0.99))
    # PPO's loss settings: the agent's own for PPO, PPO's defaults with the agent's γ and λ otherwise
    keys = ("normalize_advantage", "loss", "clip_range", "clip_range_vf") if agent.algo == "ppo" else ()
    lam = 1.0 if cfg.get("gae_lambda") is None else float(cfg["gae_lambda"])  # None: A2C's plain n-step returns
    ppo = PPOConfig(gamma=gamma, gae_lambda=lam, **{k: cfg[k] for k in keys if k in cfg})
    scale = math.sqrt(float(normalizer.return_rms.var) + normalizer.epsilon) if normalizer.normalize_reward else 1.0
    return Subject(policy, lambda obs: torch.as_tensor(normalizer.obs(obs), device=device), gamma, ppo, scale, step)


# ---------------------------------------------------------------------------------------------------
# Episodes


@dataclass
class Episodes:
    """Whole episodes end to end: per step ``obs``, ``actions``, ``rewards`` (float64), and where the
    episode ended ``terminated``/``truncated`` (``[L]`` bool); ``final_obs`` ``[E, ...]`` each episode's
    last next observation; ``starts`` ``[E + 1]`` the offsets."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    final_obs: Tensor
    starts: Tensor

    @property
    def count(self) -> int:
        return len(self.starts) - 1

    @property
    def steps(self) -> int:
        return int(self.starts[-1])

    def select(self, first: int, count: int) -> Episodes:
        """Episodes ``first .. first + count − 1``."""
        lo, hi = int(self.starts[first]), int(self.starts[first + count])
        return Episodes(
            self.obs[lo:hi], self.actions[lo:hi], self.rewards[lo:hi], self.terminated[lo:hi],
            self.truncated[lo:hi], self.final_obs[first:first + count], self.starts[first:first + count + 1] - lo,
        )  # fmt: skip


class Sampler:
    """Draws whole episodes of the subject's (stochastic) policy on a vector env. The number of
    episodes is fixed before they are drawn, never decided by their lengths, so they are iid."""

    def __init__(self, subject: Subject, env: VecEnv, generator: torch.Generator):
        self.subject, self.env, self.generator = subject, env, generator
        self.seeded = False

    def episodes(self, count: int) -> Episodes:
        env, n = self.env, self.env.n_envs
        obs = env.reset(seed=None if self.seeded else env.seed, raw=True)
        self.seeded = True
        ids = np.where(np.arange(n) < count, np.arange(n), -1)
        started = min(n, count)
        steps, finals = [], {}
        while (ids >= 0).any():
            o = self.subject.observe(obs)
            with torch.no_grad():
                actions = self.subject.policy.distribution(o).sample(self.generator)
            obs, rewards, terminated, truncated, next_obs = env.step(actions.cpu().numpy(), raw=True)
            steps.append((o, actions, rewards, terminated, truncated, ids.copy()))
            for i in np.flatnonzero((terminated | truncated) & (ids >= 0)):
                finals[int(ids[i])] = self.subject.observe(next_obs[i : i + 1])[0]
                ids[i], started = (started, started + 1) if started < count else (-1, started)
        # time-major rows (t, env) -> each episode's steps in time order, episodes in order
        episode = torch.as_tensor(np.stack([s[5] for s in steps]).reshape(-1))
        keep = torch.nonzero(episode >= 0).squeeze(1)
        order = keep[torch.sort(episode[keep], stable=True).indices]
        flat = lambda k: torch.as_tensor(np.stack([np.asarray(s[k]) for s in steps])).flatten(0, 1)[order]  # noqa: E731
        obs_all = torch.stack([s[0] for s in steps]).flatten(0, 1)[order]
        actions_all = torch.stack([s[1] for s in steps]).flatten(0, 1)[order]
        lengths = torch.bincount(episode[keep], minlength=count)
        return Episodes(
            obs_all, actions_all, flat(2).double(), flat(3).bool(), flat(4).bool(),
            torch.stack([finals[i] for i in range(count)]), torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Estimators: per-step weights from pgrad.estimators


@dataclass
class Batch:
    """Episodes as :mod:`pgrad.estimators` takes them, time-major ``[T, E]``: one column per episode,
    all starting at row 0, padded after their ends (which the recursions never cross: every episode
    ends with ``done``). ``mask`` marks the real steps; :meth:`flat` reads them back in episode order."""

    episodes: Episodes
    gamma: float
    mask: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    done: Tensor
    values: Tensor
    next_values: Tensor
    discount: Tensor  # γ^t, t the step's index in its episode

    @classmethod
    def of(cls, ep: Episodes, subject: Subject) -> Batch:
        with torch.no_grad():
            values = subject.policy.value(ep.obs).double() * subject.value_scale
            finals = subject.policy.value(ep.final_obs).double() * subject.value_scale
        lengths = ep.starts.diff()
        t = torch.arange(int(lengths.max()))
        mask = t[:, None] < lengths[None, :]  # [T, E]
        position = (ep.starts[:-1][None, :] + t[:, None])[mask]  # row-major over (t, e), as mask selects

        def padded(flat: Tensor) -> Tensor:
            out = torch.zeros(mask.shape, dtype=flat.dtype)
            out[mask] = flat[position]
            return out

        # V(s_{t+1}): the next step's V inside an episode, V of the real final observation at its end
        next_values = torch.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[ep.starts[1:] - 1] = finals
        done = ep.terminated | ep.truncated
        return cls(ep, subject.gamma, mask, padded(ep.rewards), padded(ep.terminated), padded(ep.truncated),
                   padded(done), padded(values), padded(next_values), subject.gamma ** t.double()[:, None])  # fmt: skip

    def flat(self, x: Tensor) -> Tensor:
        """``[L]``: the real steps of ``x`` ``[T, E]`` in episode order (as :class:`Episodes` holds them)."""
        return x.T[self.mask.T]

    def rtg(self) -> Tensor:
        # G_t = Σ_{t'≥t} γ^{t'−t} r_{t'} to the episode's end (no bootstrap: J is of the episodes as they are)
        return estimators.reward_to_go(self.rewards, self.done, self.gamma)


@dataclass(frozen=True)
class ProbeEstimator:
    """``weights(batch)`` ``[T, E]``, or None for PPO's surrogate; ``unbiased``: for ∇J by the theory;
    ``family``: ``mc``, ``n_step``, ``gae`` or ``ppo``."""

    name: str
    family: str
    unbiased: bool
    weights: Callable[[Batch], Tensor] | None
    lam: float | None = None


# with a state baseline: ĝ = Σ_t ∇log π γ^t (G_t − V(s_t)), unbiased: the reference's form
REFERENCE = ProbeEstimator("reward-to-go − V, γᵗ", "mc", True, lambda b: b.discount * (b.rtg() - b.values))


def catalogue(cfg: ProbeConfig) -> list[ProbeEstimator]:
    items = [
        # REINFORCE: ĝ = Σ_t ∇log π(a_t|s_t) G_0
        ProbeEstimator("REINFORCE (G₀)", "mc", True, lambda b: estimators.episode_returns(b.rewards, b.done, b.gamma)),
        # causality: ĝ = Σ_t ∇log π γ^t G_t
        ProbeEstimator("reward-to-go, γᵗ", "mc", True, lambda b: b.discount * b.rtg()),
        REFERENCE,
        # as training uses it, without γ^t: ĝ = Σ_t ∇log π (G_t − V(s_t))
        ProbeEstimator("reward-to-go − V", "mc", False, lambda b: b.rtg() - b.values),
    ]
    for n in cfg.n_steps:
        # n-step: Â_t = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n}) − V(s_t)
        items.append(ProbeEstimator(f"{n}-step − V", "n_step", False, lambda b, n=n: estimators.n_step_returns(
            b.rewards, b.next_values, b.terminated, b.truncated, b.gamma, n) - b.values))  # fmt: skip
    for lam in cfg.lambdas:
        # GAE: Â_t = Σ_k (γλ)^k δ_{t+k}
        items.append(ProbeEstimator(f"GAE λ={lam:g}", "gae", False, lambda b, lam=lam: estimators.gae(
            b.rewards, b.values, b.next_values, b.terminated, b.truncated, b.gamma, lam)[0], lam))  # fmt: skip
    items.append(ProbeEstimator("PPO surrogate (θ = θ_old)", "ppo", False, None))
    return items


class Gradients:
    """Each estimator's estimate on a batch: one forward pass, one backward pass per estimator."""

    def __init__(self, subject: Subject):
        self.subject = subject
        named = subject.parameters()
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.sizes = [p.numel() for p in self.params]

    def __call__(self, ep: Episodes, items: list[ProbeEstimator]) -> Tensor:
        """``[len(items), P]`` float64."""
        from pgrad.algos.ppo import ppo_loss

        batch = Batch.of(ep, self.subject)
        log_prob = self.subject.policy.distribution(ep.obs).log_prob(ep.actions)  # [L]
        out = []
        for k, est in enumerate(items):
            if est.weights is not None:
                # surrogate (1/E) Σ_episodes Σ_t w_t log π(a_t|s_t): its gradient is the batch mean of ĝ
                w = batch.flat(est.weights(batch)).to(log_prob.dtype)
                surrogate = (w * log_prob).sum() / ep.count
            else:
                cfg = self.subject.ppo
                advantages, _ = estimators.gae(batch.rewards, batch.values, batch.next_values, batch.terminated,
                                               batch.truncated, cfg.gamma, cfg.gae_lambda)  # fmt: skip
                zero = torch.zeros_like(log_prob)
                terms = ppo_loss(log_prob, log_prob.detach(), batch.flat(advantages).to(log_prob.dtype), zero, zero,
                                 zero, zero, cfg.clip_range, cfg, kl=zero)  # fmt: skip
                surrogate = -terms["policy_loss"]  # ascent direction, as the other estimates
            grads = torch.autograd.grad(surrogate, self.params, retain_graph=k < len(items) - 1, allow_unused=True)
            out.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in
                                  zip(grads, self.params, strict=True)]).double())  # fmt: skip
        return torch.stack(out)


# ---------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class Reference:
    gradient: Tensor  # [P]
    se: Tensor  # [P]: per-coordinate standard error of the batch means
    episodes: int
    steps: int
    mean_return: float  # undiscounted, per episode
    mean_discounted_return: float  # the estimate of J itself

    @property
    def norm(self) -> float:
        return self.gradient.norm().item()

    @property
    def se_norm(self) -> float:
        return self.se.square().sum().sqrt().item()


def reference(gradients: Gradients, ep: Episodes, groups: int) -> Reference:
    """The reference estimator's mean over ``groups`` equal groups of ``ep``'s episodes, with batch-means
    standard errors: se_j² = Var_groups(ĝ_j) / groups."""
    per = ep.count // groups
    G = torch.cat([gradients(ep.select(g * per, per), [REFERENCE]) for g in range(groups)])  # [groups, P]
    used = ep.select(0, per * groups)
    discounted = Batch.of(used, gradients.subject).rtg()[0]  # Σ_t γ^t r_t of each episode: its G_0
    return Reference(G.mean(0), (G.var(0) / groups).sqrt(), used.count, used.steps,
                     used.rewards.sum().item() / used.count, discounted.mean().item())  # fmt: skip


@dataclass
class SizeResult:
    batch_size: int  # M, the nominal state-action pairs
    episodes: int  # whole episodes per batch
    pairs: float  # mean state-action pairs per batch
    cos: float
    cos_se: float
    pairwise_cos: float
    variance: float | None
    variance_by_tensor: dict[str, float] | None
    bias: float | None
    error: float | None  # ‖ḡ − g_ref‖ as measured
    noise: float | None  # √(tr Cov/K + se_ref²): what `error` would be for an unbiased estimator


@dataclass
class EstimatorResult:
    name: str
    family: str
    unbiased_by_theory: bool
    lam: float | None
    sizes: list[SizeResult] = field(default_factory=list)


def summarize(G: Tensor, ref: Reference, names: list[str], sizes: list[int], scaled: bool) -> dict[str, Any]:
    """The statistics of K estimates ``G`` ``[K, P]`` against the reference (see the module docstring)."""
    K = G.shape[0]
    g = ref.gradient
    cos = (G @ g) / (G.norm(dim=1) * g.norm()).clamp(min=1e-300)
    unit = G / G.norm(dim=1, keepdim=True).clamp(min=1e-300)
    total = unit.sum(0)
    # Σ_{k≠l} cos(ĝ_k, ĝ_l) = ‖Σ_k u_k‖² − K for unit vectors u_k
    pairwise = (total.square().sum().item() - K) / (K * (K - 1))
    out = {"cos": cos.mean().item(), "cos_se": (cos.std() / math.sqrt(K)).item(), "pairwise_cos": pairwise}
    if not scaled:
        return out | {"variance": None, "variance_by_tensor": None, "bias": None, "error": None, "noise": None}
    var = G.var(0)
    error_sq = (G.mean(0) - g).square().sum().item()
    noise_sq = var.sum().item() / K + ref.se.square().sum().item()
    by_tensor = dict(zip(names, (v.sum().item() for v in var.split(sizes)), strict=True))
    return out | {
        "variance": var.sum().item(),
        "variance_by_tensor": by_tensor,
        "bias": math.sqrt(max(error_sq - noise_sq, 0.0)),
        "error": math.sqrt(error_sq),
        "noise": math.sqrt(noise_sq),
    }


# ---------------------------------------------------------------------------------------------------
# The value check


@dataclass
class ValueCheck:
    states: int
    rollouts: int
    mean_relative_error: float  # mean over states of |V̂(s) − V_MC(s)| / |V_MC(s)|
    median_relative_error: float
    mean_value: float  # of V_MC
    mean_learned_value: float
    mc_se: float  # mean standard error of V_MC(s)
    advantage_ms_learned: float  # E[(G − V̂(s))²]
    advantage_ms_true: float  # E[(G − V_MC^{(−)}(s))²], the MC value from the other rollouts


def value_check(subject: Subject, make_env: Callable[[int, int], VecEnv], cfg: ProbeConfig,
                generator: torch.Generator) -> ValueCheck | None:  # fmt: skip
    """The learned V against Monte Carlo values at ``cfg.value_states`` visited states (None where the
    env's state cannot be copied)."""
    if cfg.value_states == 0:
        return None
    walker = make_env(cfg.n_envs, cfg.seed + 20_000)
    if not walker.exact_state:
        walker.close()
        return None
    copies = make_env(cfg.value_rollouts, cfg.seed + 30_000)
    snapshots = _visited_states(subject, walker, cfg.value_states, generator)
    walker.close()
    learned, mc, se, first, rest = [], [], [], [], []
    for obs, state in snapshots:
        returns = _returns_from(subject, copies, obs, state, generator)
        with torch.no_grad():
            learned.append(subject.policy.value(subject.observe(obs[None])).double().item() * subject.value_scale)
        mc.append(returns.mean().item())
        se.append((returns.std() / math.sqrt(len(returns))).item())
        first.append(returns[0].item())
        rest.append(returns[1:].mean().item())
    copies.close()
    V, Vmc, G, Vrest = (torch.tensor(x, dtype=torch.float64) for x in (learned, mc, first, rest))
    rel = (V - Vmc).abs() / Vmc.abs().clamp(min=1e-8)
    return ValueCheck(
        len(mc), cfg.value_rollouts, rel.mean().item(), rel.median().item(), Vmc.mean().item(), V.mean().item(),
        float(np.mean(se)), (G - V).square().mean().item(), (G - Vrest).square().mean().item(),
    )  # fmt: skip


def _visited_states(subject: Subject, env: VecEnv, count: int, generator: torch.Generator) -> list[tuple[Any, dict]]:
    """``count`` states the policy visits: each env is copied at a step drawn uniformly from its next
    few hundred, repeatedly (so the states spread over whole episodes)."""
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    obs = env.reset(raw=True)
    for _ in range(2):  # past gymnasium's env checker, which inspects an env's first two steps (copies skip it)
        with torch.no_grad():
            actions = subject.policy.distribution(subject.observe(obs)).sample(generator)
        obs = env.step(actions.cpu().numpy(), raw=True)[0]
    snapshots: list[tuple[Any, dict]] = []
    while len(snapshots) < count:
        at = rng.integers(0, 200, env.n_envs)
        for t in range(int(at.max()) + 1):
            for i in np.flatnonzero(at == t):
                if len(snapshots) < count:
                    state = {k.split(".", 1)[1]: copy.deepcopy(v) for k, v in env.sim_state().items()
                             if k.startswith(f"env{i}.")}  # fmt: skip
                    snapshots.append((obs[i].copy(), state))
            with torch.no_grad():
                actions = subject.policy.distribution(subject.observe(obs)).sample(generator)
            obs = env.step(actions.cpu().numpy(), raw=True)[0]
    return snapshots


def _returns_from(subject: Subject, env: VecEnv, obs: Any, state: dict, generator: torch.Generator) -> Tensor:
    """Discounted returns ``[R]`` of ``env.n_envs`` rollouts from one copied state, each to its episode's
    end. Each copy keeps its own random generator (the state's is left out), so a stochastic env's
    rollouts differ as the policy's do."""
    shared = {k: v for k, v in state.items() if not isinstance(v, np.random.Generator)}
    env.load_sim_state({f"env{j}.{k}": copy.deepcopy(v) for j in range(env.n_envs) for k, v in shared.items()})
    n = env.n_envs
    batch = np.repeat(obs[None], n, axis=0)
    returns = np.zeros(n)
    discount = np.ones(n)
    running = np.ones(n, bool)
    while running.any():
        with torch.no_grad():
            actions = subject.policy.distribution(subject.observe(batch)).sample(generator)
        batch, rewards, terminated, truncated, _ = env.step(actions.cpu().numpy(), raw=True)
        returns += running * discount * rewards
        discount *= subject.gamma
        running &= ~(terminated | truncated)
    return torch.as_tensor(returns)


# ---------------------------------------------------------------------------------------------------
# The probe


@dataclass
class ProbeResult:
    step: int | None
    gamma: float
    mean_episode_length: float
    episodes_per_batch: dict[int, int]
    reference: dict[str, float]
    estimators: list[EstimatorResult]
    value: ValueCheck | None
    reference_gradient: Tensor | None = None  # not written to JSON
    reference_se: Tensor | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("reference_gradient")
        out.pop("reference_se")
        return out


def probe(subject: Subject, make_env: Callable[[int, int], VecEnv], cfg: ProbeConfig,
          progress: Callable[[str], None] | None = None) -> ProbeResult:  # fmt: skip
    """Measure every estimator of :func:`catalogue` on ``subject``. ``make_env(n_envs, seed)`` builds the
    env to sample on. Torch's global random state is left as it was (training around a probe is
    unchanged by it)."""
    say = progress or (lambda _: None)
    with torch.random.fork_rng(devices=[]):
        generator = torch.Generator().manual_seed(cfg.seed)
        env = make_env(cfg.n_envs, cfg.seed)
        try:
            sampler = Sampler(subject, env, generator)
            pilot = sampler.episodes(cfg.n_envs)
            length = pilot.steps / pilot.count
            groups = cfg.groups
            count = groups * max(1, math.ceil(cfg.reference_steps / length / groups))
            say(f"reference: {count} episodes (~{count * length:,.0f} state-action pairs)")
            gradients = Gradients(subject)
            ref_sample = sampler.episodes(count)
            ref = reference(gradients, ref_sample, groups)
            length = ref.steps / ref.episodes
            per_batch = {m: max(1, round(m / length)) for m in cfg.batch_sizes}
            pool = sampler.episodes(cfg.estimates * max(per_batch.values()))
            say(f"batches: {cfg.estimates} per size from {pool.count} episodes")
        finally:
            env.close()
        items = catalogue(cfg)
        estimates = {m: [] for m in cfg.batch_sizes}
        for m, per in per_batch.items():
            for k in range(cfg.estimates):
                estimates[m].append(gradients(pool.select(k * per, per), items))
        results = []
        pairs = {m: pool.starts[per * cfg.estimates].item() / cfg.estimates for m, per in per_batch.items()}
        for i, est in enumerate(items):
            res = EstimatorResult(est.name, est.family, est.unbiased, est.lam)
            for m, per in per_batch.items():
                G = torch.stack([e[i] for e in estimates[m]])
                stats = summarize(G, ref, gradients.names, gradients.sizes, scaled=est.family != "ppo")
                res.sizes.append(SizeResult(m, per, pairs[m], **stats))
            results.append(res)
        say("value check")
        value = value_check(subject, make_env, cfg, generator)
    # E‖g_ref‖² = ‖∇J‖² + se², so cos(g_ref, ∇J) ≈ √(‖g_ref‖² − se²) / ‖g_ref‖: about the factor by which the
    # reference's own noise shrinks every cosine measured with it
    truth = math.sqrt(max(ref.norm**2 - ref.se_norm**2, 0.0)) / max(ref.norm, 1e-300)
    reference_json = {"norm": ref.norm, "se_norm": ref.se_norm, "cos_with_truth": truth, "episodes": ref.episodes,
                      "steps": ref.steps, "mean_return": ref.mean_return,
                      "mean_discounted_return": ref.mean_discounted_return}  # fmt: skip
    return ProbeResult(subject.step, subject.gamma, length, per_batch, reference_json, results, value,
                       ref.gradient, ref.se)  # fmt: skip


def env_maker(agent: Any) -> Callable[[int, int], VecEnv]:
    """``(n_envs, seed) -> VecEnv`` of the agent's env as evaluation sees it (its true rewards)."""
    from pgrad.envs import make_vec_env

    spec = agent.make_env_spec()
    images = agent.config.get("images", "auto")
    return lambda n, seed: make_vec_env(spec, n, seed, action_mode=agent.action_mode, images=images)


class ProbeDuringTraining(Callback):
    """A training callback that probes the agent at chosen env steps (0: before the first update),
    each time the run passes one; the run itself is bitwise the run without it (tested)."""

    def __init__(self, at: list[int], cfg: ProbeConfig, progress: Callable[[str], None] | None = None):
        self.pending, self.cfg, self.progress = sorted(at), cfg, progress
        self.results: list[ProbeResult] = []

    def on_training_start(self, run) -> None:
        self.agent = run.agent
        self._due(run.start_step)

    def on_update(self, step: int, metrics: dict[str, float]) -> None:
        self._due(step)

    def _due(self, step: int) -> None:
        if not self.pending or self.pending[0] > step:
            return
        while self.pending and self.pending[0] <= step:
            self.pending.pop(0)
        if self.progress:
            self.progress(f"probing at step {step:,}")
        self.results.append(probe(subject_of(self.agent, step), env_maker(self.agent), self.cfg, self.progress))


def write_probe(results: list[ProbeResult], meta: dict[str, Any], out: Path) -> list[Path]:
    """``probe.json`` and the figures under ``out``; returns the paths written."""
    from pgrad.checkpoint import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "probe.json"]
    atomic_write(paths[0], json.dumps({"meta": meta, "probes": [r.to_json() for r in results]}, indent=1).encode())
    return paths + plot_probe(results, meta, out)


def _label(result: ProbeResult) -> str:
    return "a fresh policy" if not result.step else f"step {result.step:,}"


def plot_probe(results: list[ProbeResult], meta: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env, paths = meta.get("env", "?"), []
    shown = (
        "REINFORCE (G₀)",
        "reward-to-go, γᵗ",
        "reward-to-go − V, γᵗ",
        "reward-to-go − V",
        "PPO surrogate (θ = θ_old)",
    )
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for est in res.estimators:
            if est.name in shown or est.lam in (0.0, 0.95):
                sizes = [s.batch_size for s in est.sizes]
                line = ax.plot(sizes, [s.cos for s in est.sizes], marker="o", label=est.name)[0]
                ax.plot(sizes, [s.pairwise_cos for s in est.sizes], ls=":", color=line.get_color())
        sizes = [s.batch_size for s in res.estimators[0].sizes]
        ax.set(xscale="log", xlabel="batch size (state-action pairs)", ylabel="cosine similarity", ylim=(-1.0, 1.0),
               title=f"{env}, {_label(res)}")  # fmt: skip
        ax.set_xticks(sizes, [str(m) for m in sizes])
        ax.minorticks_off()
        ax.axhline(0.0, color="grey", lw=0.5)
    axes[0][-1].legend(fontsize=7, title="solid: with ∇J · dotted: pairwise", title_fontsize=7)
    fig.tight_layout()
    paths.append(out / "cosine_vs_batch_size.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        gae = [e for e in res.estimators if e.family == "gae"]
        for j, m in enumerate(res.estimators[0].sizes):
            ax.plot([e.lam for e in gae], [e.sizes[j].variance for e in gae], marker="o",
                    label=f"M = {m.batch_size} ({m.episodes} episodes)")  # fmt: skip
        ax.set(
            yscale="log", xlabel="λ", ylabel="tr Cov[ĝ] of one batch's estimate", title=f"GAE(λ), {env}, {_label(res)}"
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "variance_vs_lambda.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    checked = [r for r in results if r.value is not None]
    if checked:
        fig, (ax_e, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
        steps = [r.step or 0 for r in checked]
        ax_e.plot(steps, [r.value.mean_relative_error for r in checked], marker="o", label="mean")
        ax_e.plot(steps, [r.value.median_relative_error for r in checked], marker="s", label="median")
        ax_e.set(
            xlabel="training step", ylabel="|V̂(s) − V_MC(s)| / |V_MC(s)|", title=f"Learned V vs Monte Carlo, {env}"
        )
        ax_e.legend()
        ax_a.plot(steps, [r.value.advantage_ms_learned for r in checked], marker="o", label="G − V̂(s) (learned)")
        ax_a.plot(steps, [r.value.advantage_ms_true for r in checked], marker="s", label="G − V_MC(s) (true)")
        ax_a.set(xlabel="training step", ylabel="mean square", title="Advantage with each baseline")
        ax_a.set_yscale("symlog", linthresh=1e-2)  # a return with no noise left has a true advantage of 0
        ax_a.legend()
        fig.tight_layout()
        paths.append(out / "value_error.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------------
# The tabular check: the probe on an MDP whose gradient and estimator means are known exactly


class TabularEnv(gym.Env):
    """A :class:`~pgrad.lab.mdps.TabularMDP` with a finite horizon as a gymnasium env: the state index
    is the observation, r_t = R(s_t, a_t), and the episode terminates after T steps (V_T = 0), so the
    probe's J is the lab's J = E[Σ_{t<T} γ^t r_t]."""

    def __init__(self, mdp: TabularMDP):
        if mdp.horizon is None:
            raise ValueError("the tabular env needs a finite horizon")
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self.R = mdp.R.numpy()
        self.start_cdf, self.cdf = mdp.mu0.cumsum(0).numpy(), mdp.P.cumsum(-1).numpy()  # inverse-CDF sampling
        self.horizon, self.t, self.s = mdp.horizon, 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.s = 0, self._draw(self.start_cdf)
        return self.s, {}

    def _draw(self, cdf: np.ndarray) -> int:
        return min(int(np.searchsorted(cdf, self.np_random.random(), side="right")), len(cdf) - 1)

    def step(self, action):
        action = int(np.asarray(action).reshape(-1)[0])
        reward = float(self.R[self.s, action])
        self.s = self._draw(self.cdf[self.s, action])
        self.t += 1
        return self.s, reward, self.t >= self.horizon, False, {}


class TabularPolicy(nn.Module):
    """π(a|s) = softmax(θ[s]) with a state-value table V(s), in the probe's policy interface."""

    def __init__(self, theta: Tensor, values: Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())
        self.register_buffer("table", values.clone())

    def distribution(self, obs: Tensor) -> Categorical:
        return Categorical(self.theta[self.index(obs)])

    def value(self, obs: Tensor) -> Tensor:
        return self.table[self.index(obs)]

    @staticmethod
    def index(obs: Tensor) -> Tensor:
        """``[B]`` state indices of a batch of observations (stored ``[B, 1]`` by pgrad's vector env)."""
        return obs.long().reshape(len(obs), -1)[:, 0]

    def policy_parameters(self) -> list[nn.Parameter]:
        return [self.theta]


def tabular_subject(mdp: TabularMDP, theta: Tensor, values: Tensor) -> tuple[Subject, Callable[[int, int], VecEnv]]:
    """The probe's subject and env maker for a tabular MDP, its softmax policy θ ``[S, A]`` and a
    baseline table ``[S]`` (float64 throughout)."""
    from pgrad.algos.ppo import PPOConfig
    from pgrad.envs import make_vec_env

    subject = Subject(TabularPolicy(theta, values), torch.as_tensor, mdp.gamma, PPOConfig(gamma=mdp.gamma))
    return subject, lambda n, seed: make_vec_env(lambda: TabularEnv(mdp), n, seed)
