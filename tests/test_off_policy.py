"""Off-policy pieces and algorithms: replay at episode ends, noise, target updates, losses by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.ddpg import DDPG, DDPGConfig
from pgrad.algos.sac import SAC, SACConfig, SACDiscrete, SACDiscreteConfig
from pgrad.algos.td3 import TD3, TD3Config
from pgrad.buffers import CompactReplayBuffer, ReplayBuffer
from pgrad.envs import make_vec_env
from pgrad.networks import QEnsemble, frozen, hard_update, soft_update
from pgrad.noise import OrnsteinUhlenbeckNoise

GAMMA = 0.9


def test_replay_buffer_stores_the_real_final_observation_and_termination_only():
    """Counter env: obs = [episode, t]; 4-step time limit. Every stored (s, s') is one step of one
    episode, truncations are stored as not terminated, and wrap-around keeps the newest."""
    env = make_vec_env("pgrad-test/CounterTimeLimit-v0", n_envs=2, seed=0)
    buffer = ReplayBuffer(20, env.obs_shape, (), torch.int64)
    obs = env.reset()
    truncations = 0
    for _ in range(13):
        next_obs, rewards, terminated, truncated, real_next = env.step(np.zeros(2, np.int64))
        buffer.add(obs, np.zeros(2, np.int64), rewards, real_next, terminated)
        truncations += int(truncated.sum())
        obs = next_obs
    assert buffer.size == 20 and truncations > 0
    np.testing.assert_array_equal(buffer.next_obs[:, 0], buffer.obs[:, 0])  # never mixes episodes
    np.testing.assert_array_equal(buffer.next_obs[:, 1], buffer.obs[:, 1] + 1)
    assert buffer.terminated.sum() == 0  # time-limit cuts are not terminations
    batch = buffer.sample(64, torch.Generator().manual_seed(0))
    assert batch["obs"].shape == (64, 2) and batch["actions"].shape == (64,) and batch["rewards"].shape == (64,)


def test_compact_replay_buffer_holds_every_transition_the_plain_one_holds():
    """optimize_memory_usage: each observation stored once. Over random episodes of 3 envs that end
    by termination and by truncation, wrapping the buffer three times, every row either buffer can
    sample is the same transition, the real final observation of every ended episode included."""
    rng, n, capacity = np.random.default_rng(0), 3, 20
    plain = ReplayBuffer(capacity, (2,), (), torch.int64)
    compact = CompactReplayBuffer(capacity, (2,), (), torch.int64, n_envs=n)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    for step in range(3 * capacity // n + 1):
        real_next = rng.normal(size=(n, 2)).astype(np.float32)
        terminated, truncated = rng.random(n) < 0.15, rng.random(n) < 0.15
        ended = terminated | truncated
        args = (obs, rng.integers(0, 4, n), rng.normal(size=n).astype(np.float32), real_next, terminated, ended)
        plain.add(*args)
        compact.add(*args)
        obs = np.where(ended[:, None], rng.normal(size=(n, 2)).astype(np.float32), real_next)  # resets
        valid = compact.size - n
        oldest = compact.position if compact.size == capacity else 0
        rows = (oldest + torch.arange(valid)) % capacity
        for key, value in plain.transitions(rows).items():
            torch.testing.assert_close(compact.transitions(rows)[key], value, msg=f"{key} at step {step}")
    assert compact.obs.shape == plain.obs.shape and not hasattr(compact, "next_obs")  # half the observations
    assert len(compact.final_obs) <= capacity  # the side store holds the ends of rows still stored only
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in compact.checkpoint_state().items()}
    restored = CompactReplayBuffer(capacity, (2,), (), torch.int64, n_envs=n)
    restored.load_checkpoint_state(state)
    rows = torch.arange(capacity)
    for key, value in compact.transitions(rows).items():
        torch.testing.assert_close(restored.transitions(rows)[key], value)
    sample = compact.sample(64, torch.Generator().manual_seed(0))
    newest = {(compact.position - k - 1) % capacity for k in range(n)}
    assert not any(torch.equal(sample["obs"][j], compact.obs[r]) for j in range(64) for r in newest)


def test_optimize_memory_usage_trains_and_checks_learning_starts(tmp_path):
    agent = pgrad.train("sac", env="Pendulum-v1", total_steps=300, learning_starts=100, n_envs=2, batch_size=32,
                        optimize_memory_usage=True, run_dir=str(tmp_path / "r"), preset="none", eval_episodes=1,
                        tensorboard=False)  # fmt: skip
    assert agent.evaluation is not None
    with pytest.raises(ValueError, match="learning_starts=2 is invalid: must be > n_envs=2"):
        pgrad.train("sac", env="Pendulum-v1", learning_starts=2, n_envs=2, optimize_memory_usage=True,
                    run_dir=str(tmp_path / "bad"))  # fmt: skip


def test_ou_noise_mean_reverts_with_the_stated_variance():
    theta, sigma, dt = 0.15, 0.2, 1.0
    noise = OrnsteinUhlenbeckNoise(n_envs=64, action_dim=1, sigma=sigma, seed=0, theta=theta, dt=dt)
    noise.x[:] = 3.0  # far from μ = 0
    for k in range(1, 11):  # E[x_k] = μ + (x_0 − μ)(1 − θ dt)^k; the 64-env mean has std ≈ 0.04
        assert noise()[:, 0].mean() == pytest.approx(3.0 * (1 - theta * dt) ** k, abs=0.2)
    samples = np.stack([noise()[:, 0] for _ in range(4000)])[200:]
    stationary = sigma**2 * dt / (1 - (1 - theta * dt) ** 2)
    assert abs(samples.mean()) < 0.03
    assert samples.var() == pytest.approx(stationary, rel=0.05)
    noise.reset(np.array([0, 5]))
    assert (noise.x[[0, 5]] == 0.0).all() and (noise.x[1] != 0.0).all()


def test_soft_and_hard_updates():
    torch.manual_seed(0)
    source, target = QEnsemble(3, 1, (8,)), QEnsemble(3, 1, (8,))
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.1)
    for t, s, b in zip(target.parameters(), source.parameters(), before, strict=True):
        torch.testing.assert_close(t, 0.1 * s + 0.9 * b)  # θ' ← τθ + (1 − τ)θ'
    hard_update(target, source)
    assert all(torch.equal(t, s) for t, s in zip(target.parameters(), source.parameters(), strict=True))


def test_frozen_critic_receives_no_gradient_from_the_actor_loss():
    torch.manual_seed(0)
    critic = QEnsemble(3, 2, (8,))
    actor = torch.nn.Linear(3, 2)
    obs = torch.randn(5, 3)
    with frozen(critic):
        loss = -critic(obs, torch.tanh(actor(obs))).mean()
    loss.backward()
    assert all(p.grad is None for p in critic.parameters())
    assert actor.weight.grad is not None and actor.weight.grad.abs().sum() > 0
    assert all(p.requires_grad for p in critic.parameters())  # restored


def spaces(discrete: bool = False):
    import gymnasium as gym

    obs = gym.spaces.Box(-1, 1, (3,), np.float32)
    return obs, gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)


def batch(discrete: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    actions = torch.randint(0, 3, (4,), generator=g) if discrete else torch.rand(4, 2, generator=g) * 2 - 1
    return {
        "obs": torch.randn(4, 3, generator=g),
        "actions": actions,
        "rewards": torch.randn(4, generator=g),
        "next_obs": torch.randn(4, 3, generator=g),
        "terminated": torch.tensor([0.0, 1.0, 0.0, 0.0]),
    }


def members(critic: QEnsemble):
    """Q_1, …, Q_k as separate functions of (s[, a]), each from its own member network: the
    by-hand references never go through the ensemble's own forward."""

    def q(net):
        return lambda obs, a=None: net(obs) if a is None else net(torch.cat([obs, a], -1)).squeeze(-1)

    return [q(net) for net in critic.members]


def test_the_ensemble_is_its_members_side_by_side():
    torch.manual_seed(0)
    critic = QEnsemble(3, 2, (8, 8), k=3)
    obs, a = torch.randn(5, 3), torch.randn(5, 2)
    q = critic(obs, a)
    assert q.shape == (3, 5)
    for i, qi in enumerate(members(critic)):
        torch.testing.assert_close(q[i], qi(obs, a), rtol=0, atol=0)
        torch.testing.assert_close(critic.member(i, obs, a), qi(obs, a), rtol=0, atol=0)
    assert QEnsemble(3, 4, (8,), k=2, discrete=True)(obs).shape == (2, 5, 4)


def per_sample(f, b):
    """Apply ``f`` to each transition alone (a [1, ...] batch) and collect the floats."""
    return [f({k: v[i : i + 1] for k, v in b.items()}) for i in range(len(b["rewards"]))]


def test_ddpg_losses_by_hand():
    cfg = DDPGConfig(env="Pendulum-v1", hidden_sizes=(8,), gamma=GAMMA, tau=0.5)
    algo = DDPG(cfg, *spaces(), torch.device("cpu"))
    b = batch()
    (critic0,), actor0 = members(copy.deepcopy(algo.critic)), copy.deepcopy(algo.actor)
    critic_target0, actor_t = copy.deepcopy(algo.critic_target), copy.deepcopy(algo.actor_target)
    (critic_t,) = members(critic_target0)

    def critic_error(s):  # (Q(s, a) − (r + γ(1 − d) Q'(s', μ'(s'))))²
        y = s["rewards"] + GAMMA * (1 - s["terminated"]) * critic_t(s["next_obs"], actor_t(s["next_obs"]))
        return float(((critic0(s["obs"], s["actions"]) - y) ** 2).detach())

    metrics = algo.update(b)
    assert metrics["losses/critic_loss"] == pytest.approx(np.mean(per_sample(critic_error, b)), rel=1e-5)
    # the actor step used the updated critic: −E[Q(s, μ(s))] with μ before its own step
    expected_actor = -float(members(algo.critic)[0](b["obs"], actor0(b["obs"])).mean().detach())
    assert metrics["losses/actor_loss"] == pytest.approx(expected_actor, rel=1e-5)
    # targets moved half-way (τ = 0.5) towards the updated networks
    for t, s, old in zip(
        algo.critic_target.parameters(), algo.critic.parameters(), critic_target0.parameters(), strict=True
    ):
        torch.testing.assert_close(t, 0.5 * s + 0.5 * old)


def test_td3_critic_loss_by_hand_with_the_same_smoothing_noise():
    cfg = TD3Config(env="Pendulum-v1", hidden_sizes=(8,), gamma=GAMMA, target_policy_noise=0.3, target_noise_clip=0.4)
    algo = TD3(cfg, *spaces(), torch.device("cpu"))
    b = batch()
    gen = torch.Generator().manual_seed(0)
    gen.set_state(algo.generator.get_state())
    eps = (torch.randn(b["actions"].shape, generator=gen) * 0.3).clamp(-0.4, 0.4)
    q1, q2 = members(copy.deepcopy(algo.critic))
    q1_target, q2_target = members(algo.critic_target)
    with torch.no_grad():
        next_a = (algo.actor_target(b["next_obs"]) + eps).clamp(-1, 1)
        y = b["rewards"] + GAMMA * (1 - b["terminated"]) * torch.min(
            q1_target(b["next_obs"], next_a), q2_target(b["next_obs"], next_a)
        )
        expected = float(
            ((q1(b["obs"], b["actions"]) - y) ** 2).mean() + ((q2(b["obs"], b["actions"]) - y) ** 2).mean()
        )
    metrics = algo.update(b)
    assert metrics["losses/critic_loss"] == pytest.approx(expected, rel=1e-5)
    assert algo.updates == 1  # the first update also stepped the actor (updates 0, d, 2d, …)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_sac_critic_loss_by_hand(variant):
    cfg = SACConfig(env="Pendulum-v1", hidden_sizes=(8,), gamma=GAMMA, variant=variant)
    algo = SAC(cfg, *spaces(), torch.device("cpu"))
    b = batch()
    alpha = float(algo.temperature.alpha)
    assert alpha == pytest.approx(0.2 if variant == "v1" else 1.0)
    q1, q2 = members(copy.deepcopy(algo.critic))
    with torch.no_grad():
        if variant == "v1":
            next_v = algo.v_target(b["next_obs"])  # y = r + γ(1 − d) V̄(s')
        else:  # y = r + γ(1 − d)(min Q'(s', a') − α log π(a'|s')), a' from the same generator state
            gen = torch.Generator().manual_seed(0)
            gen.set_state(algo.generator.get_state())
            a, logp = algo.actor(b["next_obs"]).rsample_with_log_prob(gen)
            q1_target, q2_target = members(algo.critic_target)
            next_v = torch.min(q1_target(b["next_obs"], a), q2_target(b["next_obs"], a)) - alpha * logp
        y = b["rewards"] + GAMMA * (1 - b["terminated"]) * next_v
        expected = float(
            ((q1(b["obs"], b["actions"]) - y) ** 2).mean() + ((q2(b["obs"], b["actions"]) - y) ** 2).mean()
        )
    metrics = algo.update(b)
    assert metrics["losses/critic_loss"] == pytest.approx(expected, rel=1e-5)


def test_sac_policy_delay_steps_the_actor_and_temperature_every_dth_critic_step():
    """SBX's count: critic steps d, 2d, … also step π and α; the targets follow every critic step."""
    cfg = SACConfig(env="Pendulum-v1", hidden_sizes=(8,), policy_delay=3)
    algo = SAC(cfg, *spaces(), torch.device("cpu"))
    stepped = []
    for _ in range(7):
        actor, log_alpha = copy.deepcopy(algo.actor.state_dict()), algo.temperature.log_alpha.detach().clone()
        critic, target = copy.deepcopy(algo.critic.state_dict()), copy.deepcopy(algo.critic_target.state_dict())
        metrics = algo.update(batch())
        moved = [not torch.equal(v, algo.actor.state_dict()[k]) for k, v in actor.items()]
        assert all(moved) or not any(moved)
        stepped.append(all(moved))
        assert (algo.temperature.log_alpha != log_alpha).item() == stepped[-1]
        assert not torch.equal(critic["members.0.0.weight"], algo.critic.state_dict()["members.0.0.weight"])
        assert not torch.equal(target["members.0.0.weight"], algo.critic_target.state_dict()["members.0.0.weight"])
        assert set(metrics) == {"losses/critic_loss", "losses/actor_loss", "losses/q_mean", "losses/entropy",
                                "losses/alpha"}  # fmt: skip
    assert stepped == [False, False, True, False, False, True, False]
    with pytest.raises(ValueError, match="policy_delay=2 is invalid: must be 1 with variant v1"):
        SACConfig(env="Pendulum-v1", variant="v1", policy_delay=2)


def test_sac_discrete_losses_use_the_closed_form_expectation():
    cfg = SACDiscreteConfig(env="CartPole-v1", hidden_sizes=(8,), gamma=GAMMA, ent_coef_init=0.5)
    algo = SACDiscrete(cfg, *spaces(discrete=True), torch.device("cpu"))
    b = batch(discrete=True)
    (q1, q2), actor = members(copy.deepcopy(algo.critic)), copy.deepcopy(algo.actor)
    q1_target, q2_target = members(algo.critic_target)
    with torch.no_grad():
        expected_critic = 0.0
        for i in range(4):
            probs = torch.softmax(actor.net(b["next_obs"][i]), -1)
            q_next = torch.min(q1_target(b["next_obs"][i : i + 1]), q2_target(b["next_obs"][i : i + 1]))[0]
            v = sum(probs[a] * (q_next[a] - 0.5 * torch.log(probs[a])) for a in range(3))  # Σ_a π (Q − α log π)
            y = b["rewards"][i] + GAMMA * (1 - b["terminated"][i]) * v
            a = b["actions"][i]
            expected_critic += float(
                (q1(b["obs"][i : i + 1])[0, a] - y) ** 2 + (q2(b["obs"][i : i + 1])[0, a] - y) ** 2
            )
    metrics = algo.update(b)
    assert metrics["losses/critic_loss"] == pytest.approx(expected_critic / 4, rel=1e-5)
    with torch.no_grad():  # actor loss: Σ_a π(a|s)(α log π(a|s) − min Q(s, a)), with the updated critics
        new_q1, new_q2 = members(algo.critic)
        q = torch.min(new_q1(b["obs"]), new_q2(b["obs"]))
        probs = torch.softmax(actor.net(b["obs"]), -1)
        expected_actor = float((probs * (0.5 * probs.log() - q)).sum(-1).mean())
    assert metrics["losses/actor_loss"] == pytest.approx(expected_actor, rel=1e-5)
    assert metrics["losses/alpha"] == pytest.approx(0.5)


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_continuous_algorithms_refuse_discrete_actions_and_name_sac_discrete(algo, tmp_path):
    with pytest.raises(ValueError, match="sac-discrete"):
        pgrad.train(algo, env="CartPole-v1", total_steps=100, run_dir=str(tmp_path / "r"))


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_end_to_end_save_load_on_pendulum(algo, tmp_path):
    agent = pgrad.train(
        algo,
        env="Pendulum-v1",
        total_steps=400,
        seed=0,
        run_dir=str(tmp_path / algo),
        learning_starts=200,
        eval_episodes=1,
        tensorboard=False,
        log_interval=50,
    )
    loaded = pgrad.load(tmp_path / algo)
    obs = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    actions = loaded.act(obs)
    assert actions.shape == (7, 1) and np.all(np.abs(actions) <= 2.0)  # rescaled to Pendulum's [−2, 2]
    np.testing.assert_array_equal(actions, agent.act(obs))


def test_mujoco_env_runs_end_to_end(tmp_path):
    agent = pgrad.train(
        "sac",
        env="InvertedPendulum-v5",
        total_steps=600,
        seed=0,
        run_dir=str(tmp_path / "m"),
        learning_starts=300,
        eval_episodes=2,
        tensorboard=False,
        hidden_sizes=(64, 64),
    )
    assert len(agent.evaluation.returns) == 2 and all(r >= 1 for r in agent.evaluation.returns)


def test_replay_stores_raw_data_and_normalises_samples_with_the_current_statistics(tmp_path):
    """SB3's rule: old transitions must not carry the statistics of the day they were stored."""
    import gymnasium as gym

    from pgrad.algos.base import normalized
    from pgrad.train import Trainer, resolve_config

    cfg, _, _ = resolve_config(
        "sac", "Pendulum-v1", "none", {"total_steps": 300, "learning_starts": 1000, "normalize_obs": True,
                                       "normalize_reward": True, "run_dir": str(tmp_path), "seed": 4},
    )  # fmt: skip
    trainer = Trainer("sac", cfg, tmp_path)
    trainer.loop.run(lambda step, metrics: None)  # warm-up only: uniform actions, stored as they come
    buffer, norm = trainer.loop.buffer, trainer.env.normalizer
    # the same env, stepped by hand with the stored actions, gives the stored observations and rewards
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=4)
    for t in range(buffer.size):
        np.testing.assert_array_equal(buffer.obs[t].numpy(), obs.astype(np.float32))
        obs, reward, terminated, truncated, _ = env.step(trainer.env.action_map(buffer.actions[t : t + 1].numpy())[0])
        np.testing.assert_array_equal(buffer.next_obs[t].numpy(), obs.astype(np.float32))
        assert buffer.rewards[t].item() == np.float32(reward)
        if terminated or truncated:  # the vector env's same-step autoreset, its RNG continuing
            obs, _ = env.reset()
    # a sample is normalised with the statistics of now
    batch = normalized(buffer.sample(64, torch.Generator().manual_seed(0)), norm)
    raw = buffer.sample(64, torch.Generator().manual_seed(0))
    expected_obs = np.clip((raw["obs"].numpy() - norm.obs_rms.mean) / np.sqrt(norm.obs_rms.var + 1e-8), -10, 10)
    np.testing.assert_allclose(batch["obs"].numpy(), expected_obs, rtol=1e-6, atol=1e-6)
    expected_rewards = np.clip(raw["rewards"].numpy() / np.sqrt(norm.return_rms.var + 1e-8), -10, 10)
    np.testing.assert_allclose(batch["rewards"].numpy(), expected_rewards, rtol=1e-6)
    assert norm.obs_rms.count > 300 and float(norm.return_rms.var) != 1.0  # the statistics did move
