"""Exact quantities of a tabular softmax policy ``π(a|s) = softmax(θ[s])_a`` on a known MDP.

Everything is computed, not sampled: value functions by backward recursion (finite horizon) or a
linear solve (discounted infinite horizon), state occupancies forward, and the policy gradient from
the policy gradient theorem. The objective is differentiable in θ, so autograd through it and finite
differences give two independent references for the gradient.

Time-indexed results have a leading dimension ``K``: ``K = T`` for a finite horizon (index ``t``), and
``K = 1`` for the infinite-horizon form (stationary values, occupancy summed over time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pgrad.lab.mdps import TabularMDP


def softmax_policy(theta: Tensor) -> Tensor:
    """``π[s, a] = exp θ[s, a] / Σ_b exp θ[s, b]``."""
    return torch.softmax(theta, dim=-1)


@dataclass(frozen=True)
class Evaluation:
    """``occupancy[k, s]``: γ^t Pr(s_t = s) (finite) or Σ_t γ^t Pr(s_t = s) (infinite);
    ``Q[k, s, a]``, ``V[k, s]``: values of the remaining horizon from time t; ``J = Σ_s μ0(s) V_0(s)``."""

    occupancy: Tensor
    Q: Tensor
    V: Tensor
    J: Tensor

    @property
    def advantages(self) -> Tensor:
        # A^π(s, a) = Q^π(s, a) − V^π(s)
        return self.Q - self.V.unsqueeze(-1)


def state_transitions(mdp: TabularMDP, pi: Tensor) -> Tensor:
    """``P_π[s, s'] = Σ_a π(a|s) P(s'|s, a)``."""
    return torch.einsum("sa,sat->st", pi, mdp.P)


def evaluate(mdp: TabularMDP, pi: Tensor) -> Evaluation:
    """Exact values, occupancy and objective of the stationary policy ``pi`` (``[S, A]``)."""
    P_pi = state_transitions(mdp, pi)
    gamma = mdp.gamma
    if mdp.horizon is None:
        eye = torch.eye(mdp.n_states, dtype=pi.dtype)
        r_pi = (pi * mdp.R).sum(-1)
        # Bellman: V = r_π + γ P_π V   ⇔   (I − γ P_π) V = r_π
        V = torch.linalg.solve(eye - gamma * P_pi, r_pi)
        # Q(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) V(s')
        Q = mdp.R + gamma * mdp.P @ V
        # discounted visitation d(s) = Σ_t γ^t Pr(s_t = s):  dᵀ = μ0ᵀ (I − γ P_π)^{-1}
        d = torch.linalg.solve((eye - gamma * P_pi).T, mdp.mu0)
        return Evaluation(d.unsqueeze(0), Q.unsqueeze(0), V.unsqueeze(0), mdp.mu0 @ V)
    T = mdp.horizon
    Qs, Vs = [None] * T, [None] * T
    V_next = torch.zeros(mdp.n_states, dtype=pi.dtype)
    for t in range(T - 1, -1, -1):
        # Q_t(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) V_{t+1}(s'),   V_T = 0
        Qs[t] = mdp.R + gamma * mdp.P @ V_next
        Vs[t] = V_next = (pi * Qs[t]).sum(-1)
    occupancy, p = [], mdp.mu0.to(pi.dtype)
    for t in range(T):
        occupancy.append(gamma**t * p)
        p = p @ P_pi  # Pr(s_{t+1}) = Σ_s Pr(s_t = s) P_π(s, ·)
    return Evaluation(torch.stack(occupancy), torch.stack(Qs), torch.stack(Vs), mdp.mu0 @ Vs[0])


def objective(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """``J(θ) = E_{τ~π_θ}[Σ_t γ^t r_t]``, differentiable in ``theta``."""
    return evaluate(mdp, softmax_policy(theta)).J


def policy_gradient(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """``∇_θ J`` from the policy gradient theorem, ``[S, A]``.

    # PG theorem: ∇J = Σ_t Σ_s γ^t p_t(s) Σ_a π(a|s) ∇log π(a|s) Q_t(s, a)
    # tabular softmax: ∂log π(a|s)/∂θ[s, b] = 1[a = b] − π(b|s), so ∂J/∂θ[s, b] = Σ_t γ^t p_t(s) π(b|s) A_t(s, b)
    """
    with torch.no_grad():
        pi = softmax_policy(theta)
        ev = evaluate(mdp, pi)
        return (ev.occupancy.unsqueeze(-1) * pi * ev.advantages).sum(0)


def autograd_gradient(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """``∇_θ J`` by backpropagation through the exact objective (an independent check)."""
    theta = theta.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(mdp, theta), theta)
    return grad


def finite_difference_gradient(mdp: TabularMDP, theta: Tensor, h: float = 1e-5) -> Tensor:
    """``∂J/∂θ_i ≈ (J(θ + h e_i) − J(θ − h e_i)) / 2h`` for every coordinate (float64)."""
    theta = theta.detach().to(torch.float64)
    grad = torch.empty_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta).view(-1)
        e[i] = h
        e = e.view_as(theta)
        grad.view(-1)[i] = (objective(mdp, theta + e) - objective(mdp, theta - e)) / (2 * h)
    return grad


def state_weights(mdp: TabularMDP, pi: Tensor) -> Tensor:
    """The normalised discounted state visitation ``ρ(s) ∝ Σ_t γ^t Pr(s_t = s)`` (sums to 1)."""
    occupancy = evaluate(mdp, pi).occupancy.sum(0)
    return occupancy / occupancy.sum()


def fisher_matrix(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """The Fisher information ``F = E_{s~ρ, a~π}[∇log π ∇log πᵀ]`` as an explicit ``[SA, SA]`` matrix.

    For the tabular softmax the score of state s lives in block s only, and that block is
    ``E_a[(e_a − π)(e_a − π)ᵀ] = diag(π(·|s)) − π(·|s) π(·|s)ᵀ``.
    """
    pi = softmax_policy(theta.detach())
    rho = state_weights(mdp, pi)
    blocks = [rho[s] * (torch.diag(pi[s]) - torch.outer(pi[s], pi[s])) for s in range(mdp.n_states)]
    return torch.block_diag(*blocks)


def mean_kl(mdp: TabularMDP, theta_new: Tensor, theta: Tensor) -> Tensor:
    """``E_{s~ρ_θ}[KL(π_θ'(·|s) ‖ π_θ(·|s))]``, states weighted by θ's visitation."""
    pi, pi_new = softmax_policy(theta), softmax_policy(theta_new)
    kl = (pi_new * (torch.log_softmax(theta_new, -1) - torch.log_softmax(theta, -1))).sum(-1)
    return state_weights(mdp, pi) @ kl


def soft_evaluate(mdp: TabularMDP, pi: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Soft policy evaluation (infinite horizon): ``(Q^π_soft [S, A], V^π_soft [S])``.

    # soft Bellman: Q(s, a) = R(s, a) + γ E_s'[V(s')],  V(s) = Σ_a π(a|s) (Q(s, a) − α log π(a|s))
    Solved exactly: ``(I − γ P_π) V = r_π + α H(π(·|s))`` with ``H`` the entropy.
    """
    if mdp.horizon is not None:
        raise ValueError("soft policy evaluation here is for the infinite-horizon form (horizon=None)")
    entropy = -(pi * torch.log(pi)).sum(-1)
    eye = torch.eye(mdp.n_states, dtype=pi.dtype)
    V = torch.linalg.solve(eye - mdp.gamma * state_transitions(mdp, pi), (pi * mdp.R).sum(-1) + alpha * entropy)
    return mdp.R + mdp.gamma * mdp.P @ V, V


def soft_optimal_q(mdp: TabularMDP, alpha: float, tol: float = 1e-13, max_iter: int = 100_000) -> Tensor:
    """The soft-optimal ``Q*`` by soft value iteration: ``Q ← R + γ P (α logsumexp(Q/α))``."""
    Q = torch.zeros_like(mdp.R)
    for _ in range(max_iter):
        Q_new = mdp.R + mdp.gamma * mdp.P @ (alpha * torch.logsumexp(Q / alpha, dim=-1))
        if (Q_new - Q).abs().max() < tol:
            return Q_new
        Q = Q_new
    return Q
