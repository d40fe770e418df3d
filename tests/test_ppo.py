"""PPO: the loss by hand on a fixed batch, its gradients, truncation handling, learning, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.ppo import PPO, PPOConfig, ppo_loss
from pgrad.envs import make_vec_env


def hand_ppo_loss(lp, olp, adv, v, v_old, ret, ent, eps, c_ent, c_vf, clip_vf=None):
    """The notes' L = −E[min(r A, clip(r, 1−ε, 1+ε) A)] − c_ent H + c_vf (V − R)², in plain Python."""
    n = len(lp)
    mean = sum(adv) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in adv) / (n - 1))  # unbiased, as torch.std
    adv = [(a - mean) / (std + 1e-8) for a in adv]
    policy = 0.0
    for i in range(n):
        r = math.exp(lp[i] - olp[i])
        policy += min(r * adv[i], min(max(r, 1 - eps), 1 + eps) * adv[i])
    policy = -policy / n
    if clip_vf is None:
        value = sum((v[i] - ret[i]) ** 2 for i in range(n)) / n
    else:
        value = 0.0
        for i in range(n):
            vc = v_old[i] + min(max(v[i] - v_old[i], -clip_vf), clip_vf)
            value += max((v[i] - ret[i]) ** 2, (vc - ret[i]) ** 2)
        value /= n
    entropy = sum(ent) / n
    return policy, value, entropy, policy - c_ent * entropy + c_vf * value


@pytest.mark.parametrize("clip_vf", [None, 0.1])
def test_ppo_loss_matches_hand_computation(clip_vf):
    lp = [-0.2, -1.5, -0.7, -2.1, -0.05]
    olp = [-0.5, -1.0, -0.7, -1.6, -0.30]  # ratios on both sides of [0.8, 1.2], one exactly 1
    adv = [1.0, -2.0, 0.5, 3.0, -0.4]
    v, v_old, ret = [0.5, 1.2, -0.3, 2.0, 0.0], [0.3, 1.5, -0.2, 1.0, 0.1], [1.0, 0.2, -0.5, 2.5, 0.3]
    ent = [0.6, 0.7, 0.5, 0.9, 0.4]
    cfg = PPOConfig(ent_coef=0.01, vf_coef=0.5, clip_range_vf=clip_vf, batch_size=5, n_steps=5)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    terms = ppo_loss(t(lp), t(olp), t(adv), t(v), t(v_old), t(ret), t(ent), 0.2, cfg)
    policy, value, entropy, total = hand_ppo_loss(lp, olp, adv, v, v_old, ret, ent, 0.2, 0.01, 0.5, clip_vf)
    assert terms["policy_loss"].item() == pytest.approx(policy, rel=1e-12)
    assert terms["value_loss"].item() == pytest.approx(value, rel=1e-12)
    assert terms["entropy"].item() == pytest.approx(entropy, rel=1e-12)
    assert terms["loss"].item() == pytest.approx(total, rel=1e-12)
    ratios = [math.exp(a - b) for a, b in zip(lp, olp, strict=True)]
    assert terms["clipfrac"].item() == pytest.approx(sum(abs(r - 1) > 0.2 for r in ratios) / 5)
    assert terms["approx_kl"].item() == pytest.approx(sum((r - 1) - math.log(r) for r in ratios) / 5, rel=1e-12)


def _filled_buffer(cfg: PPOConfig):
    from pgrad.algos.base import OnPolicyLoop

    env = make_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    algo = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    loop = OnPolicyLoop(algo, env, cfg.n_steps, cfg.total_steps, torch.device("cpu"))
    loop.collect()
    return algo, loop.buf


def test_ratio_is_exactly_one_on_the_first_minibatch():
    """37 details, 'Check if ratio=1': before any step, π_θ = π_θold on the collected data."""
    cfg = PPOConfig(n_envs=2, n_steps=16, batch_size=32, n_epochs=1)
    algo, buf = _filled_buffer(cfg)
    dist = algo.policy.distribution(buf.obs.flatten(0, 1))
    ratio = (dist.log_prob(buf.actions.flatten(0, 1)) - buf.log_probs.flatten()).exp()
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-6)
    metrics = algo.update(buf, 1.0)
    assert metrics["losses/clipfrac"] == 0.0 and abs(metrics["losses/approx_kl"]) < 1e-7


