"""Actor-critic (notes: "Actor-Critic Methods", "N-Step Returns and GAE"): vanilla and A2C.

One update per rollout of ``n_steps`` × ``n_envs`` transitions:

    actor:   ∇J ≈ E[ ∇log π(a_t|s_t) · A_t ]        critic:  min E[(R_t − V(s_t))²]
    A_t = R_t − V(s_t),  R_t = R_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n})   (or GAE(γ, λ))

``actor_critic`` is the one-step form, δ_t = r_t + γV(s_{t+1}) − V(s_t), updating after every
vector step; ``a2c`` is the synchronous advantage actor-critic with n-step returns to the end of
the rollout (A3C's returns, computed from parallel envs) and RMSprop, as SB3/RL-Zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from pgrad.buffers import RolloutBuffer
from pgrad.config import OnPolicyConfig, non_negative, one_of, positive, require, schedule, set_learning_rate
from pgrad.estimators import explained_variance, gae, n_step_returns, standardize
from pgrad.networks import actor_critic_for, evaluate_rollout
from pgrad.optim import RMSprop, adam, clip_grad_norm_, step_together
from pgrad.stack import StackedParameters, per_seed, side_by_side


@dataclass(frozen=True)
class A2CConfig(OnPolicyConfig):
    """A2C: n-step returns (or GAE), one gradient step per rollout."""

    GAE_LAMBDA_OPTIONAL: ClassVar[bool] = True

    n_steps: int = 5
    """Steps per env per rollout; also the n of the n-step returns."""
    learning_rate: float = 7e-4
    """Learning rate."""
    gae_lambda: float | None = None
    """None: n-step returns R^(n) with n = n_steps. A number: GAE(γ, λ) advantages instead."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSprop (α 0.99, ε 1e-5, as A3C/SB3) or Adam (CHECKLIST item 42)."""
    optimizer_eps: float = 1e-5
    """ε of the optimizer."""
    normalize_advantage: bool = False
    """Normalise advantages over each rollout."""
    log_interval: int = 20
    """Write a progress row every this many updates (an update is only n_steps × n_envs steps here)."""

    def validate(self) -> None:
        super().validate()
        non_negative("ent_coef", self.ent_coef)
        non_negative("vf_coef", self.vf_coef)
        one_of("optimizer", self.optimizer, ("rmsprop", "adam"))
        positive("optimizer_eps", self.optimizer_eps)


@dataclass(frozen=True)
class A3CConfig(A2CConfig):
    """A3C: asynchronous Ray workers, each computing the n-step actor-critic gradient on its own
    envs' rollout; the learner applies each gradient as it arrives (``pgrad.distributed``)."""

    workers: int = 2
    """Ray workers computing gradients in parallel; the n_envs envs are split evenly among them."""
    n_envs: int = 2
    """Parallel envs, split evenly among the workers (one each by default)."""
    log_interval: int = 50
    """Write a progress row every this many updates (one update per arriving gradient here)."""

    def validate(self) -> None:
        super().validate()
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} is invalid: a3c needs at least 1 Ray worker")
        require("mixed_precision", self.mixed_precision, self.mixed_precision == "off",
                "must be 'off' for a3c: its Ray workers compute the gradients in float32")  # fmt: skip


@dataclass(frozen=True)
class ActorCriticConfig(A2CConfig):
    """Vanilla actor-critic: the one-step TD error as advantage, an update after every vector step."""

    n_steps: int = 1
    """Steps per env between updates (1: the one-step TD actor-critic)."""
    optimizer: Literal["rmsprop", "adam"] = "adam"
    """Optimizer."""
    learning_rate: float = 1e-3
    """Learning rate."""
    log_interval: int = 100
    """Write a progress row every this many updates (one update per vector step here)."""


