"""Inside an update: mixed_precision="bf16" (its matrix products in bfloat16, torch.autocast), everything a
user keeps (parameters, optimiser state, the saved agent) in float32, acting in float32; and float32
subnormals flushed to zero (flush_denormals), outside it IEEE again."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pgrad
from pgrad.algos.base import precision
from pgrad.algos.sac import SAC, SACConfig
from tests.test_off_policy import batch, spaces

CPU = torch.device("cpu")


def test_products_run_in_bf16_on_the_weights_of_now():
    """Autocast's weight-cast cache would hand the second product the weights of before the step."""
    layer, x = torch.nn.Linear(8, 4), torch.randn(5, 8)
    with precision(SACConfig(mixed_precision="bf16"), CPU):
        before = layer(x)
        with torch.no_grad():
            layer.weight.mul_(-2.0)  # an optimiser step, in place
        after = layer(x)
    assert before.dtype == after.dtype == torch.bfloat16
    expected = F.linear(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16())
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    with precision(SACConfig(), CPU):
        assert layer(x).dtype == torch.float32


def test_a_bf16_sac_update_keeps_float32_state_and_stays_near_the_float32_update():
    obs_space, action_space = spaces()
    fp32 = SAC(SACConfig(hidden_sizes=(64, 64), batch_size=4), obs_space, action_space, CPU)
    bf16 = copy.deepcopy(fp32)
    metrics32 = fp32.update(batch())
    with precision(SACConfig(mixed_precision="bf16"), CPU):
        metrics16 = bf16.update(batch())
    for name in ("losses/critic_loss", "losses/actor_loss", "losses/q_mean"):
        assert metrics16[name] != metrics32[name]  # the products did run in bf16 ...
        assert metrics16[name] == pytest.approx(metrics32[name], rel=0.05, abs=0.02)  # ... and near fp32's
    tensors = [*bf16.actor.parameters(), *bf16.critic.parameters(), *bf16.critic_target.parameters()]
    for optimizer in (bf16.actor_optimizer, bf16.critic_optimizer):
        tensors += [t for state in optimizer.state.values() for t in state.values() if t.dim() > 0]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)


def test_bf16_training_is_reproducible_float32_and_differs_from_float32(tmp_path):
    def train(name, **kw):
        pgrad.train("sac", env="Pendulum-v1", total_steps=300, learning_starts=200, hidden_sizes=(32, 32),
                    seed=3, run_dir=str(tmp_path / name), eval_episodes=0, tensorboard=False, **kw)  # fmt: skip
        return pgrad.load(tmp_path / name)

    first, again, plain = train("a", mixed_precision="bf16"), train("b", mixed_precision="bf16"), train("c")
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(first.act(obs), again.act(obs))
    assert not np.array_equal(first.act(obs), plain.act(obs))
    assert all(p.dtype == torch.float32 for p in first.policy.parameters())


def test_stacked_seeds_train_in_bf16(tmp_path):
    agents = pgrad.train("td3", env="Pendulum-v1", seeds=[0, 1], total_steps=300, learning_starts=200,
                         hidden_sizes=(32, 32), mixed_precision="bf16", run_dir=str(tmp_path / "s"),
                         eval_episodes=0, tensorboard=False)  # fmt: skip
    assert len(agents) == 2 and all(p.dtype == torch.float32 for a in agents for p in a.policy.parameters())


def subnormal_survives() -> bool:
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0)[0] != 0)


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="FTZ/DAZ is x86's")
def test_updates_flush_subnormals_and_leave_the_thread_as_it_was():
    assert subnormal_survives()
    with precision(SACConfig(), CPU):
        assert not subnormal_survives()  # read as zero inside an update
    assert subnormal_survives()  # IEEE again for acting, envs, evaluation
    with precision(SACConfig(flush_denormals=False), CPU):
        assert subnormal_survives()
    torch.set_flush_denormal(True)  # a user's own setting stays as it was
    try:
        with precision(SACConfig(), CPU):
            pass
        assert not subnormal_survives()
    finally:
        torch.set_flush_denormal(False)
