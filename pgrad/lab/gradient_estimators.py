"""The Monte Carlo policy-gradient estimators the notes compare, as per-step weights.

Each estimator returns ``w`` ``[m, T]`` with ``ĝ_i = Σ_t w_{i,t} ∇log π(a_{i,t}|s_{i,t})`` (see
:mod:`pgrad.lab.sampling`). The returns, advantages and TD quantities come from
:mod:`pgrad.estimators`, the same functions the training algorithms use, applied to time-major data
whose last step ends the episode (the horizon: ``V_T = 0``).

Every estimator targets ``∇J`` for the MDP's discount γ and so carries the ``γ^t`` factor of the
policy gradient theorem, except the ``discounted`` pair, which use their own discount γ' < γ as a
variance-reduction device (the notes' "Discount Factor Adjustment"): ``discounted+γ'^t`` is unbiased
for ``∇J_{γ'}`` and ``discounted`` (the common practice, no ``γ'^t``) for neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pgrad import estimators
from pgrad.lab.exact import evaluate
from pgrad.lab.mdps import TabularMDP
from pgrad.lab.sampling import Trajectories, log_probs


@dataclass(frozen=True)
class Critic:
    """A state-value table ``V[t, s]`` used as a baseline or to bootstrap (``[T, S]``)."""

    name: str
    table: Tensor

    def values(self, traj: Trajectories) -> tuple[Tensor, Tensor]:
        """``(V_t(s_t), V_{t+1}(s_{t+1}))`` ``[m, T]``; the value after the horizon is 0."""
        t = torch.arange(traj.T).expand(traj.m, -1)
        values = self.table[t, traj.states]
        next_values = torch.zeros_like(values)
        next_values[:, :-1] = values[:, 1:]
        return values, next_values


def exact_critic(mdp: TabularMDP, pi: Tensor) -> Critic:
    """The true ``V^π_t(s)`` of the remaining horizon (time-dependent)."""
    return Critic("exact V", evaluate(mdp, pi).V)


def fitted_critic(mdp: TabularMDP, traj: Trajectories) -> Critic:
    """A stationary ``V̂(s)``: the average reward-to-go from each state over an independent batch.

    This is what a state-only critic learns on a finite-horizon problem; it ignores the time left, so
    it is a *wrong* V (unvisited states get 0).
    """
    r, done = time_major(traj)
    to_go = estimators.reward_to_go(r, done, mdp.gamma).T
    S = mdp.n_states
    total = torch.zeros(S, dtype=r.dtype).scatter_add_(0, traj.states.reshape(-1), to_go.reshape(-1))
    count = torch.zeros(S, dtype=r.dtype).scatter_add_(0, traj.states.reshape(-1), torch.ones_like(to_go).reshape(-1))
    V = total / count.clamp(min=1)
    return Critic("fitted V", V.expand(traj.T, -1))


@dataclass(frozen=True)
class Setting:
    """What the estimators may use: the MDP, the current and the behaviour policy, two critics and
    the estimator discount γ'."""

    mdp: TabularMDP
    pi: Tensor
    pi_old: Tensor
    exact: Critic
    fitted: Critic
    discount: float


def time_major(traj: Trajectories) -> tuple[Tensor, Tensor]:
    """Rewards ``[T, m]`` and the done mask that ends every trajectory at the horizon."""
    r = traj.rewards.T.contiguous()
    done = torch.zeros_like(r, dtype=torch.bool)
    done[-1] = True
    return r, done


def _powers(gamma: float, T: int) -> Tensor:
    return gamma ** torch.arange(T, dtype=torch.float64)


def reinforce(traj: Trajectories, st: Setting) -> Tensor:
    # ĝ = Σ_t ∇log π(a_t|s_t) · Σ_t γ^t r_t   (total return)
    r, done = time_major(traj)
    return estimators.episode_returns(r, done, st.mdp.gamma).T


def constant_baseline(traj: Trajectories, st: Setting) -> Tensor:
    # ĝ = Σ_t ∇log π · (R(τ) − b), b = the mean return of the *other* trajectories (leave-one-out keeps it unbiased)
    G0 = reinforce(traj, st)
    b = (G0[:, 0].sum() - G0[:, 0]) / max(traj.m - 1, 1)
    return G0 - b.unsqueeze(1)


def reward_to_go(traj: Trajectories, st: Setting) -> Tensor:
    # causality: ĝ = Σ_t ∇log π(a_t|s_t) γ^t G_t,  G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}
    r, done = time_major(traj)
    return _powers(st.mdp.gamma, traj.T) * estimators.reward_to_go(r, done, st.mdp.gamma).T


def state_baseline(critic: str) -> Callable[[Trajectories, Setting], Tensor]:
    def weights(traj: Trajectories, st: Setting) -> Tensor:
        # ĝ = Σ_t ∇log π γ^t (G_t − V(s_t))
        values, _ = getattr(st, critic).values(traj)
        r, done = time_major(traj)
        return _powers(st.mdp.gamma, traj.T) * (estimators.reward_to_go(r, done, st.mdp.gamma).T - values)

    return weights


