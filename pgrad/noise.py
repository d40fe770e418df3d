"""Exploration noise for deterministic policies (DDPG, TD3), one process per env, in the policy's
[−1, 1] action scale (so it is scaled by the action range when mapped to the env: CHECKLIST item 31)."""

from __future__ import annotations

import numpy as np


class GaussianNoise:
    """ε ~ N(0, σ²) independently each step."""

    def __init__(self, n_envs: int, action_dim: int, sigma: float, seed: int):
        self.shape, self.sigma = (n_envs, action_dim), sigma
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        return self.sigma * self.rng.standard_normal(self.shape).astype(np.float32)

    def reset(self, envs: np.ndarray) -> None:
        """Nothing to reset: the noise has no state."""


class OrnsteinUhlenbeckNoise:
    """x ← x + θ(μ − x)dt + σ√dt·ε: temporally correlated, mean-reverting to μ (DDPG paper).

    Discretised with step dt it is an AR(1) process whose stationary law is
    N(μ, σ² dt / (1 − (1 − θ dt)²)) (→ σ²/(2θ) as dt → 0). Each env's process restarts at μ when
    its episode ends (``reset``).
    """

    def __init__(
        self,
        n_envs: int,
        action_dim: int,
        sigma: float,
        seed: int,
        theta: float = 0.15,
        mu: float = 0.0,
        dt: float = 1.0,
    ):
        self.theta, self.mu, self.sigma, self.dt = theta, mu, sigma, dt
        self.rng = np.random.default_rng(seed)
        self.x = np.full((n_envs, action_dim), mu, np.float64)

    def __call__(self) -> np.ndarray:
        # OU: x_{t+1} = x_t + θ(μ − x_t)dt + σ√dt ε,  ε ~ N(0, I)
        self.x = (
            self.x
            + self.theta * (self.mu - self.x) * self.dt
            + self.sigma * np.sqrt(self.dt) * self.rng.standard_normal(self.x.shape)
        )
        return self.x.astype(np.float32)

    def reset(self, envs: np.ndarray) -> None:
        self.x[envs] = self.mu


def make_noise(kind: str, n_envs: int, action_dim: int, sigma: float, seed: int, theta: float = 0.15):
    """``"normal"`` → :class:`GaussianNoise`, ``"ou"`` → :class:`OrnsteinUhlenbeckNoise`."""
    if kind == "ou":
        return OrnsteinUhlenbeckNoise(n_envs, action_dim, sigma, seed, theta=theta)
    return GaussianNoise(n_envs, action_dim, sigma, seed)
