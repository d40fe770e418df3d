"""Natural Policy Gradient (notes: "Natural Policy Gradient").

    θ' = θ + α F⁻¹ ∇L(θ),   α = √(2δ / ∇Lᵀ F⁻¹ ∇L)

The step is taken as it is: the KL bound holds only to second order (the notes' point), so the
exact KL reached is measured and logged. The critic is fitted to GAE(γ, λ) returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from pgrad.buffers import RolloutBuffer
from pgrad.config import TrustRegionConfig, schedule, set_learning_rate
from pgrad.estimators import explained_variance, standardize
from pgrad.networks import actor_critic_for, fit_value
from pgrad.optim import adam
from pgrad.trust_region import SurrogateProblem, flat_params, set_flat_params


@dataclass(frozen=True)
class NPGConfig(TrustRegionConfig):
    """NPG: the natural-gradient step scaled to the KL radius δ, without a line search."""


class NPG:
    def __init__(self, cfg: NPGConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        self.critic_optimizer = adam(self.policy.value_parameters(), cfg.learning_rate)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
        cfg = self.cfg
        # GAE: A_t = Σ_k (γλ)^k δ_{t+k};  returns = A + V, the critic's regression target
        advantages, returns = buf.gae(cfg.gamma, cfg.gae_lambda)
        obs, actions = buf.obs.flatten(0, 1), buf.actions.flatten(0, 1)
        if cfg.normalize_advantage:
            advantages = standardize(advantages)

        params = self.policy.policy_parameters()
        problem = SurrogateProblem(self.policy.distribution, params, obs, actions, advantages)
        old_surrogate, _ = problem.evaluate()
        step, cg = problem.natural_step(cfg.target_kl, cfg.cg_damping, cfg.cg_max_steps, cfg.cg_tolerance)
        # NPG: θ' = θ + α F⁻¹∇L, taken whole
        set_flat_params(params, flat_params(params) + step)
        surrogate, kl = problem.evaluate()

        learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
        set_learning_rate(self.critic_optimizer, learning_rate)
        value_loss = fit_value(
            self.policy.value, self.critic_optimizer, obs, returns, cfg.n_critic_updates, cfg.batch_size, self.generator
        )
        return {
            "losses/surrogate_improvement": surrogate - old_surrogate,
            "losses/kl": kl,
            "losses/cg_residual": cg.residual,
            "losses/cg_iterations": float(cg.iterations),
            "losses/step_norm": float(step.norm()),
            "losses/value_loss": float(value_loss),
            "losses/explained_variance": float(explained_variance(buf.values.flatten(), returns)),
            "charts/learning_rate": learning_rate,
        }
