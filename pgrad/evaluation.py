"""Deterministic evaluation of an agent on a fresh env instance (CHECKLIST items 34, 40, 45)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from pgrad.agent import Agent
from pgrad.config import flag, plain, positive_int, valid_seed
from pgrad.envspec import EnvSpec
from pgrad.spaces import describe, signature

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


def check_video_path(video: str) -> None:
    """A writable destination with a format imageio writes, checked before any episode runs."""
    if not isinstance(video, str) or not video.lower().endswith((".mp4", ".gif")):
        raise ValueError(f"video={video!r} is invalid: a path ending in .mp4 or .gif")
    parent = os.path.dirname(os.path.abspath(video))
    if not os.path.isdir(parent):
        raise ValueError(f"video={video!r} is invalid: the directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"video={video!r} is invalid: the directory {parent!r} is not writable")


def check_fits(agent: Agent, env: gym.Env, env_id: str) -> None:
    """The agent's observation and action spaces are the env's (an agent of CartPole cannot act on Pendulum)."""
    obs_space, action_space = env.observation_space, env.action_space
    same_obs = signature(obs_space) == signature(agent.observation_space)
    same_action = signature(action_space) == signature(agent.action_space)
    if not (same_obs and same_action):
        raise ValueError(
            f"env {env_id!r} has observations {describe(obs_space)} and actions {describe(action_space)}; the agent "
            f"of {agent.env_id!r} takes {describe(agent.observation_space)} and gives {describe(agent.action_space)}"
        )


def evaluate(
    agent: Agent,
    episodes: int = 10,
    seed: int = 0,
    env: Any = None,
    deterministic: bool = True,
    video: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[Any] | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes (seeds ``seed + 10⁶ + i``) with the agent's deterministic action.
    Of an Atari env (an episode per life, clipped rewards), whole games and their own scores.

    ``env``: the agent's own env when None, else anything ``pgrad.train`` takes (an id,
    ``"module:Factory"``, a factory, an instance, an ``EnvSpec``) with the agent's spaces;
    ``env_kwargs`` and ``wrappers`` are added to it as ``pgrad.train`` adds them.
    Observation statistics are the agent's, frozen. ``video`` writes the frames of all episodes
    to that file (mp4 or gif), streamed to the encoder as they are rendered.
    """
    episodes, seed = plain(episodes), plain(seed)  # numpy integers are valid
    positive_int("episodes", episodes)
    valid_seed("seed", seed)
    flag("deterministic", deterministic)
    spec = EnvSpec.from_user(agent.make_env_spec() if env is None else env, env_kwargs, wrappers)
    env_id = spec.name
    if video:
        check_video_path(video)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render off-screen, no display needed
    env = spec.make(render_mode="rgb_array" if video else None)
    writer = None
    returns, lengths = [], []
    try:
        check_fits(agent, env, env_id)
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            done, total, length = False, 0.0, 0
            state, start = None, True  # a recurrent agent's, from each reset
            while not done:
                if video:
                    frame = render(env, env_id)
                    if writer is None:
                        writer = open_video(video, env)
                    writer.append_data(frame)
                if agent.recurrent:
                    action, state = agent.act(obs, deterministic, state, start)
                    start = False
                else:
                    action = agent.act(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
                if done and "game_over" in info:  # an episode per life (AtariGame): play the whole game
                    if not info["game_over"]:
                        obs, _ = env.reset()  # the game goes on
                        done, start = False, True
                    else:
                        total, length = float(info["game_return"]), int(info["game_length"])  # its raw score
            returns.append(total)
            lengths.append(length)
    except BaseException:
        if writer is not None:
            writer.close()
            Path(video).unlink(missing_ok=True)  # no half-written video
        raise
    finally:
        env.close()
    if writer is not None:
        writer.close()
    return EvalResult(returns, lengths)


def render(env: gym.Env, env_id: str) -> np.ndarray:
    """One RGB frame, or a ``ValueError`` that says why this env cannot render here."""
    try:
        with warnings.catch_warnings(record=True):  # GLFW's warnings while it looks for a display
            frame = env.render()
    except Exception as e:  # GL context errors, missing pygame, ... (each renderer raises its own)
        hint = (
            " (MuJoCo renders headless with MUJOCO_GL=egl or MUJOCO_GL=osmesa)"
            if "mujoco" in str(type(env.unwrapped).__module__)
            else ""
        )
        raise ValueError(f"env {env_id!r} cannot render a video here: {type(e).__name__}: {e}{hint}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ValueError(
            f"env {env_id!r} cannot render a video: render() gave {type(frame).__name__}, not an RGB frame"
        )
    return frame


def open_video(video: str, env: gym.Env):
    """An imageio writer that encodes frames as they come (an episode's frames are never all in memory)."""
    import imageio

    fps = env.metadata.get("render_fps", 30) or 30
    if video.lower().endswith(".gif"):
        return imageio.get_writer(video, mode="I", duration=1000 / fps, loop=0)
    return imageio.get_writer(video, fps=fps, macro_block_size=1)