class A2C:
    not_state = ("params",)  # the policy's parameters as a list, for the optimizer and clip

    def __init__(self, cfg: A2CConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        self.params = list(self.policy.parameters())
        if cfg.optimizer == "rmsprop":
            self.optimizer = RMSprop(self.params, cfg.learning_rate, alpha=0.99, eps=cfg.optimizer_eps)
        else:
            self.optimizer = adam(self.params, cfg.learning_rate, eps=cfg.optimizer_eps)

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
        learning_rate = schedule(self.cfg.learning_rate, self.cfg.lr_schedule, progress_remaining)
        loss, metrics = self.loss(buf)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.step(learning_rate)
        metrics["charts/learning_rate"] = learning_rate
        return metrics

    def step(self, learning_rate: float) -> None:
        """Clip the gradient in ``.grad`` and take the optimizer step (A3C's learner calls this too)."""
        set_learning_rate(self.optimizer, learning_rate)
        if self.cfg.max_grad_norm > 0:
            clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()

    def loss(self, buf: RolloutBuffer) -> tuple[Tensor, dict[str, float]]:
        """The actor-critic loss of one rollout and its metrics (no step taken)."""
        advantages, returns = self.targets(buf)
        dist, values = evaluate_rollout(self.policy, buf)
        terms = a2c_loss(dist, values, buf.actions.flatten(0, 1), advantages, returns, self.cfg)
        values_ = torch.stack([terms[k] for k in LOSS_TERMS]).detach().tolist()
        return terms["loss"], a2c_metrics(values_, buf.values.flatten(), returns)

    def targets(self, buf: RolloutBuffer) -> tuple[Tensor, Tensor]:
        """``(advantages, returns)`` of a rollout, flat ``[T·N]``, without gradients (the advantages
        normalised when the config asks)."""
        fields = (buf.rewards, buf.values, buf.next_values, buf.terminated, buf.truncated)
        advantages, returns = (x.flatten() for x in rollout_targets(self.cfg, *fields))
        return standardize(advantages) if self.cfg.normalize_advantage else advantages, returns


def rollout_targets(
    cfg: A2CConfig, rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor
) -> tuple[Tensor, Tensor]:
    """``(advantages, returns)`` ``[T, N]`` of time-major rollout tensors, without gradients."""
    with torch.no_grad():
        if cfg.gae_lambda is None:
            # n-step: R_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n});  A_t = R_t^(n) − V(s_t)
            returns = n_step_returns(rewards, next_values, terminated, truncated, cfg.gamma, cfg.n_steps)
            return returns - values, returns
        return gae(rewards, values, next_values, terminated, truncated, cfg.gamma, cfg.gae_lambda)  # Σ_k (γλ)^k δ_{t+k}


LOSS_TERMS = ("policy_loss", "value_loss", "entropy", "loss")


def a2c_loss(
    dist, values: Tensor, actions: Tensor, advantages: Tensor, returns: Tensor, cfg: A2CConfig
) -> dict[str, Tensor]:
    """The actor-critic loss on a rollout's samples (π, V at them; targets without gradients), as named terms."""
    # actor: −E[log π(a|s) · A]   (A is a constant: the baseline V never reaches the actor's gradient)
    policy_loss = -(dist.log_prob(actions) * advantages).mean()
    # critic: E[(R − V(s))²]
    value_loss = F.mse_loss(values, returns)
    with torch.set_grad_enabled(cfg.ent_coef > 0):  # with c_ent = 0, H is only logged
        entropy = dist.entropy().mean()
    loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    return {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "loss": loss}


def a2c_metrics(terms: list[float], old_values: Tensor, returns: Tensor) -> dict[str, float]:
    """The update's metrics: its loss terms (in ``LOSS_TERMS`` order) and the critic's explained variance."""
    metrics = {f"losses/{k}": v for k, v in zip(LOSS_TERMS, terms, strict=True)}
    metrics["losses/explained_variance"] = float(explained_variance(old_values, returns))
    return metrics


def update_seeds(
    algos: Sequence[A2C],
    bufs: Sequence[RolloutBuffer],
    stack: StackedParameters,
    progress_remaining: float,
    active: Sequence[bool],
) -> list[dict[str, float] | None]:
    """:meth:`A2C.update` for many seeds at once (``pgrad train a2c --seeds``): each seed's targets
    from its own rollout, one batched forward and backward pass of all seeds' networks on Σ_s L_s
    (:class:`~pgrad.stack.StackedParameters`), then each seed's own grad-norm clip and optimizer
    step. A seed not ``active`` (its run stopped) takes no step. Returns each active seed's metrics."""
    if not any(active):
        return [None] * len(algos)
    cfg, seeds = algos[0].cfg, len(algos)
    learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
    advantages, returns = (per_seed(x, seeds) for x in rollout_targets(cfg, *side_by_side(bufs)))  # [S, T·N]
    if cfg.normalize_advantage:
        advantages = vmap(standardize)(advantages)  # each seed's over its own rollout
    obs = torch.stack([buf.obs.flatten(0, 1) for buf in bufs])  # [S, T·N, ...]
    actions = torch.stack([buf.actions.flatten(0, 1) for buf in bufs])

    def seed_terms(policy, obs, actions, advantages, returns) -> dict[str, Tensor]:
        dist, values = policy(obs)
        return a2c_loss(dist, values, actions, advantages, returns, cfg)

    terms = stack.vmap(seed_terms)(obs, actions, advantages, returns)  # each [S]
    stack.zero_grad()
    terms["loss"].sum().backward()  # ∇_θs Σ_s' L_s' = ∇_θs L_s
    stack.share_grads()
    if cfg.max_grad_norm > 0:
        stack.clip_grad_norms_(cfg.max_grad_norm)  # each seed's global norm
    stepping = [algo.optimizer for algo, go in zip(algos, active, strict=True) if go]
    for optimizer in stepping:
        set_learning_rate(optimizer, learning_rate)
    step_together(stepping)
    rows = torch.stack([terms[k].detach() for k in LOSS_TERMS], 1).tolist()
    return [
        a2c_metrics(rows[s], bufs[s].values.flatten(), returns[s]) | {"charts/learning_rate": learning_rate}
        if active[s]
        else None
        for s in range(seeds)
    ]
