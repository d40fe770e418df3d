"""Partially observable versions of classic-control tasks, registered with gymnasium on import of
pgrad (as RL Zoo registers its ``*NoVel-v1`` envs): the velocities are hidden, so a policy must
remember past observations to infer them. They are the test bed of recurrent policies (``rnn``).

    CartPoleNoVel-v1   CartPole-v1 observing the cart's position and the pole's angle only
    PendulumNoVel-v1   Pendulum-v1 observing (cos θ, sin θ) only, not the angular velocity
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class _NoVelocity:
    """Observe only the ``KEEP`` components of the parent env's observation."""

    KEEP: list[int]

    def _hide_velocities(self) -> None:
        space = self.observation_space
        self.observation_space = gym.spaces.Box(space.low[self.KEEP], space.high[self.KEEP], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[self.KEEP], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[self.KEEP], reward, terminated, truncated, info


class CartPoleNoVel(_NoVelocity, CartPoleEnv):
    """CartPole with observations (x, θ): no cart velocity, no pole angular velocity."""

    KEEP = [0, 2]

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self._hide_velocities()


class PendulumNoVel(_NoVelocity, PendulumEnv):
    """Pendulum with observations (cos θ, sin θ): no angular velocity."""

    KEEP = [0, 1]

    def __init__(self, render_mode: str | None = None, g: float = 10.0):
        super().__init__(render_mode=render_mode, g=g)
        self._hide_velocities()


def register() -> None:
    """Register the envs with gymnasium (once per process; pgrad's import does it)."""
    if "CartPoleNoVel-v1" not in gym.registry:
        gym.register("CartPoleNoVel-v1", entry_point=CartPoleNoVel, max_episode_steps=500, reward_threshold=475.0)
    if "PendulumNoVel-v1" not in gym.registry:
        gym.register("PendulumNoVel-v1", entry_point=PendulumNoVel, max_episode_steps=200)


register()
