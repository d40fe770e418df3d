"""n-step targets for DDPG, TD3, SAC and SAC-discrete: the replay buffer's n-step samples against a
naive walk over the stored episodes, with terminations, truncations, several envs and a buffer that
has wrapped around; then runs of each algorithm with n_steps > 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pgrad
from pgrad.buffers import NStepReplayBuffer
from pgrad.estimators import n_step_return, td_target


def fill(capacity: int, n_envs: int, vector_steps: int, seed: int = 0):
    """A buffer filled by ``n_envs`` synthetic envs whose episodes end by termination or truncation at
    random; and each env's transitions in order (the naive record), with the order they were written."""
    rng = np.random.default_rng(seed)
    buf = NStepReplayBuffer(capacity, (2,), (1,), torch.float32, n_envs=n_envs, n_steps=4)
    episodes = [[] for _ in range(n_envs)]
    obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
    written = 0
    for _ in range(vector_steps):
        actions = rng.normal(size=(n_envs, 1)).astype(np.float32)
        rewards = rng.normal(size=n_envs).astype(np.float32)
        next_obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
        terminated = rng.random(n_envs) < 0.15
        truncated = ~terminated & (rng.random(n_envs) < 0.15)
        ended = terminated | truncated
        buf.add(obs, actions, rewards, next_obs, terminated, ended)
        for e in range(n_envs):
            episodes[e].append(dict(order=written, obs=obs[e], r=float(rewards[e]), next_obs=next_obs[e],
                                    terminated=bool(terminated[e]), ended=bool(ended[e])))  # fmt: skip
            written += 1
        reset = rng.normal(size=(n_envs, 2)).astype(np.float32)
        obs = np.where(ended[:, None], reset, next_obs)  # a new episode starts from a reset observation
    return buf, episodes, written


def naive_target(episodes, written, row_order: int, n: int, gamma: float, v_next):
    """Walk the env's transitions from the one written at ``row_order``: up to n steps, stopping after
    an episode's end or at the newest transition written."""
    for steps in episodes:
        for t, tr in enumerate(steps):
            if tr["order"] == row_order:
                total, k = 0.0, 0
                while k < n and t + k < len(steps) and steps[t + k]["order"] < written:
                    total += gamma**k * steps[t + k]["r"]
                    k += 1
                    if steps[t + k - 1]["ended"]:
                        break
                last = steps[t + k - 1]
                return total + gamma**k * (1 - last["terminated"]) * v_next(last["next_obs"]), tr["obs"]
    raise AssertionError(f"no transition {row_order}")


@pytest.mark.parametrize("capacity, n_envs, vector_steps", [(200, 1, 60), (64, 3, 50), (61, 2, 70)])
def test_n_step_samples_match_a_naive_walk_over_the_stored_episodes(capacity, n_envs, vector_steps):
    gamma, n = 0.9, 4
    buf, episodes, written = fill(capacity, n_envs, vector_steps)
    w = torch.tensor([0.7, -1.3])
    v = lambda o: float(torch.as_tensor(o) @ w)  # noqa: E731  (any function of s' will do)
    idx = torch.arange(buf.size)
    batch = buf.transitions(idx)
    returns, discount = n_step_return(batch["rewards"], batch["mask"], gamma)
    targets = td_target(returns, batch["terminated"], batch["next_obs"] @ w, discount)
    oldest = written - buf.size  # the rows still stored were written in orders [oldest, written)
    for i in idx.tolist():
        order = oldest + (i - buf.position) % buf.size if buf.size == buf.capacity else i
        expected, obs = naive_target(episodes, written, order, n, gamma, v)
        assert np.array_equal(batch["obs"][i].numpy(), obs)
        assert float(targets[i]) == pytest.approx(expected, rel=1e-5, abs=1e-5), (i, order)


def test_one_step_is_the_plain_target():
    buf, _, _ = fill(100, 2, 40)
    buf.n_steps = 1
    batch = buf.transitions(torch.arange(buf.size))
    returns, discount = n_step_return(batch["rewards"], batch["mask"], 0.99)
    assert torch.equal(returns, batch["rewards"][:, 0]) and torch.allclose(discount, torch.full_like(discount, 0.99))


@pytest.mark.parametrize("algo, env", [("sac", "Pendulum-v1"), ("td3", "Pendulum-v1"), ("ddpg", "Pendulum-v1"),
                                       ("sac-discrete", "CartPole-v1")])  # fmt: skip
def test_every_off_policy_algorithm_trains_with_n_step_targets(algo, env, tmp_path):
    agent = pgrad.train(algo, env=env, total_steps=400, n_steps=3, learning_starts=100, hidden_sizes=(32, 32),
                        n_envs=2, run_dir=str(tmp_path / "r"), eval_episodes=1)  # fmt: skip
    assert np.isfinite(agent.evaluation.mean)


def test_n_steps_with_the_compact_buffer_is_refused():
    with pytest.raises(ValueError, match="n_steps=3 is invalid: must be 1 with optimize_memory_usage"):
        pgrad.train("sac", env="Pendulum-v1", n_steps=3, optimize_memory_usage=True, learning_starts=200)


def test_critic_layer_norm_and_dropout_build_droq_critics(tmp_path):
    """DroQ's critic layer: Linear → Dropout → LayerNorm → ReLU, in the critics (and their targets) only."""
    from pgrad.train import Trainer, resolve_config

    cfg, _, _ = resolve_config("sac", "Pendulum-v1", "none", dict(critic_layer_norm=True, critic_dropout=0.01,
                               gradient_steps=4, hidden_sizes=(32, 32), learning_starts=100, total_steps=200,
                               run_dir=str(tmp_path / "r")))  # fmt: skip
    (tmp_path / "r").mkdir()
    trainer = Trainer("sac", cfg, tmp_path / "r")
    algo = trainer.loop.algo
    for critic in (algo.critic, algo.critic_target):
        kinds = [type(m).__name__ for m in critic.members[0]]
        assert kinds == ["Linear", "Dropout", "LayerNorm", "ReLU"] * 2 + ["Linear"]
        assert critic.members[0][1].p == 0.01
    assert not any(isinstance(m, (torch.nn.Dropout, torch.nn.LayerNorm)) for m in algo.actor.modules())
    trainer.run()
    pgrad.load(tmp_path / "r")  # the saved agent (the actor) loads as any SAC agent
    with pytest.raises(ValueError, match="critic_dropout=1.0 is invalid"):
        resolve_config("sac", "Pendulum-v1", "none", {"critic_dropout": 1.0})
