"""CrossQ: Batch Renormalization against its equations and plain batch norm, the joint [s; s']
critic pass, no target networks, the delayed actor; and a short learning run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pgrad
from pgrad.networks import BatchRenorm
from pgrad.train import Trainer, resolve_config


def test_batch_renorm_is_batch_norm_during_its_warmup(float64):
    x = torch.randn(64, 5) * 3 + 1
    x.requires_grad_(True)
    brn = BatchRenorm(5, momentum=0.1, eps=1e-3, warmup_steps=10).double().train()
    with torch.no_grad():
        brn.weight.uniform_(0.5, 2)
        brn.bias.uniform_(-1, 1)
    out = brn(x)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.batch_norm(ref_x, None, None, brn.weight.detach(), brn.bias.detach(), training=True, eps=1e-3)
    assert torch.allclose(out, ref)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    assert torch.allclose(x.grad, ref_x.grad)
    # μ ← μ + m (μ_B − μ), σ² ← σ² + m (σ_B² − σ²), from μ = 0, σ² = 1
    assert torch.allclose(brn.running_mean, 0.1 * x.detach().mean(0))
    assert torch.allclose(brn.running_var, 1 + 0.1 * (x.detach().var(0, unbiased=False) - 1))
    assert int(brn.steps) == 1


def test_batch_renorm_after_warmup_normalises_with_running_statistics_and_batch_gradients(float64):
    brn = BatchRenorm(4, momentum=0.0, eps=1e-3, warmup_steps=0).double().train()  # m = 0: fixed μ, σ
    with torch.no_grad():
        brn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        brn.running_var.copy_(torch.tensor([2.0, 0.5, 1.0, 4.0]))
    x = (torch.randn(128, 4) * 1.2 + 0.3).requires_grad_(True)
    out = brn(x)
    sigma = (brn.running_var + 1e-3).sqrt()
    # r = σ_B/σ, d = (μ_B − μ)/σ within their clips: x̂ = (x − μ_B)/σ_B · r + d = (x − μ)/σ
    assert torch.allclose(out, (x - brn.running_mean) / sigma)
    # r and d are constants: the gradient is batch norm's times r
    out.pow(3).sum().backward()
    ref_x = x.detach().clone().requires_grad_(True)
    mean, var = ref_x.mean(0), ref_x.var(0, unbiased=False)
    r = ((var + 1e-3).sqrt() / sigma).detach()
    d = ((mean - brn.running_mean) / sigma).detach()
    ((((ref_x - mean) / (var + 1e-3).sqrt()) * r + d) ** 3).sum().backward()
    assert torch.allclose(x.grad, ref_x.grad)
    brn.eval()
    assert torch.allclose(brn(x), (x - brn.running_mean) / sigma)  # evaluation: running statistics


def test_batch_renorm_clips_r_and_d():
    brn = BatchRenorm(1, momentum=0.0, eps=0.0, warmup_steps=0).train()
    x = torch.tensor([[100.0], [104.0]])  # μ_B = 102, σ_B = 2; running μ = 0, σ = 1: r = 2, d = 102 → 5
    out = brn(x)
    assert torch.allclose(out, torch.tensor([[-2.0 + 5.0], [2.0 + 5.0]]))


@pytest.fixture
def trainer(tmp_path):
    cfg, _, _ = resolve_config("crossq", "Pendulum-v1", "none", dict(hidden_sizes=(16,), critic_hidden_sizes=(32,),
                               learning_starts=64, batch_size=32, total_steps=100, run_dir=str(tmp_path / "r")))  # fmt: skip
    (tmp_path / "r").mkdir()
    t = Trainer("crossq", cfg, tmp_path / "r")
    yield t
    t.env.close()


def test_critics_see_current_and_next_batches_in_one_pass_and_there_are_no_targets(trainer):
    algo = trainer.loop.algo
    assert not [name for name in vars(algo) if "target" in name and name != "temperature"]
    first = algo.critic.members[0][0]
    assert isinstance(first, BatchRenorm)
    seen = []
    first.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].shape[0])))
    batch = {"obs": torch.randn(32, 3), "actions": torch.rand(32, 1) * 2 - 1, "rewards": torch.randn(32), "next_obs": torch.randn(32, 3),
             "terminated": torch.zeros(32)}  # fmt: skip
    algo.update(batch)
    assert seen[0] == (True, 64)  # [s; s'] together, in training mode
    assert all(not training for training, _ in seen[1:])  # the actor's step reads the critics in evaluation mode
    assert not algo.critic.training and not algo.actor.training  # acting and evaluation: running statistics


def test_the_actor_steps_every_policy_delay_critic_steps(trainer):
    algo = trainer.loop.algo
    batch = {"obs": torch.randn(32, 3), "actions": torch.rand(32, 1) * 2 - 1, "rewards": torch.randn(32),
             "next_obs": torch.randn(32, 3), "terminated": torch.zeros(32)}  # fmt: skip
    actor_steps = []
    for _ in range(7):
        before = [p.clone() for p in algo.actor.parameters()]
        algo.update(batch)
        actor_steps.append(any(not torch.equal(a, b) for a, b in zip(before, algo.actor.parameters(), strict=True)))
    assert actor_steps == [False, False, True, False, False, True, False]  # policy_delay = 3


def test_crossq_refuses_what_it_does_not_have():
    with pytest.raises(ValueError, match="variant='v1' is invalid"):
        resolve_config("crossq", "Pendulum-v1", overrides={"variant": "v1"})
    with pytest.raises(ValueError, match="critic_layer_norm=True is invalid"):
        resolve_config("crossq", "Pendulum-v1", overrides={"critic_layer_norm": True})
    with pytest.raises(ValueError, match="crossq needs a continuous"):
        pgrad.train("crossq", env="CartPole-v1", total_steps=100)


@pytest.mark.slow
def test_crossq_learns_pendulum_quickly(tmp_path):
    """The Zoo's entry (policy_delay 2, 256-256 networks): a good swing-up within 6k steps (SAC's preset
    needs about 10k); random is about -1200."""
    agent = pgrad.train("crossq", env="Pendulum-v1", total_steps=6000, seed=0, run_dir=str(tmp_path / "r"))
    assert agent.evaluation.mean > -300, agent.evaluation.mean
