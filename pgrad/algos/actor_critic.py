"""Actor-critic (notes: "Actor-Critic Methods", "N-Step Returns and GAE"): vanilla and A2C.

One update per rollout of ``n_steps`` × ``n_envs`` transitions:

    actor:   ∇J ≈ E[ ∇log π(a_t|s_t) · A_t ]        critic:  min E[(R_t − V(s_t))²]
    A_t = R_t − V(s_t),  R_t = R_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n})   (or GAE(γ, λ))

``actor_critic`` is the one-step form, δ_t = r_t + γV(s_{t+1}) − V(s_t), updating after every
vector step; ``a2c`` is the synchronous advantage actor-critic with n-step returns to the end of
the rollout (A3C's returns, computed from parallel envs) and RMSprop, as SB3/RL-Zoo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.buffers import RolloutBuffer
from pgrad.config import OnPolicyConfig, non_negative, one_of, positive, schedule, set_learning_rate
from pgrad.estimators import explained_variance, n_step_returns, standardize
from pgrad.networks import actor_critic_for, evaluate_rollout
from pgrad.optim import RMSprop, adam, clip_grad_norm_


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
        cfg = self.cfg
        if cfg.gae_lambda is None:
            with torch.no_grad():
                # n-step: R_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n});  A_t = R_t^(n) − V(s_t)
                returns = n_step_returns(
                    buf.rewards, buf.next_values, buf.terminated, buf.truncated, cfg.gamma, cfg.n_steps
                ).flatten()
                advantages = returns - buf.values.flatten()
        else:
            advantages, returns = buf.gae(cfg.gamma, cfg.gae_lambda)  # GAE: A_t = Σ_k (γλ)^k δ_{t+k}
        actions = buf.actions.flatten(0, 1)
        if cfg.normalize_advantage:
            advantages = standardize(advantages)

        dist, values = evaluate_rollout(self.policy, buf)
        # actor: −E[log π(a|s) · A]   (A is a constant: the baseline V never reaches the actor's gradient)
        policy_loss = -(dist.log_prob(actions) * advantages).mean()
        # critic: E[(R − V(s))²]
        value_loss = F.mse_loss(values, returns)
        with torch.set_grad_enabled(cfg.ent_coef > 0):  # with c_ent = 0, H is only logged
            entropy = dist.entropy().mean()
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss

        terms = torch.stack([policy_loss, value_loss, entropy, loss]).detach().tolist()
        metrics = {
            f"losses/{k}": v for k, v in zip(("policy_loss", "value_loss", "entropy", "loss"), terms, strict=True)
        }
        metrics["losses/explained_variance"] = float(explained_variance(buf.values.flatten(), returns))
        return loss, metrics
