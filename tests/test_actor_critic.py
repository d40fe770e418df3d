"""A2C / actor-critic and PPO's KL-penalty objectives: the updates by hand, and short learning runs."""

from __future__ import annotations

import math

import pytest
import torch

import pgrad
from pgrad.algos.ppo import PPOConfig, adapt_kl_coef, ppo_loss


def test_kl_penalty_loss_by_hand():
    cfg = PPOConfig(loss="kl_penalty", ent_coef=0.0, vf_coef=0.0, normalize_advantage=False, n_steps=3, batch_size=3)
    lp, olp, adv = [-0.2, -1.5, -0.7], [-0.5, -1.0, -0.7], [1.0, -2.0, 0.5]
    kl = [0.01, 0.2, 0.05]
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    zeros = t([0.0, 0.0, 0.0])
    terms = ppo_loss(t(lp), t(olp), t(adv), zeros, zeros, zeros, zeros, 0.2, cfg, kl=t(kl), kl_coef=3.0)
    # L^KLPEN = −E[r A] + β E[KL]: no clipping at all (ratio 1.35 counts in full)
    expected = -sum(math.exp(a - b) * c for a, b, c in zip(lp, olp, adv, strict=True)) / 3 + 3.0 * sum(kl) / 3
    assert terms["policy_loss"].item() == pytest.approx(expected, rel=1e-12)


def test_adaptive_beta_doubles_and_halves_around_the_target():
    cfg = PPOConfig(loss="kl_penalty", kl_target=0.01)
    assert adapt_kl_coef(1.0, 0.016, cfg) == 2.0  # > 1.5 d
    assert adapt_kl_coef(1.0, 0.006, cfg) == 0.5  # < d / 1.5
    assert adapt_kl_coef(1.0, 0.01, cfg) == 1.0


def test_dual_beta_is_projected_gradient_ascent():
    cfg = PPOConfig(loss="kl_dual", kl_target=0.01, kl_coef_lr=10.0)
    assert adapt_kl_coef(1.0, 0.03, cfg) == pytest.approx(1.2)  # β + α (KL − d)
    assert adapt_kl_coef(0.05, 0.0, cfg) == 0.0  # max(0, ·)


def test_kl_penalty_update_logs_exact_kl_and_adapts_beta(tmp_path):
    import csv

    pgrad.train(
        "ppo",
        env="CartPole-v1",
        total_steps=2048,
        seed=0,
        run_dir=str(tmp_path / "r"),
        loss="kl_penalty",
        eval_episodes=0,
        tensorboard=False,
        preset="none",
        n_steps=256,
        n_envs=2,
    )
    rows = list(csv.DictReader(open(tmp_path / "r" / "progress.csv")))
    betas = [float(r["charts/kl_coef"]) for r in rows]
    assert betas[0] == 1.0 and all(float(r["losses/kl"]) >= 0 for r in rows)
    for beta, nxt, row in zip(betas, betas[1:], rows, strict=False):
        kl = float(row["losses/kl"])
        assert nxt == (2 * beta if kl > 0.015 else beta / 2 if kl < 0.01 / 1.5 else beta)


def test_actor_critic_uses_one_step_td_error():
    """n_steps = 1: the n-step return is r + γ(1 − term) V(s') and the advantage the TD error δ."""
    from pgrad.estimators import n_step_returns, td_errors

    g = torch.Generator().manual_seed(0)
    r, v, v_next = torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g)
    term = torch.tensor([[False, True, False, False]])
    trunc = torch.tensor([[False, False, True, False]])
    returns = n_step_returns(r, v_next, term, trunc, 0.9, 1)
    torch.testing.assert_close(returns - v, td_errors(r, v, v_next, term, 0.9))


@pytest.mark.parametrize(
    "algo, overrides, steps, threshold",
    [
        ("a2c", {}, 100_000, 300),
        ("ppo", {"loss": "kl_penalty"}, 50_000, 400),
        ("ppo", {"loss": "kl_dual"}, 50_000, 400),
        ("reinforce", {}, 60_000, 150),
    ],
)
def test_learns_cartpole_short_budget(algo, overrides, steps, threshold, tmp_path):
    agent = pgrad.train(
        algo, env="CartPole-v1", total_steps=steps, seed=0, run_dir=str(tmp_path / "r"), tensorboard=False, **overrides
    )
    assert agent.evaluation.mean >= threshold, agent.evaluation.returns
