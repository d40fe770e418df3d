"""gSDE (``use_sde``): the distribution against SB3's StateDependentNoiseDistribution and its closed
form, the noise held for ``sde_sample_freq`` steps in a rollout, and what is refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.base import EnvSlice, OnPolicyLoop
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.algos.sac import SAC, SACConfig
from pgrad.distributions import StateDependentGaussian, TanhGaussian
from pgrad.envs import make_vec_env

PGRAD = [sys.executable, "-m", "pgrad.cli"]


@pytest.mark.parametrize("full_std", [True, False])
def test_density_entropy_and_samples_are_sb3s(full_std):
    sb3 = pytest.importorskip("stable_baselines3.common.distributions")
    g = torch.Generator().manual_seed(0)
    B, d, A = 5, 7, 3
    mean, latent = torch.randn(B, A, generator=g), torch.randn(B, d, generator=g)
    log_std = 0.3 * torch.randn(d, A if full_std else 1, generator=g)
    ours = StateDependentGaussian.from_params(mean, latent, log_std)
    theirs = sb3.StateDependentNoiseDistribution(A, full_std=full_std)
    theirs.latent_sde_dim = d  # what its proba_distribution_net sets
    torch.manual_seed(1)
    theirs.sample_weights(log_std, batch_size=B)  # one θ_ε per row, as per env
    theirs.proba_distribution(mean, log_std, latent)
    actions = torch.randn(B, A, generator=g)
    assert torch.allclose(ours.log_prob(actions), theirs.log_prob(actions), atol=1e-5)
    assert torch.allclose(ours.entropy(), theirs.entropy(), atol=1e-5)
    epsilon = theirs.exploration_matrices / log_std.exp().expand(d, A)  # θ_ε = σ ⊙ ε
    assert torch.allclose(ours.sample(epsilon), theirs.sample(), atol=1e-5)


def test_over_the_noise_actions_are_the_gaussian_the_density_describes():
    g = torch.Generator().manual_seed(2)
    mean, latent, log_std = (
        torch.randn(1, 2, generator=g),
        torch.randn(1, 4, generator=g),
        torch.randn(4, 2, generator=g),
    )
    dist = StateDependentGaussian.from_params(mean, latent, log_std)
    n = 200_000
    epsilon = torch.randn(n, 4, 2, generator=g)
    many = StateDependentGaussian.from_params(mean.expand(n, 2), latent.expand(n, 4), log_std)
    actions = many.sample(epsilon)
    variance = (latent.T.pow(2) * log_std.exp().pow(2)).sum(0)  # Σ_j φ_j² σ_jk²
    assert torch.allclose(actions.mean(0), mean[0], atol=0.02 * variance.sqrt().max())
    assert torch.allclose(actions.var(0), variance, rtol=0.02)
    assert torch.allclose(dist.std[0], (variance + 1e-6).sqrt())


def test_the_std_trains_sigma_not_the_features():
    cfg = PPOConfig(env="Pendulum-v1", use_sde=True, n_steps=16, batch_size=16)
    env = make_vec_env(cfg.env, 1, 0)
    policy = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu")).policy
    dist = policy.distribution(torch.randn(3, 3))
    first_layer = policy.policy_net[0].weight
    assert torch.autograd.grad(dist.log_std.sum(), first_layer, allow_unused=True)[0] is None
    assert torch.autograd.grad(dist.log_std.sum(), policy.log_std)[0].abs().sum() > 0
    assert torch.autograd.grad(dist.mean.sum(), first_layer)[0].abs().sum() > 0


@pytest.mark.parametrize("every, draws", [(4, 3), (-1, 1)])
def test_the_noise_is_held_for_sde_sample_freq_steps(monkeypatch, every, draws):
    """Each stored action is μ(s_t) + θ_εᵀφ(s_t) with the ε drawn at the last multiple of
    sde_sample_freq (only the rollout's first with -1), each env its own."""
    cfg = PPOConfig(env="Pendulum-v1", use_sde=True, sde_sample_freq=every, n_envs=2, n_steps=12, batch_size=24,
                    log_std_init=-1.0)  # fmt: skip
    env = make_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    algo = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    loop = OnPolicyLoop(algo, env, cfg.n_steps, 10_000, torch.device("cpu"))
    drawn, original = [], EnvSlice.exploration_noise
    monkeypatch.setattr(EnvSlice, "exploration_noise", lambda self, *a: drawn.append(original(self, *a)) or drawn[-1])
    loop.collect()
    assert len(drawn) == draws and drawn[0].shape == (2, 64, 1)
    assert not torch.equal(drawn[0][0], drawn[0][1])  # each env its own ε
    buf = loop.buf
    with torch.no_grad():
        for t in range(cfg.n_steps):
            dist = algo.policy.distribution(buf.obs[t])
            epsilon = drawn[t // every if every > 0 else 0]
            assert torch.allclose(buf.actions[t], dist.sample(epsilon), atol=1e-6)
            assert torch.allclose(buf.log_probs[t], dist.log_prob(buf.actions[t]), atol=1e-6)


def test_a2c_and_trpo_train_with_gsde_and_a_saved_agent_acts_by_its_mean(tmp_path):
    for algo in ("a2c", "trpo"):
        agent = pgrad.train(algo, env="Pendulum-v1", preset="none", use_sde=True, total_steps=1024, n_steps=128,
                            n_envs=2, run_dir=str(tmp_path / algo), eval_episodes=1, tensorboard=False)  # fmt: skip
        assert agent.evaluation.returns  # (a non-finite loss or parameter would have stopped the run)
        obs = np.array([1.0, 0.0, 0.5], np.float32)
        loaded = pgrad.load(tmp_path / algo)
        with torch.no_grad():  # the mean, clipped to Pendulum's ±2 (action_mode clip)
            mean = loaded.policy.distribution(torch.as_tensor(obs[None])).mean.clamp(-2.0, 2.0)
        assert np.allclose(loaded.act(obs), agent.act(obs)) and np.allclose(loaded.act(obs), mean.numpy()[0], atol=1e-6)


def test_sacs_squashed_gsde_is_sb3s():
    """SB3's SAC gSDE: tanh(μ + θ_εᵀφ(s)) with one θ_ε for the batch, φ trained (learn_features)."""
    sb3 = pytest.importorskip("stable_baselines3.common.distributions")
    g = torch.Generator().manual_seed(3)
    B, d, A = 6, 5, 2
    mean, latent, log_std = (
        torch.randn(B, A, generator=g),
        torch.randn(B, d, generator=g),
        -torch.rand(d, A, generator=g),
    )
    ours = TanhGaussian.squashing(StateDependentGaussian.from_params(mean, latent, log_std, learn_features=True))
    theirs = sb3.StateDependentNoiseDistribution(A, squash_output=True, learn_features=True)
    theirs.latent_sde_dim = d
    torch.manual_seed(4)
    theirs.sample_weights(log_std)  # one matrix, as SAC's reset_noise() before each gradient step
    theirs.proba_distribution(mean, log_std, latent)
    epsilon = (theirs.exploration_mat / log_std.exp()).expand(B, d, A)
    actions, log_prob = ours.rsample_with_log_prob(epsilon)
    assert torch.allclose(actions, theirs.sample(), atol=1e-6)
    assert torch.allclose(log_prob, theirs.log_prob(actions), atol=2e-3)  # SB3 inverts tanh, adds 1e-6 inside the log


def test_sac_holds_each_envs_noise_and_trains_the_features(tmp_path):
    cfg = SACConfig(env="Pendulum-v1", use_sde=True, sde_sample_freq=3, hidden_sizes=(8,), batch_size=4)
    env = make_vec_env(cfg.env, 2, 0)
    algo = SAC(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    obs = torch.randn(2, 3)
    actions = [algo.explore(obs) for _ in range(4)]
    assert np.array_equal(actions[0], actions[1]) and np.array_equal(actions[0], actions[2])
    assert not np.array_equal(actions[0], actions[3]) and not np.array_equal(actions[0][0], actions[0][1])
    dist = algo.actor(obs)
    (grad,) = torch.autograd.grad(dist.normal.log_std.sum(), algo.actor.net[0].weight)
    assert grad.abs().sum() > 0  # the std reaches the features (SB3's learn_features for SAC)
    with torch.no_grad():
        assert torch.allclose(algo.actor.predict(obs), torch.tanh(dist.normal.mean))
        assert bool((dist.normal.mean.abs() <= 2.0).all())
    per_round = SAC(SACConfig(env="Pendulum-v1", use_sde=True, hidden_sizes=(8,)), env.observation_space,
                    env.action_space, torch.device("cpu"))  # fmt: skip
    first = per_round.explore(obs)
    assert np.array_equal(first, per_round.explore(obs))
    batch = {"obs": torch.randn(4, 3), "actions": torch.rand(4, 1) * 2 - 1, "rewards": torch.randn(4),
             "next_obs": torch.randn(4, 3), "terminated": torch.zeros(4)}  # fmt: skip
    per_round.update(batch)  # a training round draws new noise (sde_sample_freq -1)
    assert not np.array_equal(first, per_round.explore(obs))
    agent = pgrad.train("sac", env="Pendulum-v1", use_sde=True, total_steps=300, learning_starts=100, batch_size=32,
                        hidden_sizes=(16,), run_dir=str(tmp_path / "sac"), eval_episodes=1, tensorboard=False)  # fmt: skip
    loaded = pgrad.load(tmp_path / "sac")
    probe = np.array([1.0, 0.0, 0.5], np.float32)
    assert np.array_equal(loaded.act(probe), agent.act(probe)) and loaded.policy.spec["use_sde"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["sac", "--env", "Pendulum-v1", "--use-sde", "--variant", "v1"], "use_sde=True is invalid"),
        (["crossq", "--env", "Pendulum-v1", "--use-sde"], "must be False with CrossQ"),
    ],
)
def test_what_off_policy_gsde_cannot_do_is_one_line(args, fragment, tmp_path):
    result = subprocess.run([*PGRAD, "train", *args, "--preset", "none", "--total-steps", "64",
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--env", "CartPole-v1", "--use-sde"], "use_sde=True needs Box actions"),
        (["--env", "Pendulum-v1", "--use-sde", "--state-dependent-std"], "state_dependent_std"),
        (["--env", "Pendulum-v1", "--use-sde", "--sde-sample-freq", "0"], "sde_sample_freq=0"),
    ],
)
def test_what_gsde_cannot_do_is_one_line(args, fragment, tmp_path):
    result = subprocess.run([*PGRAD, "train", "ppo", *args, "--preset", "none", "--total-steps", "64",
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
