"""Trust Region Policy Optimization (notes: "Trust Region Policy Optimization (TRPO)").

    max_θ' L(θ') = E[π_θ'(a|s)/π_θ(a|s) · A]   s.t.   KL(π_θ‖π_θ') ≤ δ

Direction F⁻¹∇L by conjugate gradient, scaled to the trust region's edge α = √(2δ / xᵀFx),
then a backtracking line search θ + βᵏ·step keeps the first try whose *exact* KL ≤ δ and whose
surrogate improved, or keeps θ. The critic is fitted to GAE(γ, λ) returns afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor

from pgrad.buffers import RolloutBuffer
from pgrad.config import TrustRegionConfig, in_range, positive_int
from pgrad.networks import actor_critic_for
from pgrad.optim import adam
from pgrad.trust_region import (
    CGResult,
    SurrogateProblem,
    backtracking_line_search,
    natural_update,
)


@dataclass(frozen=True)
class TRPOConfig(TrustRegionConfig):
    """TRPO: the natural-gradient step with a backtracking line search on the exact KL."""

    line_search_shrinking_factor: float = 0.8
    """β: each backtrack multiplies the step by this."""
    line_search_max_iter: int = 10
    """Tries before the update is rejected and θ kept."""

    def validate(self) -> None:
        super().validate()
        in_range("line_search_shrinking_factor", self.line_search_shrinking_factor, 0.0, 1.0, True, True)
        positive_int("line_search_max_iter", self.line_search_max_iter)


class TRPO:
    def __init__(self, cfg: TRPOConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        self.critic_optimizer = adam(self.policy.value_parameters(), cfg.learning_rate)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
        return natural_update(self, buf, progress_remaining)

    def take_step(self, problem: SurrogateProblem, step: Tensor, cg: CGResult) -> dict[str, float]:
        """From θ_old along the full natural step (α F⁻¹∇L), by the line search; its metrics."""
        cfg = self.cfg
        old_surrogate, _ = problem.evaluate()
        # TRPO: θ' = θ + βᵏ α F⁻¹∇L with the first k where KL ≤ δ and L improved, else θ' = θ
        search = backtracking_line_search(
            problem.params,
            step,
            problem.evaluate,
            old_surrogate,
            cfg.target_kl,
            cfg.line_search_shrinking_factor,
            cfg.line_search_max_iter,
        )
        return {
            "losses/surrogate_improvement": search.improvement,
            "losses/kl": search.kl,
            "losses/line_search_steps": float(search.backtracks),
            "losses/line_search_accepted": float(search.accepted),
            "losses/cg_residual": cg.residual,
            "losses/cg_iterations": float(cg.iterations),
        }
