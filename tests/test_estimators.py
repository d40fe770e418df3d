"""Every estimator against a naive reference written from its definition, one env and one step at a time.

The references walk forward from each step to the end of its episode (or of the data), which is
a different algorithm from the vectorised reverse recursions in ``pgrad.estimators``.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrad.estimators import discounted_returns, explained_variance, gae, n_step_returns, reward_to_go, td_errors


@st.composite
def rollouts(draw):
    """Random ``[T, N]`` rollouts with terminations and truncations anywhere, both at once too."""
    T = draw(st.integers(1, 12))
    N = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    p_term, p_trunc = draw(st.floats(0, 0.4)), draw(st.floats(0, 0.4))
    data = dict(
        rewards=rng.normal(size=(T, N)),
        values=rng.normal(size=(T, N)),
        next_values=rng.normal(size=(T, N)),
        terminated=rng.random((T, N)) < p_term,
        truncated=rng.random((T, N)) < p_trunc,
    )
    # Inside an episode the next state's value is the next step's value: make the data consistent.
    done = data["terminated"] | data["truncated"]
    for t in range(T - 1):
        keep = ~done[t]
        data["next_values"][t, keep] = data["values"][t + 1, keep]
    gamma = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))
    lam = draw(st.sampled_from([0.0, 0.3, 0.95, 1.0]))
    return data, gamma, lam


def torch_args(d):
    return {k: torch.as_tensor(v, dtype=torch.float64 if v.dtype != bool else torch.bool) for k, v in d.items()}


def naive_return(d, t, n, gamma, horizon=None):
    """Σ_{k<m} γ^k r_{t+k} + γ^m V(s_{t+m}) walking forward until the episode, data or window ends."""
    T = d["rewards"].shape[0]
    total, discount, k = 0.0, 1.0, 0
    while True:
        s = t + k
        total += discount * d["rewards"][s, n]
        discount *= gamma
        k += 1
        if d["terminated"][s, n]:
            return total
        if d["truncated"][s, n] or s == T - 1 or (horizon is not None and k == horizon):
            return total + discount * d["next_values"][s, n]


def naive_gae(d, t, n, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k} over the rest of the episode within the data."""
    T = d["rewards"].shape[0]
    total, weight, s = 0.0, 1.0, t
    while True:
        delta = d["rewards"][s, n] + gamma * (1 - d["terminated"][s, n]) * d["next_values"][s, n] - d["values"][s, n]
        total += weight * delta
        if d["terminated"][s, n] or d["truncated"][s, n] or s == T - 1:
            return total
        weight *= gamma * lam
        s += 1


@settings(max_examples=200, deadline=None)
@given(rollouts())
def test_gae_matches_naive_sum_of_td_errors(case):
    d, gamma, lam = case
    adv, ret = gae(**{k: v for k, v in torch_args(d).items()}, gamma=gamma, gae_lambda=lam)
    T, N = d["rewards"].shape
    expected = np.array([[naive_gae(d, t, n, gamma, lam) for n in range(N)] for t in range(T)])
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + d["values"], rtol=1e-10, atol=1e-10)


@settings(max_examples=200, deadline=None)
@given(rollouts())
def test_discounted_returns_match_naive_forward_sum(case):
    d, gamma, _ = case
    a = torch_args(d)
    got = discounted_returns(a["rewards"], a["next_values"], a["terminated"], a["truncated"], gamma)
    T, N = d["rewards"].shape
    expected = np.array([[naive_return(d, t, n, gamma) for n in range(N)] for t in range(T)])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=200, deadline=None)
@given(rollouts(), st.integers(1, 6))
def test_n_step_returns_match_naive_window(case, n):
    d, gamma, _ = case
    a = torch_args(d)
    got = n_step_returns(a["rewards"], a["next_values"], a["terminated"], a["truncated"], gamma, n)
    T, N = d["rewards"].shape
    expected = np.array([[naive_return(d, t, e, gamma, horizon=n) for e in range(N)] for t in range(T)])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=100, deadline=None)
@given(rollouts())
def test_gae_limits_lambda_one_is_mc_minus_v_and_lambda_zero_is_td_error(case):
    d, gamma, _ = case
    a = torch_args(d)
    adv1, _ = gae(**a, gamma=gamma, gae_lambda=1.0)
    mc = discounted_returns(a["rewards"], a["next_values"], a["terminated"], a["truncated"], gamma)
    np.testing.assert_allclose(adv1.numpy(), (mc - a["values"]).numpy(), rtol=1e-9, atol=1e-9)
    adv0, _ = gae(**a, gamma=gamma, gae_lambda=0.0)
    delta = td_errors(a["rewards"], a["values"], a["next_values"], a["terminated"], gamma)
    np.testing.assert_allclose(adv0.numpy(), delta.numpy(), rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(rollouts())
def test_n_step_with_long_window_equals_full_return(case):
    d, gamma, _ = case
    a = torch_args(d)
    T = d["rewards"].shape[0]
    full = discounted_returns(a["rewards"], a["next_values"], a["terminated"], a["truncated"], gamma)
    nstep = n_step_returns(a["rewards"], a["next_values"], a["terminated"], a["truncated"], gamma, n=T)
    np.testing.assert_allclose(nstep.numpy(), full.numpy(), rtol=1e-10, atol=1e-10)


def test_truncation_bootstraps_and_termination_does_not_hand_table():
    """One env, 4 steps, γ = 0.5: a truncation after step 1, a termination after step 3."""
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    v_next = torch.tensor([[9.0], [10.0], [7.0], [5.0]])  # 10 = V(real final obs of episode 1)
    term = torch.tensor([[False], [False], [False], [True]])
    trunc = torch.tensor([[False], [True], [False], [False]])
    got = discounted_returns(r, v_next, term, trunc, 0.5)
    # G_1 = 2 + 0.5·10 = 7;  G_0 = 1 + 0.5·7 = 4.5;  G_3 = 4;  G_2 = 3 + 0.5·4 = 5
    assert got.squeeze(-1).tolist() == [4.5, 7.0, 5.0, 4.0]
    # Treating the truncation as termination would have given G_1 = 2: the bug this guards against.


def test_reward_to_go_is_causal_and_stops_at_episode_end():
    r = torch.tensor([[1.0], [1.0], [1.0], [1.0], [1.0]])
    dones = torch.tensor([[False], [False], [True], [False], [True]])
    got = reward_to_go(r, dones, gamma=1.0).squeeze(-1).tolist()
    assert got == [3.0, 2.0, 1.0, 2.0, 1.0]


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y).item() == 1.0
    assert abs(explained_variance(torch.full_like(y, 2.5), y).item()) < 1e-6
