"""REINFORCE, the Monte Carlo policy gradient, with the notes' variance reductions as options.

Notes: "REINFORCE", "Baseline Subtraction", "Causality Trick and Reward-to-Go", "Discount Factor
Adjustment". On M complete episodes:

    ∇J ≈ (1/M) Σ_i Σ_t  w_t · ∇log π(a_t|s_t)

    w_t = G_0 = Σ_t γ^t r_t                    (reward_to_go=False: the whole episode's return)
    w_t = G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}       (reward_to_go=True: the causality trick)
    w_t ← w_t − b      b = 0 | the mean return of the batch's other episodes | V(s_t) regressed on G_t
    w_t ← γ^t w_t      (discount_weighting, with reward-to-go only: the γ^t of the discounted
                        objective's gradient. G_0 already carries its γ^t', so γ^t · G_0 would be
                        biased: that combination is refused)

With baseline="none", reward_to_go=False and γ = 1 this is exactly (1/M) Σ_i (Σ_t ∇log π)(Σ_t r).
A time-limit cut ends an episode here: REINFORCE estimates the finite-horizon objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch
from torch import Tensor

from pgrad.buffers import EpisodeBuffer
from pgrad.config import PolicyConfig, one_of, positive, positive_int, require, schedule, set_learning_rate
from pgrad.estimators import episode_returns, explained_variance, reward_to_go, steps_in_episode
from pgrad.networks import actor_critic_for, fit_value
from pgrad.optim import adam, clip_grad_norm_


@dataclass(frozen=True)
class ReinforceConfig(PolicyConfig):
    """REINFORCE over batches of complete episodes."""

    episodes_per_update: int = 16
    """Complete episodes per gradient step (spread over the n_envs envs)."""
    baseline: Literal["none", "mean", "value"] = "value"
    """b subtracted from the returns: none, the batch's mean return (leaving the episode out), or a learned V(s)."""
    reward_to_go: bool = True
    """Weight ∇log π(a_t|s_t) by the return from t on (causality) instead of the whole episode's."""
    discount_weighting: bool = False
    """Multiply step t's reward-to-go by γ^t (the exact gradient of the discounted objective; needs reward_to_go)."""
    normalize_advantage: bool = True
    """Standardise the weights over the batch."""
    learning_rate: float = 1e-3
    """Policy learning rate (Adam)."""
    value_learning_rate: float = 1e-3
    """Critic learning rate (baseline='value')."""
    n_critic_updates: int = 5
    """Epochs of value regression per update (baseline='value')."""
    critic_batch_size: int = 256
    """Minibatch size of the value regression."""
    max_grad_norm: float = 0.0
    """Global gradient-norm clip of the policy step (0 disables)."""

    def validate(self) -> None:
        super().validate()
        positive_int("episodes_per_update", self.episodes_per_update)
        one_of("baseline", self.baseline, ("none", "mean", "value"))
        positive_int("n_critic_updates", self.n_critic_updates)
        positive_int("critic_batch_size", self.critic_batch_size)
        positive("value_learning_rate", self.value_learning_rate)
        check_weighting(self.reward_to_go, self.discount_weighting)


def check_weighting(use_reward_to_go: bool, discount_weighting: bool) -> None:
    """γ^t pairs with the reward-to-go G_t only (notes: "Discount Factor Adjustment")."""
    require(
        "discount_weighting",
        discount_weighting,
        use_reward_to_go or not discount_weighting,
        "must be False without reward_to_go: G_0 = Σ_t γ^t r_t already carries the discounts, "
        "and γ^t · G_0 is a biased gradient (use --reward-to-go with --discount-weighting)",
    )


def leave_one_out_mean(returns: Tensor, dones: Tensor, valid: Tensor) -> Tensor:
    """b for each step: the mean return of the batch's *other* episodes, ``[T, N]``.

    Each episode's return is its mean weight per step (G_0 itself without reward-to-go). Leaving
    the episode out makes b independent of its actions, so E[∇log π · b] = 0 exactly; a mean that
    included it would shrink the expected gradient by (M − 1)/M. One episode alone gets b = 0.
    """
    T, N = returns.shape
    done = dones.long()
    ids = (done.cumsum(0) - done) + (T + 1) * torch.arange(N, device=returns.device)  # episode of each step
    sums = torch.zeros(N * (T + 1), dtype=returns.dtype, device=returns.device)
    counts = torch.zeros_like(sums)
    sums.scatter_add_(0, ids[valid], returns[valid])
    counts.scatter_add_(0, ids[valid], torch.ones_like(returns[valid]))
    present = counts > 0
    means = torch.where(present, sums / counts.clamp(min=1), torch.zeros_like(sums))
    m = present.sum()
    if m < 2:
        return torch.zeros_like(returns)
    others = (means.sum() - means) / (m - 1)
    return others[ids]


