"""Return and advantage estimators: pure functions of time-major ``[T, N]`` tensors.

Conventions (the same for every function here):

- Index ``t`` is a transition ``(s_t, a_t) -> r_t, s_{t+1}`` of env ``n``.
- ``terminated[t]``: ``s_{t+1}`` is terminal, so its value is 0 and nothing is bootstrapped.
- ``truncated[t]``: the episode was cut after step ``t`` (a time limit); ``s_{t+1}`` is not terminal,
  so the return *is* bootstrapped from ``V(s_{t+1})``.
- ``done[t] = terminated[t] | truncated[t]``: step ``t + 1`` belongs to a new episode, so every
  recursion stops there. The *bootstrap* mask is ``terminated`` alone; the *episode-boundary*
  mask is ``done`` (mixing the two is CHECKLIST item 4).
- ``values[t] = V(s_t)``; ``next_values[t] = V(s_{t+1})`` of the **real** next state: the final
  observation of an episode that ended at ``t`` (not the reset observation the vector env returned),
  and for ``t = T - 1`` the value of the state the rollout stopped in.

Masks may be bool or float tensors. Nothing here needs gradients: callers pass detached values.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _float(mask: Tensor, like: Tensor) -> Tensor:
    return mask.to(dtype=like.dtype)


def td_errors(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    """One-step TD errors ``[T, N]``.

    # TD error: δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t)
    """
    return rewards + gamma * (1.0 - _float(terminated, rewards)) * next_values - values


def td_target(rewards: Tensor, terminated: Tensor, next_values: Tensor, gamma: float | Tensor) -> Tensor:
    """The bootstrapped target ``y = r + γ (1 − term) V(s')`` (``[B]``), as the off-policy critics
    use it with V(s') = Q'(s', μ'(s')), min Q' − α log π, or V̄(s'). For n-step targets ``r`` is the
    n-step return and ``gamma`` the per-sample γ^k of :func:`n_step_return`."""
    return rewards + gamma * (1.0 - _float(terminated, rewards)) * next_values


def n_step_return(rewards: Tensor, mask: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """``(R, γ^k)`` of each sample from its next ``n`` rewards ``[B, n]`` and the mask of the ``k``
    steps in its episode (``NStepReplayBuffer``): the target is then ``R + γ^k (1 − d) V(s_{t+k})``.

    # n-step return: R = Σ_{j<k} γ^j r_{t+j},  k ≤ n (cut where the episode ends)
    """
    powers = gamma ** torch.arange(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
    returns = (rewards * powers * _float(mask, rewards)).sum(1)
    return returns, gamma ** mask.sum(1).to(rewards.dtype)


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation; returns ``(advantages, returns)``, each ``[T, N]``.

    ``returns = advantages + values`` is the TD(λ) target for the critic.
    λ = 1 gives the bootstrapped Monte Carlo return minus V; λ = 0 gives the one-step TD error.
    """
    delta = td_errors(rewards, values, next_values, terminated, gamma)
    # Episode boundary: the recursion never crosses into the next episode.
    carry = gamma * gae_lambda * (1.0 - _float(terminated | truncated, rewards))
    advantages = torch.empty_like(rewards)
    next_advantage = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        # GAE: A_t = δ_t + γλ (1 − done_t) A_{t+1}   ⇔   A_t = Σ_k (γλ)^k δ_{t+k} within an episode
        next_advantage = delta[t] + carry[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def discounted_returns(
    rewards: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
) -> Tensor:
    """Bootstrapped discounted returns ``[T, N]``.

    The return runs to the end of the episode; where the data stops before the episode does
    (truncation, or the end of the rollout) it is completed by ``V`` of the real next state.
    Pass ``next_values = 0`` for plain Monte Carlo returns of complete episodes.
    """
    term = _float(terminated, rewards)
    cut = _float(truncated & ~terminated.bool(), rewards)
    returns = torch.empty_like(rewards)
    # After the last step the only continuation is the bootstrap.
    following = next_values[-1] * (1.0 - term[-1])
    for t in range(rewards.shape[0] - 1, -1, -1):
        if t < rewards.shape[0] - 1:
            # Continue with G_{t+1} inside an episode, V(s_{t+1}) at a truncation, 0 at termination.
            following = (1.0 - term[t] - cut[t]) * returns[t + 1] + cut[t] * next_values[t]
        # G_t = r_t + γ G_{t+1}
        returns[t] = rewards[t] + gamma * following
    return returns


def reward_to_go(rewards: Tensor, dones: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go ``Σ_{t' ≥ t} γ^{t'−t} r_{t'}`` within each episode, ``[T, N]``.

    No bootstrap: meant for complete episodes (REINFORCE). ``dones[t]`` ends an episode after ``t``.
    """
    zeros = torch.zeros_like(rewards)
    done = dones.bool()
    return discounted_returns(rewards, zeros, done, torch.zeros_like(done), gamma)


def episode_returns(rewards: Tensor, dones: Tensor, gamma: float) -> Tensor:
    """The whole episode's return ``G_0 = Σ_t γ^t r_t``, repeated at every step of that episode, ``[T, N]``.

    For REINFORCE without the causality trick. Row 0 must start an episode; ``dones[t]`` ends one.
    """
    to_go = reward_to_go(rewards, dones, gamma)
    returns = torch.empty_like(to_go)
    returns[0] = to_go[0]
    done = dones.bool()
    for t in range(1, rewards.shape[0]):
        # A new episode starts at t after a done at t − 1; otherwise G_0 carries forward.
        returns[t] = torch.where(done[t - 1], to_go[t], returns[t - 1])
    return returns


def steps_in_episode(dones: Tensor) -> Tensor:
    """Each step's index ``t`` within its episode, ``[T, N]`` int64 (row 0 starts an episode)."""
    index = torch.zeros(dones.shape, dtype=torch.int64, device=dones.device)
    done = dones.bool()
    for t in range(1, dones.shape[0]):
        index[t] = torch.where(done[t - 1], 0, index[t - 1] + 1)
    return index


def n_step_returns(
    rewards: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step returns ``[T, N]``.

    # n-step: R_t^(n) = Σ_{k<n} γ^k r_{t+k} + γ^n V(s_{t+n})

    The window shortens to ``m < n`` steps where the episode ends (no bootstrap at termination,
    ``V`` of the real final state at truncation) or the rollout ends (bootstrap from
    ``next_values[T-1]``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    T = rewards.shape[0]
    if n >= T:  # every window reaches the rollout's end: the bootstrapped return (tested identity)
        return discounted_returns(rewards, next_values, terminated, truncated, gamma)
    term = _float(terminated, rewards)
    done = terminated.bool() | truncated.bool()
    returns = torch.zeros_like(rewards)
    discount = torch.ones_like(rewards)
    alive = torch.ones_like(done)  # the window of row t has not closed yet
    for k in range(min(n, T)):
        rows = T - k  # rows t with t + k < T
        r_k, d_k = rewards[k:], done[k:]
        returns[:rows] += alive[:rows] * discount[:rows] * r_k
        closes = d_k.clone()
        closes[-1] = True  # the rollout ends at T - 1
        if k == n - 1:
            closes[:] = True
        closes &= alive[:rows]
        boot = gamma * (1.0 - term[k:]) * next_values[k:]
        returns[:rows] += closes * discount[:rows] * boot
        alive[:rows] &= ~closes
        discount[:rows] *= gamma
    return returns


def standardize(x: Tensor) -> Tensor:
    """``(x − mean) / (std + 1e-8)``: advantage normalisation (a single sample is left as is)."""
    if x.numel() < 2:
        return x
    std, mean = torch.std_mean(x)  # one pass for both
    return (x - mean) / (std + 1e-8)


def explained_variance(predictions: Tensor, targets: Tensor) -> Tensor:
    """``1 − Var[y − ŷ] / Var[y]``: 1 is a perfect critic, 0 no better than a constant."""
    if targets.numel() < 2:
        return torch.tensor(float("nan"))
    var_y = targets.var()
    return 1.0 - (targets - predictions).var() / var_y if var_y > 0 else torch.full_like(var_y, float("nan"))
