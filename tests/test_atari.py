"""Atari through ale-py (the ``atari`` extra, which ``make test`` installs): RL Zoo's preprocessing,
whole games as the episodes pgrad reports, and PPO's Atari preset from the CLI to a new process."""

from __future__ import annotations

import json
import subprocess
import sys

import ale_py
import gymnasium as gym
import numpy as np
import torch

import pgrad
from pgrad.envs import VecEnv
from pgrad.envspec import EnvSpec
from pgrad.train import resolve_config
from pgrad.wrappers import AtariGame, preprocessed

gym.register_envs(ale_py)  # for gym.make below; pgrad registers them itself for an id it is given


class RawScore(gym.Wrapper):
    """Below AtariGame: the games' unclipped scores, recorded independently of pgrad's bookkeeping."""

    def __init__(self, env):
        super().__init__(env)
        self.scores, self.total = [], 0.0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total += reward
        if terminated or truncated:
            self.scores.append(self.total)
            self.total = 0.0
        return obs, reward, terminated, truncated, info


def breakout_with_spy():
    from gymnasium.wrappers import AtariPreprocessing

    env = AtariPreprocessing(gym.make("ALE/Breakout-v5", frameskip=1), terminal_on_life_loss=False)
    return AtariGame(RawScore(env))


def test_a_life_ends_an_episode_but_pgrad_reports_whole_games_with_their_raw_scores():
    env = VecEnv(EnvSpec.from_user(breakout_with_spy), 2, 0)
    assert env.games
    env.reset()
    rng, life_episodes, clipped = np.random.default_rng(0), 0, set()
    for _ in range(1500):
        _, rewards, terminated, truncated, _ = env.step(rng.integers(0, 4, 2))
        life_episodes += int((terminated | truncated).sum())
        clipped |= set(rewards.tolist())
    games = env.envs.get_attr("scores")  # [per env: the raw score of each finished game]
    assert clipped <= {-1.0, 0.0, 1.0}  # the learner's rewards are clipped to their sign
    assert sorted(env.episode_returns) == sorted(s for scores in games for s in scores)
    assert len(env.episode_returns) >= 4 and life_episodes >= 4 * len(env.episode_returns)  # 5 lives a game
    env.close()


def test_atari_preprocessing_gives_stacked_uint8_frames_and_the_preset_names_them():
    cfg, _, preset = resolve_config("ppo", "ALE/Breakout-v5")
    assert preset == "ppo/atari" and cfg.preprocess == "atari" and cfg.frame_stack == 4 and cfg.n_envs == 8
    assert resolve_config("a2c", "PongNoFrameskip-v4")[2] == "a2c/atari"
    env = VecEnv(preprocessed(EnvSpec.from_user("ALE/Breakout-v5"), "atari", 4), 1, 0)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.obs_dtype == torch.uint8 and env.layout.leaves[0].kind == "image" and env.layout.leaves[0].channels_first
    env.close()


def test_ppo_atari_preset_trains_from_the_cli_and_a_new_process_plays_whole_games(tmp_path):
    run_dir = tmp_path / "breakout"
    cli = [sys.executable, "-m", "pgrad.cli"]
    train = subprocess.run([*cli, "train", "ppo", "--env", "ALE/Breakout-v5", "--n-envs", "2", "--n-steps", "32",
                            "--batch-size", "32", "--total-steps", "128", "--run-dir", str(run_dir), "--eval-episodes",
                            "0", "--no-progress-bar"], capture_output=True, text=True)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == "ppo/atari" and config["config"]["hidden_sizes"] == []
    agent = pgrad.load(run_dir)
    assert agent.policy.encoder.images["0"].kind == "nature"
    result = subprocess.run([*cli, "eval", str(run_dir), "--episodes", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_emulator_and_frame_stacks_are_copied_exactly_without_sticky_actions():
    """A NoFrameskip-v4 game (no sticky actions, RL Zoo's) continues bitwise from a copied state:
    the emulator (ALE's cloneState with its generator), the frame stack and the max-pool buffers,
    across lives and games; v5's sticky actions repeat a last action ALE does not save, so those
    envs are not exact (a resume starts new episodes, and says so)."""
    import pickle

    spec = preprocessed(EnvSpec.from_user("BreakoutNoFrameskip-v4", None), "atari", 4)
    envs = VecEnv(spec, 2, seed=0)
    envs.reset()
    actions = np.random.default_rng(0).integers(0, 4, (1200, 2))
    for a in actions[:150]:
        envs.step(a)
    saved = pickle.loads(pickle.dumps(envs.sim_state()))  # as a checkpoint holds it: a copy
    assert {"env0.layer0.obs_queue", "env0.layer2.obs_buffer", "env0.layer5.ale"} <= set(saved)
    expected = [envs.step(a) for a in actions[150:]]
    assert sum(int(e[2].sum()) for e in expected) >= 10  # lives lost, games restarted (no-op resets)
    copy = VecEnv(spec, 2, seed=7)
    copy.reset()
    copy.load_sim_state(saved)
    for e, c in zip(expected, (copy.step(a) for a in actions[150:]), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(e, c, strict=True))
    assert envs.exact_state
    assert not VecEnv(preprocessed(EnvSpec.from_user("ALE/Breakout-v5", None), "atari", 4), 1, seed=0).exact_state


def test_an_emulator_state_that_is_not_this_games_is_refused_in_one_line():
    import pytest

    from pgrad.envs import load_native, native_state

    pong, breakout = gym.make("PongNoFrameskip-v4"), gym.make("BreakoutNoFrameskip-v4")
    pong.reset(seed=0)
    breakout.reset(seed=0)
    saved = native_state(pong.unwrapped.ale)
    for bad in (saved[: len(saved) // 2], native_state(breakout.unwrapped.ale)):
        with pytest.raises(ValueError, match="refused by ale-py .*truncated, corrupt or another game's"):
            load_native(pong.unwrapped.ale, bad)
    with pytest.raises(ValueError, match="not bytes"):
        load_native(pong.unwrapped.ale, saved.astype(np.int64))
