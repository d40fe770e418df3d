"""Test envs registered with gymnasium, shared by several test files."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces


@pytest.fixture
def float64():
    """torch's default dtype float64 for the duration of a test (math checked to 1e-10 and below)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step, the same observation every step, never terminates.

    Cut by a time limit only, so the true value of every state is 1/(1−γ): a learner that treats
    truncation as termination learns a smaller value instead (CHECKLIST item 2).
    """

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        return np.ones(1, np.float32), 1.0, False, False, {}


class CounterEnv(gym.Env):
    """Observation = [episode id, step in episode]; terminates after ``length`` steps.

    Lets tests check which observation follows which across autoresets.
    """

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int = 3):
        self.length, self.episode, self.t = length, -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.episode, self.t], np.float32), float(self.t), self.t >= self.length, False, {}


gym.register("pgrad-test/ConstantReward-v0", entry_point=ConstantRewardEnv, max_episode_steps=20)
gym.register("pgrad-test/Counter-v0", entry_point=CounterEnv)
gym.register("pgrad-test/CounterTimeLimit-v0", entry_point=CounterEnv, kwargs={"length": 100}, max_episode_steps=4)


class NaNRewardEnv(gym.Env):
    """CartPole-like observations; the reward turns NaN after 1500 steps (in total, across episodes)."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)
    steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        NaNRewardEnv.steps += 1
        reward = float("nan") if NaNRewardEnv.steps > 1500 else 1.0
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, False, False, {}


gym.register("pgrad-test/NaNReward-v0", entry_point=NaNRewardEnv, max_episode_steps=50)