def discounted(weighted: bool) -> Callable[[Trajectories, Setting], Tensor]:
    def weights(traj: Trajectories, st: Setting) -> Tensor:
        # G_t^{γ'} = Σ_{t'≥t} γ'^{t'−t} r_{t'};  weighted: ĝ = Σ_t ∇log π γ'^t G_t^{γ'}, else Σ_t ∇log π G_t^{γ'}
        r, done = time_major(traj)
        to_go = estimators.reward_to_go(r, done, st.discount).T
        return _powers(st.discount, traj.T) * to_go if weighted else to_go

    return weights


def n_step(n: int, critic: str = "fitted") -> Callable[[Trajectories, Setting], Tensor]:
    def weights(traj: Trajectories, st: Setting) -> Tensor:
        # n-step advantage: Â_t = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n}) − V(s_t)
        values, next_values = getattr(st, critic).values(traj)
        r, done = time_major(traj)
        returns = estimators.n_step_returns(r, next_values.T, done, torch.zeros_like(done), st.mdp.gamma, n)
        return _powers(st.mdp.gamma, traj.T) * (returns.T - values)

    return weights


def gae(lam: float, critic: str) -> Callable[[Trajectories, Setting], Tensor]:
    def weights(traj: Trajectories, st: Setting) -> Tensor:
        # GAE: A_t = Σ_k (γλ)^k δ_{t+k},  δ_t = r_t + γ V(s_{t+1}) − V(s_t)
        values, next_values = getattr(st, critic).values(traj)
        r, done = time_major(traj)
        advantages, _ = estimators.gae(r, values.T, next_values.T, done, torch.zeros_like(done), st.mdp.gamma, lam)
        return _powers(st.mdp.gamma, traj.T) * advantages.T

    return weights


def importance_sampled(traj: Trajectories, st: Setting) -> Tensor:
    # IS (data from θ_old): ĝ = [p_θ(τ)/p_θold(τ)] Σ_t ∇log π_θ(a_t|s_t) R(τ),  p_θ(τ)/p_θold(τ) = Π_t π_θ(a_t|s_t)/π_θold(a_t|s_t)
    ratio = torch.exp((log_probs(st.pi, traj) - log_probs(st.pi_old, traj)).sum(1, keepdim=True))
    return ratio * reinforce(traj, st)


def importance_sampled_per_decision(traj: Trajectories, st: Setting) -> Tensor:
    # per-decision IS: ĝ = Σ_t ∇log π_θ(a_t|s_t) Σ_{t'≥t} ρ_{0:t'} γ^{t'} r_{t'},  ρ_{0:t'} = Π_{k≤t'} π_θ/π_θold
    rho = torch.exp(torch.cumsum(log_probs(st.pi, traj) - log_probs(st.pi_old, traj), dim=1))
    weighted = rho * _powers(st.mdp.gamma, traj.T) * traj.rewards
    return weighted.flip(1).cumsum(1).flip(1)


@dataclass(frozen=True)
class Estimator:
    """``behaviour``: ``"current"`` samples from π_θ, ``"old"`` from π_θold (importance sampling).
    ``own_discount``: the estimator targets ∇J_{γ'} rather than ∇J_γ (the discounted pair)."""

    name: str
    weights: Callable[[Trajectories, Setting], Tensor]
    unbiased: bool  # for the gradient it targets, by the theory (the tests check these)
    behaviour: str = "current"
    own_discount: bool = False
    family: str = "core"


def catalogue(lambdas: tuple[float, ...], n_steps: tuple[int, ...], discount: float) -> list[Estimator]:
    """Every estimator of the study, in display order."""
    items = [
        Estimator("reinforce", reinforce, True),
        Estimator("reinforce + const baseline", constant_baseline, True),
        Estimator("reward-to-go", reward_to_go, True),
        Estimator("rtg + exact V", state_baseline("exact"), True),
        Estimator("rtg + fitted V", state_baseline("fitted"), True),
        Estimator(f"discounted γ'={discount:g}", discounted(False), False, own_discount=True),
        Estimator(f"discounted γ'={discount:g} + γ'^t", discounted(True), True, own_discount=True),
    ]
    items += [Estimator(f"{n}-step (fitted V)", n_step(n), False, family="n_step") for n in n_steps]
    for critic, unbiased in (("fitted", False), ("exact", True)):
        for lam in lambdas:
            # GAE(λ = 1) is reward-to-go minus V(s_t): unbiased with any state-only baseline
            items.append(
                Estimator(
                    f"GAE λ={lam:g} ({critic} V)", gae(lam, critic), unbiased or lam == 1.0, family=f"gae_{critic}"
                )
            )
    items += [
        Estimator("importance-sampled", importance_sampled, True, behaviour="old"),
        Estimator("importance-sampled per-decision", importance_sampled_per_decision, True, behaviour="old"),
    ]
    return items
