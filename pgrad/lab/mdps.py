"""Small tabular MDPs with known dynamics, for exact policy-gradient computations.

An MDP here is ``(P, R, μ0, γ, T)``: ``P[s, a, s']`` transition probabilities, ``R[s, a]`` the
expected reward, ``μ0`` the start distribution, ``γ`` the objective's discount and ``T`` the horizon.
``horizon=None`` is the infinite-horizon discounted form (needs γ < 1); an integer ``T`` is the
finite-horizon form ``J = E[Σ_{t<T} γ^t r_t]`` (γ = 1 allowed). Every MDP is continuing: no state is
terminal, so the only end of an episode is the horizon. Everything is float64.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TabularMDP:
    name: str
    P: Tensor  # [S, A, S]
    R: Tensor  # [S, A]
    mu0: Tensor  # [S]
    gamma: float
    horizon: int | None

    def __post_init__(self) -> None:
        S, A, S2 = self.P.shape
        if S != S2 or self.R.shape != (S, A) or self.mu0.shape != (S,):
            raise ValueError(
                f"inconsistent shapes: P {tuple(self.P.shape)}, R {tuple(self.R.shape)}, mu0 {tuple(self.mu0.shape)}"
            )
        if (self.P < 0).any() or not torch.allclose(self.P.sum(-1), torch.ones(S, A, dtype=self.P.dtype)):
            raise ValueError("every P[s, a, :] must be a probability distribution")
        if (self.mu0 < 0).any() or abs(float(self.mu0.sum()) - 1.0) > 1e-9:
            raise ValueError("mu0 must be a probability distribution")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma} is invalid: must be in (0, 1]")
        if self.horizon is None and self.gamma >= 1.0:
            raise ValueError(f"gamma={self.gamma} is invalid for the infinite-horizon form: must be < 1")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon={self.horizon} is invalid: must be >= 1 (or None for infinite)")

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def replace(self, **changes) -> TabularMDP:
        """A copy with ``horizon`` and/or ``gamma`` changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _move(outcomes: list[tuple[int, float]], S: int) -> Tensor:
    """A next-state distribution from ``(state, probability)`` pairs (repeated states add up)."""
    row = torch.zeros(S, dtype=torch.float64)
    for s, p in outcomes:
        row[s] += p
    return row


def chain(n_states: int = 5, slip: float = 0.1, gamma: float = 1.0, horizon: int | None = 20) -> TabularMDP:
    """A line of states, start at the left end; actions 0 = left, 1 = right.

    The intended move happens with probability ``1 − slip``, the opposite one otherwise (walls keep
    you in place). Going right at the right end pays 1; going left at the left end pays 0.2 (a
    nearby distraction from the far reward).
    """
    S, A = n_states, 2
    P = torch.zeros(S, A, S, dtype=torch.float64)
    R = torch.zeros(S, A, dtype=torch.float64)
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0] = _move([(left, 1 - slip), (right, slip)], S)
        P[s, 1] = _move([(right, 1 - slip), (left, slip)], S)
    R[S - 1, 1] = 1.0
    R[0, 0] = 0.2
    mu0 = torch.zeros(S, dtype=torch.float64)
    mu0[0] = 1.0
    return TabularMDP("chain", P, R, mu0, gamma, horizon)


def gridworld(size: int = 4, slip: float = 0.2, gamma: float = 1.0, horizon: int | None = 20) -> TabularMDP:
    """A ``size × size`` grid, start top-left, goal bottom-right; actions up, down, left, right.

    With probability ``slip`` the move goes to one of the two perpendicular directions instead
    (``slip / 2`` each); walls keep you in place. Any action at the goal pays 1 and returns you to
    the start; every other step costs 0.01.
    """
    S, A = size * size, 4
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    perpendicular = {0: (2, 3), 1: (2, 3), 2: (0, 1), 3: (0, 1)}
    goal = S - 1

    def step(s: int, a: int) -> int:
        r, c = divmod(s, size)
        dr, dc = moves[a]
        r2, c2 = min(max(r + dr, 0), size - 1), min(max(c + dc, 0), size - 1)
        return r2 * size + c2

    P = torch.zeros(S, A, S, dtype=torch.float64)
    R = torch.full((S, A), -0.01, dtype=torch.float64)
    for s in range(S):
        for a in range(A):
            if s == goal:
                P[s, a, 0] = 1.0
                R[s, a] = 1.0
                continue
            p, q = perpendicular[a]
            P[s, a] = _move([(step(s, a), 1 - slip), (step(s, p), slip / 2), (step(s, q), slip / 2)], S)
    mu0 = torch.zeros(S, dtype=torch.float64)
    mu0[0] = 1.0
    return TabularMDP("gridworld", P, R, mu0, gamma, horizon)


def random_mdp(
    n_states: int = 5, n_actions: int = 3, seed: int = 0, gamma: float = 0.9, horizon: int | None = None
) -> TabularMDP:
    """Dirichlet(1) transitions and start distribution, standard-normal rewards, from ``seed``."""
    g = torch.Generator().manual_seed(seed)

    def dirichlet_1(*shape: int) -> Tensor:  # Dirichlet(1, …, 1) = normalised Exp(1) draws
        x = torch.empty(*shape, dtype=torch.float64).exponential_(generator=g)
        return x / x.sum(-1, keepdim=True)

    P = dirichlet_1(n_states, n_actions, n_states)
    mu0 = dirichlet_1(n_states)
    R = torch.randn(n_states, n_actions, dtype=torch.float64, generator=g)
    return TabularMDP("random", P, R, mu0, gamma, horizon)


MDPS = {"chain": chain, "gridworld": gridworld, "random": random_mdp}


def make_mdp(name: str, *, horizon: int | None, gamma: float, seed: int = 0) -> TabularMDP:
    """One of :data:`MDPS` by name (``seed`` matters only for ``random``)."""
    if name not in MDPS:
        raise ValueError(f"unknown MDP {name!r}; choose one of: {', '.join(MDPS)}")
    if name == "random":
        return random_mdp(seed=seed, gamma=gamma, horizon=horizon)
    return MDPS[name](gamma=gamma, horizon=horizon)