def test_each_loss_reaches_only_its_network():
    cfg = PPOConfig(n_envs=2, n_steps=8, batch_size=16)
    algo, buf = _filled_buffer(cfg)
    obs = buf.obs.flatten(0, 1)
    dist, values = algo.policy(obs)
    zeros = torch.zeros(16)
    terms = ppo_loss(
        dist.log_prob(buf.actions.flatten(0, 1)),
        buf.log_probs.flatten(),
        torch.randn(16),
        values,
        zeros,
        torch.randn(16),
        dist.entropy(),
        0.2,
        cfg,
    )
    policy_grads = torch.autograd.grad(terms["policy_loss"], algo.policy.value_parameters(), allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in policy_grads)
    value_grads = torch.autograd.grad(terms["value_loss"], algo.policy.policy_parameters(), allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in value_grads)


def test_truncated_constant_reward_env_learns_infinite_horizon_value(tmp_path):
    """Reward 1 forever, cut at 20 steps, γ = 0.9: V(s) must approach 1/(1−γ) = 10, not the ramp
    Σ_{k<20−t} γ^k (mean ≈ 7.6) that treating truncation as termination would learn."""
    agent = pgrad.train(
        "ppo",
        env="pgrad-test/ConstantReward-v0",
        total_steps=12_000,
        seed=0,
        run_dir=str(tmp_path / "run"),
        n_envs=4,
        n_steps=50,
        batch_size=100,
        gamma=0.9,
        gae_lambda=0.95,
        learning_rate=3e-3,
        n_epochs=10,
        eval_episodes=0,
        tensorboard=False,
    )
    v = agent.policy.value(torch.ones(1, 1)).item()
    assert abs(v - 10.0) < 0.5, v


def test_ppo_learns_cartpole_short_budget(tmp_path):
    agent = pgrad.train(
        "ppo", env="CartPole-v1", total_steps=50_000, seed=0, run_dir=str(tmp_path / "run"), tensorboard=False
    )
    assert agent.evaluation.mean >= 450, agent.evaluation.returns


def test_same_seed_same_progress_csv(tmp_path):
    runs = []
    for name in ("a", "b"):
        pgrad.train(
            "ppo",
            env="CartPole-v1",
            total_steps=6_000,
            seed=3,
            run_dir=str(tmp_path / name),
            eval_episodes=0,
            tensorboard=False,
        )
        runs.append((tmp_path / name / "progress.csv").read_text())
    assert runs[0] == runs[1]
    assert len(runs[0].splitlines()) == 1 + math.ceil(6_000 / 256)


def test_continuous_actions_store_unclipped_samples(tmp_path):
    """Pendulum: the Gaussian sample is stored as drawn; only the env sees it clipped (item 19)."""
    cfg = PPOConfig(env="Pendulum-v1", n_envs=2, n_steps=64, batch_size=64, log_std_init=1.0)
    env = make_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    algo = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    with torch.inference_mode():
        actions, log_probs, _ = algo.policy.act(
            torch.as_tensor(np.tile(env.reset(), (32, 1))), torch.Generator().manual_seed(0)
        )
    assert actions.abs().max() > 2.0  # outside Pendulum's [-2, 2] with σ = e
    dist = algo.policy.distribution(torch.as_tensor(np.tile(env.reset(), (32, 1))))
    torch.testing.assert_close(dist.log_prob(actions), log_probs)


def test_rollout_buffer_store_writes_every_field_in_place():
    """On CPU ``store`` writes through numpy views of the buffer's tensors: what it stores must be
    exactly what the update then reads, row by row."""
    from pgrad.buffers import RolloutBuffer

    buf = RolloutBuffer(3, 2, (4,), (), torch.int64)
    g = torch.Generator().manual_seed(0)
    rows = []
    for t in range(3):
        with torch.inference_mode():  # as the loop acts
            row = (
                torch.randn(2, 4, generator=g),
                torch.randint(0, 3, (2,), generator=g),
                *torch.randn(2, 2, generator=g),
            )
        flags = (np.array([t == 1, False]), np.array([False, t == 2]))
        row = (*row, np.array([1.0, -0.5], np.float32) * t, *flags)
        buf.store(t, *row)
        rows.append(row)
    for t, row in enumerate(rows):
        for name, x in zip(RolloutBuffer.STORED, row, strict=True):
            assert torch.equal(getattr(buf, name)[t], torch.as_tensor(x)), (t, name)
    assert buf.terminated.dtype == torch.bool and buf.actions.dtype == torch.int64
