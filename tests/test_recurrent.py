"""Recurrent policies (``rnn``): the sequence minibatches, the recurrence re-run in the update against
the rollout's own step-by-step acting, gradients stopped at episode starts, the agent's state, the
CLI, and learning the velocity-less CartPole that a feed-forward policy cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.base import OnPolicyLoop
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.buffers import sequence_minibatches
from pgrad.envs import make_vec_env
from pgrad.networks import RecurrentActorCritic, evaluate_batch, evaluate_rollout, reset_where

PGRAD = [sys.executable, "-m", "pgrad.cli"]
TINY = ["--preset", "none", "--n-envs", "2", "--n-steps", "32", "--batch-size", "32", "--n-epochs", "2",
        "--rnn", "lstm", "--rnn-hidden-size", "8", "--hidden-sizes", "8", "--no-progress-bar", "--no-tensorboard"]  # fmt: skip


def random_starts(T: int, N: int, p: float, seed: int) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).random((T, N)) < p)


@pytest.mark.parametrize("T,N,batch_size,p", [(16, 3, 8, 0.2), (16, 3, 48, 0.2), (7, 5, 10, 0.0), (9, 2, 4, 0.6)])
def test_sequence_minibatches_cover_each_step_once_and_never_cross_an_episode_start(T, N, batch_size, p):
    starts = random_starts(T, N, p, seed=T * N)
    generator = torch.Generator().manual_seed(0)
    seen = []
    groups = list(sequence_minibatches(starts, batch_size, generator, "cpu"))
    for batch in groups:
        L, B = batch.mask.shape
        lengths = batch.mask.sum(0)
        assert bool((lengths >= 1).all()) and int(lengths.max()) == L
        assert bool((batch.mask[1:] <= batch.mask[:-1]).all())  # real steps first, padding after
        for s in range(B):
            index = batch.index[: lengths[s], s]
            t, n = index // N, index % N
            assert bool((n == n[0]).all()) and bool((t == t[0] + torch.arange(len(t))).all())  # one env, in order
            assert int(batch.first[s]) == int(index[0])
            assert int(t[0]) == 0 or bool(starts[t[0], n[0]])  # begins at the rollout's start or an episode's
            assert not bool(starts[t[1:], n[1:]].any())  # and holds no other start
            last = int(t[-1])
            assert last == T - 1 or bool(starts[last + 1, n[0]])  # runs to the next start or the end
        seen += batch.samples.tolist()
    assert sorted(seen) == list(range(T * N))
    if batch_size >= T * N:
        assert len(groups) == 1
    else:  # about T·N / batch_size groups, each beginning its sequences within its batch_size steps
        assert len(groups) <= -(-T * N // batch_size)
        assert all(len(b.samples) < batch_size + T for b in groups)


def naive_rollout(policy, obs: torch.Tensor, starts: torch.Tensor, actions: torch.Tensor, state: torch.Tensor):
    """Log-probs and values stepping one step at a time from ``state`` (what the previous rollout
    left), reset at starts, and the states entering each step."""
    T, N = starts.shape
    log_probs, values, states = [], [], []
    for t in range(T):
        state = reset_where(state, starts[t])
        states.append(state)
        dist, value, state = policy.step(obs[t], state)
        log_probs.append(dist.log_prob(actions[t]))
        values.append(value)
    return torch.stack(log_probs), torch.stack(values), torch.stack(states)


@pytest.mark.parametrize(
    "rnn,layers,shared,discrete", [("lstm", 1, False, True), ("gru", 2, False, False), ("lstm", 2, True, False)]
)
def test_rerunning_the_sequences_from_stored_states_reproduces_the_rollout(rnn, layers, shared, discrete):
    """The update's π and V (every sequence at once, padded, from the state stored at its first step)
    are the rollout's, step by step, to float rounding: PPO's ratio is 1 on its first minibatch."""
    torch.manual_seed(0)
    T, N, D = 12, 3, 5
    policy = RecurrentActorCritic(
        D,
        2,
        discrete,
        rnn=rnn,
        rnn_hidden_size=16,
        rnn_layers=layers,
        rnn_shared=shared,
        hidden_sizes=(8,),
        ortho_init=False,
    )  # fmt: skip  (heads that feel the state)
    obs = torch.randn(T, N, D)
    starts = random_starts(T, N, 0.25, seed=1)
    starts[0, 0] = True  # env 0's first step starts an episode; the others go on from the previous rollout
    actions = torch.randint(0, 2, (T, N)) if discrete else torch.randn(T, N, 2)
    carried = torch.randn(N, policy.state_rows, 16)
    with torch.no_grad():
        log_probs, values, states = naive_rollout(policy, obs, starts, actions, carried)
        buf = SimpleNamespace(obs=obs, states=states, episode_starts=starts, recurrent=True, device=torch.device("cpu"))
        dist, v = evaluate_rollout(policy, buf)
        assert torch.allclose(dist.log_prob(actions.flatten(0, 1)), log_probs.flatten(), atol=1e-5)
        assert torch.allclose(v, values.flatten(), atol=1e-5)
        for batch in sequence_minibatches(starts, 8, torch.Generator().manual_seed(2), "cpu"):
            dist, v, idx = evaluate_batch(policy, obs.flatten(0, 1), states.flatten(0, 1), batch)
            assert torch.allclose(dist.log_prob(actions.flatten(0, 1)[idx]), log_probs.flatten()[idx], atol=1e-5)
            assert torch.allclose(v, values.flatten()[idx], atol=1e-5)
        # the stored states matter: restarting every sequence from 0 instead gives other log-probs
        assert not bool(states[0, 1:].eq(0).all())
        wrong = SimpleNamespace(**(vars(buf) | {"states": torch.zeros_like(states)}))
        assert (
            evaluate_rollout(policy, wrong)[0].log_prob(actions.flatten(0, 1)) - log_probs.flatten()
        ).abs().max() > 1e-3


def test_no_gradient_crosses_an_episode_start():
    """∂ log π(a_t|·)/∂ s_u is 0 for u before the episode start preceding t, non-zero within the episode."""
    torch.manual_seed(1)
    T, N, D = 10, 2, 3
    policy = RecurrentActorCritic(D, 2, True, rnn="lstm", rnn_hidden_size=8, hidden_sizes=(8,))
    obs = torch.randn(T, N, D, requires_grad=True)
    starts = torch.zeros(T, N, dtype=torch.bool)
    starts[0] = starts[6, 0] = True  # env 0: an episode over steps 0-5, the next from step 6
    states = torch.zeros(T, N, policy.state_rows, 8)
    buf = SimpleNamespace(obs=obs, states=states, episode_starts=starts, recurrent=True, device=torch.device("cpu"))
    dist, _ = evaluate_rollout(policy, buf)
    log_probs = dist.log_prob(torch.zeros(T * N, dtype=torch.long)).view(T, N)
    (grad,) = torch.autograd.grad(log_probs[8, 0], obs)
    assert bool((grad[:6, 0] == 0).all()) and bool((grad[:, 1] == 0).all()) and bool((grad[9:, 0] == 0).all())
    assert bool((grad[6:9, 0].abs().sum(-1) > 0).all())  # the same episode's steps up to t do reach it


def test_ppo_collects_and_its_first_minibatch_has_ratio_one():
    cfg = PPOConfig(env="CartPoleNoVel-v1", n_envs=3, n_steps=40, batch_size=30, rnn="gru", rnn_hidden_size=16,
                    hidden_sizes=(16,), seed=0)  # fmt: skip
    env = make_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    algo = PPO(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    loop = OnPolicyLoop(algo, env, cfg.n_steps, 10_000, torch.device("cpu"))
    loop.collect()
    loop.collect()  # the second rollout starts mid-episode, from the states the first left
    buf = loop.buf
    assert bool(buf.episode_starts[1:].any()), "some episodes should end inside 40 steps"
    assert not bool(buf.states[0].eq(0).all())  # carried over from the first rollout
    obs, states = buf.obs.flatten(0, 1), buf.states.flatten(0, 1)
    with torch.no_grad():
        for batch in buf.minibatch_indices(cfg.batch_size, algo.generator):
            dist, values, idx = evaluate_batch(algo.policy, obs, states, batch)
            ratio = (dist.log_prob(buf.actions.flatten(0, 1)[idx]) - buf.log_probs.flatten()[idx]).exp()
            assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)
            assert torch.allclose(values, buf.values.flatten()[idx], atol=1e-5)
    metrics = algo.update(buf, 1.0)
    assert np.isfinite(metrics["losses/loss"]) and metrics["charts/gradient_steps"] >= cfg.n_epochs


def test_the_agent_carries_its_state_and_resets_it_where_told(tmp_path):
    agent = pgrad.train("a2c", env="CartPoleNoVel-v1", total_steps=200, n_envs=2, rnn="lstm", rnn_hidden_size=8,
                        run_dir=str(tmp_path / "run"), eval_episodes=1, tensorboard=False)  # fmt: skip
    assert agent.recurrent and agent.evaluation.returns
    env = gym.make("CartPoleNoVel-v1")
    obs, _ = env.reset(seed=0)
    action, state = agent.act(obs)
    assert action in (0, 1) and state.shape == (agent.policy.state_rows, 8)
    _, state2 = agent.act(obs, state=state)
    assert not np.allclose(state2, state)
    _, fresh = agent.act(obs, state=state2, episode_start=True)  # a reset state: as from None
    assert np.allclose(fresh, state)
    actions, states = agent.act(np.stack([obs, obs]), state=np.stack([state, state2]), episode_start=[False, True])
    assert actions.shape == (2,) and np.allclose(states[1], state) and np.allclose(states[0], state2)
    loaded = pgrad.load(tmp_path / "run")
    assert np.array_equal(loaded.act(obs, state=state)[1], agent.act(obs, state=state)[1])
    for bad, fragment in [(dict(state=np.zeros(3)), "does not fit"), (dict(state="x"), "state must be"),
                          (dict(state=state * np.nan), "NaN"), (dict(episode_start=[True, False]), "episode_start")]:  # fmt: skip
        with pytest.raises(ValueError, match=fragment):
            agent.act(obs, **bad)
    feed_forward = pgrad.train("a2c", env="CartPole-v1", total_steps=100, n_envs=2, run_dir=str(tmp_path / "ff"),
                               eval_episodes=0, tensorboard=False)  # fmt: skip
    with pytest.raises(ValueError, match="feed-forward"):
        feed_forward.act(np.zeros(4), state=state)


def test_cli_trains_evaluates_in_a_new_process_and_refuses_what_it_cannot(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run([*PGRAD, "train", "ppo", "--env", "CartPoleNoVel-v1", *TINY, "--total-steps", "128",
                             "--eval-episodes", "2", "--run-dir", str(run)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads((run / "agent.json").read_text())["policy_spec"]
    assert spec["rnn"] == "lstm" and spec["rnn_hidden_size"] == 8
    evaluated = subprocess.run(
        [*PGRAD, "eval", str(run), "--episodes", "2"], capture_output=True, text=True, timeout=300
    )
    assert evaluated.returncode == 0 and "mean return" in evaluated.stdout, evaluated.stderr[-2000:]
    refusals = [
        (["train", "trpo", "--env", "CartPole-v1", "--rnn", "lstm"], "rnn='lstm' is invalid here"),
        (["train", "ppo", "--env", "CartPole-v1", "--rnn", "lstm", "--shared-network"], "shared_network"),
        (["train", "ppo", "--env", "CartPole-v1", "--rnn", "rnn"], "rnn"),
        (["export", str(run), "-o", str(tmp_path / "p.onnx")], "recurrent"),
    ]
    for args, fragment in refusals:
        result = subprocess.run([*PGRAD, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


@pytest.mark.slow
def test_an_lstm_solves_the_velocity_less_cartpole_that_an_mlp_cannot(tmp_path):
    """RL Zoo's ppo_lstm CartPoleNoVel-v1 entry (pgrad's preset), 100k steps, seed 0 (the bench's three
    seeds and sb3-contrib's RecurrentPPO beside it: benchmarks/results/recurrent/); the same without
    the LSTM. Seed 0 ends at 458.9 on an AMD EPYC and 166.5 on an Intel Xeon (AVX-512: other float
    rounding, another trajectory); an MLP, which cannot know the velocities, stays near 44 on both."""
    lstm = pgrad.train(
        "ppo", env="CartPoleNoVel-v1", total_steps=100_000, seed=0, run_dir=str(tmp_path / "lstm"), tensorboard=False
    )  # fmt: skip  (the preset: RL Zoo's ppo_lstm entry)
    mlp = pgrad.train(
        "ppo",
        env="CartPoleNoVel-v1",
        total_steps=50_000,
        seed=0,
        rnn="none",
        run_dir=str(tmp_path / "mlp"),
        tensorboard=False,
    )  # fmt: skip  (at 100k, seeds 0-2: 45, 44, 44)
    assert lstm.evaluation.mean >= 120, lstm.evaluation.returns
    assert mlp.evaluation.mean < 100, mlp.evaluation.returns
