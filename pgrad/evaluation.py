"""Deterministic evaluation of an agent on a fresh env instance (CHECKLIST items 34, 40, 45)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from pgrad.agent import Agent
from pgrad.envs import check_env_id

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never reuse a training seed


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def to_json(self) -> dict:
        return {"mean_return": self.mean, "std_return": self.std, "returns": self.returns, "lengths": self.lengths}


def evaluate(
    agent: Agent,
    episodes: int = 10,
    seed: int = 0,
    env_id: str | None = None,
    deterministic: bool = True,
    video: str | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes (seeds ``seed + 10⁶ + i``) with the agent's deterministic action.

    Observation statistics are the agent's, frozen. ``video`` writes the frames of all episodes
    to that file (mp4 or gif).
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes!r} is invalid: must be an integer >= 1")
    env_id = env_id or agent.env_id
    check_env_id(env_id)
    if video:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render off-screen, no display needed
    env = gym.make(env_id, render_mode="rgb_array" if video else None)
    frames: list[np.ndarray] = []
    returns, lengths = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            done, total, length = False, 0.0, 0
            while not done:
                if video:
                    frames.append(env.render())
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=deterministic))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    if video:
        import imageio

        fps = env.metadata.get("render_fps", 30) or 30
        imageio.mimsave(video, frames, fps=fps) if video.endswith(".gif") else imageio.mimsave(
            video, frames, fps=fps, macro_block_size=1
        )
    return EvalResult(returns, lengths)