def reinforce_weights(
    rewards: Tensor,
    dones: Tensor,
    valid: Tensor,
    gamma: float,
    use_reward_to_go: bool,
    baseline: str,
    values: Tensor | None,
    discount_weighting: bool,
    normalize: bool,
) -> tuple[Tensor, Tensor]:
    """``(weights w_t, returns G)`` on ``[T, N]`` episode data; weights are 0 outside ``valid``."""
    check_weighting(use_reward_to_go, discount_weighting)
    if use_reward_to_go:
        returns = reward_to_go(rewards, dones, gamma)  # G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}
    else:
        returns = episode_returns(rewards, dones, gamma)  # G_0 = Σ_t γ^t r_t at every step
    if baseline == "mean":
        weights = returns - leave_one_out_mean(returns, dones, valid)
    elif baseline == "value":
        weights = returns - values  # b(s_t) = V(s_t): depends on the state only, so no bias
    else:
        weights = returns.clone()
    if discount_weighting:
        weights = weights * gamma ** steps_in_episode(dones).to(weights.dtype)  # γ^t
    if normalize and valid.sum() > 1:
        kept = weights[valid]
        weights = (weights - kept.mean()) / (kept.std() + 1e-8)
    return weights * valid, returns


def reinforce_loss(log_probs: Tensor, weights: Tensor, n_episodes: int | Tensor) -> Tensor:
    """−(1/M) Σ_i Σ_t w_t log π(a_t|s_t): its gradient is minus the estimate ∇J above."""
    return -(log_probs * weights).sum() / n_episodes


class Reinforce:
    def __init__(
        self, cfg: ReinforceConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device
    ):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        self.optimizer = adam(self.policy.policy_parameters(), cfg.learning_rate)
        self.critic_optimizer = adam(self.policy.value_parameters(), cfg.value_learning_rate)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def update(self, batch: EpisodeBuffer, progress_remaining: float) -> dict[str, float]:
        cfg = self.cfg
        learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
        set_learning_rate(self.optimizer, learning_rate)
        valid = batch.valid
        n_episodes = (batch.dones & valid).sum()
        with torch.no_grad():
            values = (
                self.policy.value(batch.obs.flatten(0, 1)).view_as(batch.rewards) if cfg.baseline == "value" else None
            )
            weights, returns = reinforce_weights(
                batch.rewards,
                batch.dones,
                valid,
                cfg.gamma,
                cfg.reward_to_go,
                cfg.baseline,
                values,
                cfg.discount_weighting,
                cfg.normalize_advantage,
            )
        obs, actions = batch.obs[valid], batch.actions[valid]
        dist = self.policy.distribution(obs)
        # REINFORCE: ∇J ≈ (1/M) Σ_i Σ_t ∇log π(a_t|s_t) · w_t
        loss = reinforce_loss(dist.log_prob(actions), weights[valid], n_episodes)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            clip_grad_norm_(self.policy.policy_parameters(), cfg.max_grad_norm)
        self.optimizer.step()

        metrics = {
            "losses/policy_loss": float(loss.detach()),
            "losses/entropy": float(dist.entropy().mean().detach()),
            "charts/learning_rate": learning_rate,
            "charts/batch_episodes": float(n_episodes),
            "charts/batch_steps": float(valid.sum()),
        }
        if cfg.baseline == "value":
            value_loss = fit_value(
                self.policy.value,
                self.critic_optimizer,
                obs,
                returns[valid],
                cfg.n_critic_updates,
                cfg.critic_batch_size,
                self.generator,
            )
            metrics["losses/value_loss"] = float(value_loss)
            metrics["losses/explained_variance"] = float(explained_variance(values[valid], returns[valid]))
        return metrics
