"""REINFORCE: each option's gradient against the notes' formula written out per episode, and the
baseline's promise (same expected gradient, lower variance) measured against an exact gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from pgrad.algos.reinforce import reinforce_loss, reinforce_weights
from pgrad.distributions import Categorical
from pgrad.networks import ActorCritic

GAMMA = 0.9


pytestmark = pytest.mark.usefixtures("float64")  # conftest: float64 for exact comparisons


def fixed_batch():
    """Two envs, 6 steps: env 0 holds episodes of 2 and 4 steps; env 1 one of 5 steps and then a
    step past its quota (masked out)."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(6, 2, 2, generator=g)
    actions = torch.randint(0, 3, (6, 2), generator=g)
    rewards = torch.randn(6, 2, generator=g)
    dones = torch.zeros(6, 2, dtype=torch.bool)
    dones[1, 0] = dones[5, 0] = dones[4, 1] = True
    valid = torch.ones(6, 2, dtype=torch.bool)
    valid[5, 1] = False
    values = torch.randn(6, 2, generator=g)
    episodes = [[(0, 0), (1, 0)], [(2, 0), (3, 0), (4, 0), (5, 0)], [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]]
    return obs, actions, rewards, dones, valid, values, episodes


def hand_gradient(policy, obs, actions, rewards, values, episodes, reward_to_go, baseline, discount_weighting):
    """(1/M) Σ_i Σ_t ∇log π(a_t|s_t) · w_t, every w_t written from its definition."""
    params = policy.policy_parameters()

    def score(t, n):
        log_prob = policy.distribution(obs[t, n][None]).log_prob(actions[t, n][None]).sum()
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(log_prob, params)])

    def G(episode, t):  # the return the estimator weights step t with
        start = t if reward_to_go else 0
        return sum(GAMMA ** (k - start) * rewards[episode[k]] for k in range(start, len(episode)))

    episode_means = [sum(G(ep, t) for t in range(len(ep))) / len(ep) for ep in episodes]
    M = len(episodes)
    total = 0
    for i, ep in enumerate(episodes):
        for t, (step, env) in enumerate(ep):
            w = G(ep, t)
            if baseline == "mean":  # the other episodes' mean return
                w = w - (sum(episode_means) - episode_means[i]) / (M - 1)
            elif baseline == "value":
                w = w - values[step, env]
            if discount_weighting:
                w = w * GAMMA**t
            total = total + score(step, env) * w
    return total / M


@pytest.mark.parametrize(
    "reward_to_go, baseline, discount_weighting",
    list(itertools.product([False, True], ["none", "mean", "value"], [False, True])),
)
def test_gradient_equals_the_notes_formula(reward_to_go, baseline, discount_weighting):
    torch.manual_seed(0)
    policy = ActorCritic(2, 3, discrete=True, hidden_sizes=(4,))
    obs, actions, rewards, dones, valid, values, episodes = fixed_batch()
    weights, _ = reinforce_weights(
        rewards, dones, valid, GAMMA, reward_to_go, baseline, values, discount_weighting, normalize=False
    )
    log_probs = policy.distribution(obs[valid]).log_prob(actions[valid])
    loss = reinforce_loss(log_probs, weights[valid], n_episodes=len(episodes))
    params = policy.policy_parameters()
    got = -torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    expected = hand_gradient(
        policy, obs, actions, rewards, values, episodes, reward_to_go, baseline, discount_weighting
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_plain_reinforce_is_score_sum_times_return_sum():
    """baseline none, no reward-to-go, γ = 1: ∇J ≈ (1/M) Σ_i (Σ_t ∇log π(a_t|s_t)) (Σ_t r_t)."""
    torch.manual_seed(1)
    policy = ActorCritic(2, 3, discrete=True, hidden_sizes=(4,))
    obs, actions, rewards, dones, valid, _, episodes = fixed_batch()
    weights, _ = reinforce_weights(rewards, dones, valid, 1.0, False, "none", None, False, False)
    loss = reinforce_loss(policy.distribution(obs[valid]).log_prob(actions[valid]), weights[valid], 3)
    params = policy.policy_parameters()
    got = -torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    expected = 0
    for ep in episodes:
        idx_t, idx_n = torch.tensor([s for s, _ in ep]), torch.tensor([n for _, n in ep])
        score_sum = policy.distribution(obs[idx_t, idx_n]).log_prob(actions[idx_t, idx_n]).sum()
        grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(score_sum, params)])
        expected = expected + grad * rewards[idx_t, idx_n].sum()
    torch.testing.assert_close(got, expected / 3, rtol=1e-10, atol=1e-12)


def test_mean_baseline_keeps_the_expected_gradient_and_cuts_its_variance():
    """A 4-step problem with 3 actions per step and reward 5 + m_a + N(0, 1): the large common
    offset is what a baseline removes. Exact gradient: ∇J = T · π ⊙ (m − πᵀm) per logit."""
    T, M, repeats = 4, 8, 3000
    m = torch.tensor([0.0, 0.5, 1.0])
    logits = torch.tensor([0.2, -0.1, 0.3], requires_grad=True)
    pi = torch.softmax(logits.detach(), 0)
    exact = T * pi * (m - pi @ m)
    g = torch.Generator().manual_seed(0)
    dones = torch.zeros(T, M, dtype=torch.bool)
    dones[-1] = True
    valid = torch.ones(T, M, dtype=torch.bool)
    estimates = {"none": [], "mean": []}
    for _ in range(repeats):
        actions = torch.multinomial(pi.expand(T * M, 3), 1, generator=g).view(T, M)
        rewards = 5.0 + m[actions] + torch.randn(T, M, generator=g)
        log_probs = Categorical(logits.expand(T, M, 3)).log_prob(actions)
        for baseline in estimates:
            weights, _ = reinforce_weights(rewards, dones, valid, 1.0, False, baseline, None, False, False)
            (grad,) = torch.autograd.grad(reinforce_loss(log_probs, weights, M), logits, retain_graph=True)
            estimates[baseline].append(-grad)
    stats = {}
    for baseline, values in estimates.items():
        values = torch.stack(values)
        mean, stderr = values.mean(0), values.std(0) / repeats**0.5
        assert ((mean - exact).abs() < 4 * stderr).all(), (baseline, mean, exact, stderr)  # unbiased
        stats[baseline] = values.var(0).sum()
    assert stats["mean"] < 0.1 * stats["none"], stats  # the offset's variance is gone
