"""Observation preprocessing a config asks for (``preprocess``, ``frame_stack``), as env wrappers.

They are added to the run's :class:`~pgrad.envspec.EnvSpec`, so a saved agent's record rebuilds
the same observations for evaluation, and rollout workers build them too.
"""

from __future__ import annotations

import gymnasium as gym

from pgrad.envspec import EnvSpec, Wrapper, is_atari


def atari(env: gym.Env, noop_max: int = 30, frame_skip: int = 4, terminal_on_life_loss: bool = True) -> gym.Env:
    """gymnasium's ``AtariPreprocessing`` as RL Zoo's ``AtariWrapper`` configures it: up to 30 no-op
    actions at reset, the action repeated for 4 frames (the max of the last two observed), 84×84
    grayscale uint8, and a lost life ends the episode for learning (the episode statistics still
    follow the game: pgrad's counts the env's own ends, which a life loss is here as in the Zoo)."""
    from gymnasium.wrappers import AtariPreprocessing

    return AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=frame_skip, screen_size=84, terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True, scale_obs=False,
    )  # fmt: skip


def frame_stack(env: gym.Env, stack_size: int) -> gym.Env:
    """The last ``stack_size`` observations stacked on a new first axis (channels first for images)."""
    return gym.wrappers.FrameStackObservation(env, stack_size)


def preprocessed(spec: EnvSpec, preprocess: str, stack: int) -> EnvSpec:
    """``spec`` with the config's preprocessing: ``"atari"`` (with the emulator's own frame skip
    off, as AtariPreprocessing skips frames itself) and a frame stack of ``stack`` > 1."""
    if preprocess == "none" and stack == 1:
        return spec
    kwargs, wrappers = dict(spec.kwargs), list(spec.wrappers)
    if preprocess == "atari":
        if spec.id is None or not is_atari(spec.id):
            raise ValueError(
                f"preprocess='atari' is invalid for {spec.name}: it is for Atari ids such as ALE/Breakout-v5"
            )
        kwargs.setdefault("frameskip", 1)
        wrappers.append(Wrapper(atari))
    if stack > 1:
        wrappers.append(Wrapper(frame_stack, {"stack_size": stack}))
    return EnvSpec(spec.id, spec.factory, spec.instance, kwargs, tuple(wrappers))
