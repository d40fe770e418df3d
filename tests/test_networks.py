"""The acting form of the actor-critic: the same π and V as the module, rebuilt every rollout."""

from __future__ import annotations

import pytest
import torch

from pgrad.algos.base import OnPolicyLoop
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.envs import make_vec_env
from pgrad.networks import ActorCritic, FusedActorCritic


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(discrete=True),
        dict(discrete=False, log_std_init=-0.5),
        dict(discrete=False, state_dependent_std=True),
        dict(discrete=True, hidden_sizes=(32,), activation="relu"),
        dict(discrete=False, hidden_sizes=()),
        dict(discrete=True, hidden_sizes=(64, 48, 16), activation="elu"),
    ],
)
def test_fused_acting_network_equals_the_separate_networks(kwargs):
    torch.manual_seed(0)
    net = ActorCritic(5, 3, **kwargs)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias would show
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fused = net.for_acting()
    assert isinstance(fused, FusedActorCritic)
    obs = torch.randn(7, 5)
    with torch.inference_mode():
        dist, values = net(obs)
        fused_dist, fused_values = fused(obs)
        torch.testing.assert_close(fused_values, values, rtol=0, atol=1e-6)
        torch.testing.assert_close(fused.value(obs), net.value(obs), rtol=0, atol=1e-6)
        actions = dist.sample(torch.Generator().manual_seed(1))
        torch.testing.assert_close(fused_dist.log_prob(actions), dist.log_prob(actions), rtol=0, atol=1e-6)
        torch.testing.assert_close(fused_dist.entropy(), dist.entropy(), rtol=0, atol=1e-6)


def test_shared_or_wide_networks_act_as_they_are():
    assert ActorCritic(4, 2, True, shared=True).for_acting().__class__ is ActorCritic
    assert ActorCritic(4, 2, True, hidden_sizes=(256, 256)).for_acting().__class__ is ActorCritic


def test_each_rollout_acts_with_the_policy_of_that_rollout():
    """The acting copy is taken per rollout: after an update changed θ, the next rollout's stored
    log π(a|s) and V(s) are those of the new θ (a stale copy would give those of the old one)."""
    cfg = PPOConfig(env="CartPole-v1", n_envs=2, n_steps=16, batch_size=16, n_epochs=4, learning_rate=1e-2)
    env = make_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    algo = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    loop = OnPolicyLoop(algo, env, cfg.n_steps, cfg.total_steps, torch.device("cpu"))
    for rollout in range(3):
        loop.collect()
        buf = loop.buf
        with torch.no_grad():
            dist, values = algo.policy(buf.obs.flatten(0, 1))
        torch.testing.assert_close(buf.values.flatten(), values, rtol=0, atol=1e-5)
        torch.testing.assert_close(buf.log_probs.flatten(), dist.log_prob(buf.actions.flatten(0, 1)), rtol=0, atol=1e-5)
        before = [p.clone() for p in algo.policy.parameters()]
        algo.update(buf, 1.0)
        assert any(not torch.equal(a, b) for a, b in zip(before, algo.policy.parameters(), strict=True)), rollout
