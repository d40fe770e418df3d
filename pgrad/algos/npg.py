"""Natural Policy Gradient (notes: "Natural Policy Gradient").

    θ' = θ + α F⁻¹ ∇L(θ),   α = √(2δ / ∇Lᵀ F⁻¹ ∇L)

The step is taken as it is: the KL bound holds only to second order (the notes' point), so the
exact KL reached is measured and logged. The critic is fitted to GAE(γ, λ) returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor

from pgrad.buffers import RolloutBuffer
from pgrad.config import TrustRegionConfig
from pgrad.networks import actor_critic_for
from pgrad.optim import adam
from pgrad.trust_region import (
    CGResult,
    SurrogateProblem,
    flat_params,
    natural_update,
    set_flat_params,
)


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
        return natural_update(self, buf, progress_remaining)

    def take_step(self, problem: SurrogateProblem, step: Tensor, cg: CGResult) -> dict[str, float]:
        """From θ_old by the full natural step (α F⁻¹∇L); its metrics, the exact KL reached among them."""
        old_surrogate, _ = problem.evaluate()
        # NPG: θ' = θ + α F⁻¹∇L, taken whole
        set_flat_params(problem.params, flat_params(problem.params) + step)
        surrogate, kl = problem.evaluate()
        return {
            "losses/surrogate_improvement": surrogate - old_surrogate,
            "losses/kl": kl,
            "losses/cg_residual": cg.residual,
            "losses/cg_iterations": float(cg.iterations),
            "losses/step_norm": float(step.norm()),
        }
