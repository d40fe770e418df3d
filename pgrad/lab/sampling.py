"""One trajectory sampler for every estimator, and the per-trajectory score-function gradient.

Every Monte Carlo estimator in the lab has the form ``ĝ_i = Σ_t w_{i,t} ∇_θ log π_θ(a_{i,t}|s_{i,t})``
for some per-step weight ``w`` (the return, the reward-to-go minus a baseline, an advantage, an
importance-weighted return…), so an estimator is just its weights and :func:`per_trajectory_gradients`
turns them into gradients with the tabular softmax's closed-form score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pgrad.lab.mdps import TabularMDP


@dataclass(frozen=True)
class Trajectories:
    """``m`` trajectories of the horizon's length ``T``: states, actions ``[m, T]`` (int64), rewards ``[m, T]``."""

    states: Tensor
    actions: Tensor
    rewards: Tensor

    @property
    def m(self) -> int:
        return self.states.shape[0]

    @property
    def T(self) -> int:
        return self.states.shape[1]

    def __getitem__(self, index) -> Trajectories:
        return Trajectories(self.states[index], self.actions[index], self.rewards[index])


def _draw(cdf: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of ``cdf`` ``[m, K]`` by inverse-CDF sampling."""
    u = torch.rand(cdf.shape[0], 1, dtype=cdf.dtype, generator=generator)
    return (cdf < u).sum(-1).clamp_(max=cdf.shape[1] - 1)


def sample(mdp: TabularMDP, pi: Tensor, m: int, generator: torch.Generator) -> Trajectories:
    """``m`` independent trajectories of ``pi`` over the finite horizon ``T``: s_0 ~ μ0, a_t ~ π(·|s_t),
    r_t = R(s_t, a_t), s_{t+1} ~ P(·|s_t, a_t)."""
    if mdp.horizon is None:
        raise ValueError("sampling needs a finite horizon; give the MDP a horizon")
    if m < 1:
        raise ValueError(f"m={m} is invalid: must be >= 1")
    T = mdp.horizon
    pi_cdf, P_cdf = pi.cumsum(-1), mdp.P.cumsum(-1)
    states = torch.empty(m, T, dtype=torch.int64)
    actions = torch.empty(m, T, dtype=torch.int64)
    s = _draw(mdp.mu0.cumsum(0).expand(m, -1), generator)
    for t in range(T):
        a = _draw(pi_cdf[s], generator)
        states[:, t], actions[:, t] = s, a
        s = _draw(P_cdf[s, a], generator)
    return Trajectories(states, actions, mdp.R[states, actions])


def log_probs(pi: Tensor, traj: Trajectories) -> Tensor:
    """``log π(a_t|s_t)`` ``[m, T]``."""
    return torch.log(pi[traj.states, traj.actions])


def per_trajectory_gradients(traj: Trajectories, pi: Tensor, weights: Tensor) -> Tensor:
    """``ĝ_i = Σ_t w_{i,t} ∇_θ log π(a_{i,t}|s_{i,t})`` for each trajectory, ``[m, S, A]``.

    # tabular softmax score: ∇_{θ[s', ·]} log π(a|s) = 1[s = s'] (e_a − π(·|s))
    """
    m, (S, A) = traj.m, pi.shape
    indicator = torch.zeros(m, S * A, dtype=weights.dtype)
    indicator.scatter_add_(1, traj.states * A + traj.actions, weights)  # Σ_t w 1[s_t = s, a_t = a]
    per_state = torch.zeros(m, S, dtype=weights.dtype)
    per_state.scatter_add_(1, traj.states, weights)  # Σ_t w 1[s_t = s]
    return indicator.view(m, S, A) - per_state.unsqueeze(-1) * pi
