"""REINFORCE: each option's gradient against the notes' formula written out per episode, and the
baseline's promise (same expected gradient, lower variance) measured against an exact gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

import pgrad
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


ALLOWED = [c for c in itertools.product([False, True], ["none", "mean", "value"], [False, True]) if c[0] or not c[2]]


@pytest.mark.parametrize("reward_to_go, baseline, discount_weighting", ALLOWED)
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


def enumerate_episodes(mdp, pi):
    """Every episode of a finite-horizon tabular MDP with its probability: ``(states [T], actions [T],
    rewards [T], probability)`` (rewards are the MDP's expected R(s, a): the estimator is linear in them)."""
    T, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    out = []
    for states in itertools.product(range(S), repeat=T):
        for actions in itertools.product(range(A), repeat=T):
            p = mdp.mu0[states[0]] * pi[states[0], actions[0]]
            for t in range(1, T):
                p = p * mdp.P[states[t - 1], actions[t - 1], states[t]] * pi[states[t], actions[t]]
            rewards = torch.stack([mdp.R[s, a] for s, a in zip(states, actions, strict=True)])
            out.append((torch.tensor(states), torch.tensor(actions), rewards, p))
    return out


@pytest.mark.parametrize("gamma", [0.8, 1.0])
@pytest.mark.parametrize("reward_to_go, baseline, discount_weighting", ALLOWED)
def test_expected_estimate_is_the_exact_gradient_on_an_enumerable_mdp(
    gamma, reward_to_go, baseline, discount_weighting
):
    """E[estimate] summed over every pair of episodes (two: the mean baseline leaves one out), each
    with its probability, against the policy gradient theorem's exact ∇J of J = E[Σ_t γ^t r_t]."""
    from pgrad.lab import exact
    from pgrad.lab.mdps import random_mdp

    mdp = random_mdp(n_states=3, n_actions=2, seed=5, gamma=gamma, horizon=2)
    theta = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    pi = exact.softmax_policy(theta)
    state_values = torch.tensor([0.3, -1.2, 2.0])  # any function of the state is an unbiased baseline
    episodes = enumerate_episodes(mdp, pi)
    T = mdp.horizon
    dones = torch.zeros(T, 2, dtype=torch.bool)
    dones[-1] = True
    valid = torch.ones(T, 2, dtype=torch.bool)
    expected = torch.zeros(3, 2)
    for (s1, a1, r1, p1), (s2, a2, r2, p2) in itertools.product(episodes, repeat=2):
        states, actions = torch.stack([s1, s2], 1), torch.stack([a1, a2], 1)
        weights, _ = reinforce_weights(torch.stack([r1, r2], 1), dones, valid, gamma, reward_to_go, baseline,
                                       state_values[states], discount_weighting, normalize=False)  # fmt: skip
        # tabular softmax score: ∂log π(a|s)/∂θ[s, b] = 1[a = b] − π(b|s)
        score = torch.nn.functional.one_hot(actions, 2).double() - pi[states]
        estimate = torch.zeros(3, 2).index_add_(0, states.reshape(-1), (weights[..., None] * score).reshape(-1, 2)) / 2
        expected += p1 * p2 * estimate
    exact_gradient = exact.policy_gradient(mdp, theta)
    if gamma < 1 and reward_to_go and not discount_weighting:
        # the usual practice: G_t without γ^t estimates a gradient of another objective (biased)
        assert (expected - exact_gradient).abs().max() > 1e-3
    else:
        torch.testing.assert_close(expected, exact_gradient, rtol=1e-12, atol=1e-13)


def test_discount_weighting_without_reward_to_go_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="discount_weighting=True is invalid: must be False without reward_to_go"):
        pgrad.train("reinforce", env="CartPole-v1", total_steps=100, reward_to_go=False, discount_weighting=True,
                    run_dir=str(tmp_path / "r"))  # fmt: skip
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="discount_weighting"):
        reinforce_weights(torch.ones(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.ones(2, 1, dtype=torch.bool),
                          0.9, False, "none", None, True, False)  # fmt: skip


def test_logged_episodes_are_exactly_the_ones_in_the_update(tmp_path):
    """Envs past their quota keep stepping (masked out) while the slowest finishes: the short
    episodes they complete meanwhile must not enter the logged statistics."""
    from pgrad.train import Trainer, resolve_config

    torch.set_default_dtype(torch.float32)  # a real run's dtype (the float64 fixture restores itself)
    cfg, _, _ = resolve_config("reinforce", "CartPole-v1", "none", {"n_envs": 4, "episodes_per_update": 4,
                               "total_steps": 4000, "seed": 1, "run_dir": str(tmp_path)})  # fmt: skip
    loop = Trainer("reinforce", cfg, tmp_path).loop
    padded = 0
    for _ in range(5):
        episodes = loop.collect()
        batch = loop.batch
        rewards = (batch.rewards * batch.valid).sum(0)  # each env's one episode (quota 1): its return
        assert sorted(i for _, i, _, _ in episodes) == [0, 1, 2, 3]
        assert [r for _, _, r, _ in sorted(episodes, key=lambda e: e[1])] == rewards.tolist()
        assert [n for _, _, _, n in sorted(episodes, key=lambda e: e[1])] == batch.valid.sum(0).tolist()
        padded += int((batch.dones & ~batch.valid).sum())
    assert padded > 0  # envs did finish episodes past their quota, and those were left out
