"""Observation preprocessing a config asks for (``preprocess``, ``frame_stack``), as env wrappers.

They are added to the run's :class:`~pgrad.envspec.EnvSpec`, so a saved agent's record rebuilds
the same observations for evaluation, and rollout workers build them too.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from pgrad.envspec import EnvSpec, Wrapper, is_atari


class AtariGame(gym.Wrapper):
    """Episodes of one life inside whole games, as SB3's ``EpisodicLifeEnv``, ``FireResetEnv`` and
    ``ClipRewardEnv`` (RL Zoo's ``AtariWrapper``) make them.

    A lost life ends the learning episode (``terminated``), but the next ``reset`` continues the
    game with a no-op step instead of restarting it; games that wait for FIRE get it after every
    reset; rewards are clipped to their sign. The game itself is what pgrad counts, logs and
    evaluates: every step's ``info`` says ``game_over``, and at a game's end gives its raw score
    ``game_return`` and ``game_length`` (agent steps), which :class:`~pgrad.envs.VecEnv` and
    ``pgrad.evaluate`` report instead of the per-life returns of clipped rewards.
    """

    pgrad_games = True  # VecEnv and evaluate read the game_* info keys of this env

    def __init__(self, env: gym.Env, terminal_on_life_loss: bool = True, clip_rewards: bool = True):
        super().__init__(env)
        self.terminal_on_life_loss, self.clip_rewards = terminal_on_life_loss, clip_rewards
        meanings = env.unwrapped.get_action_meanings()
        self.fire = len(meanings) > 2 and meanings[1] == "FIRE"
        self.lives, self.game_over, self.game_return, self.game_length = 0, True, 0.0, 0

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
            self.game_return, self.game_length = 0.0, 0
        else:  # a life was lost: the game goes on from where it is
            obs, info = self._continue(0)
        self.game_over = False
        if self.fire:
            obs, info = self._continue(1)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def _continue(self, action: int):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_return, self.game_length = self.game_return + float(reward), self.game_length + 1
        if terminated or truncated:  # the game ended on this very step (rare): a new one
            obs, info = self.env.reset()
            self.game_return, self.game_length = 0.0, 0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_return, self.game_length = self.game_return + float(reward), self.game_length + 1
        self.game_over = bool(terminated or truncated)
        lives = self.env.unwrapped.ale.lives()
        life_lost, self.lives = 0 < lives < self.lives, lives
        info = dict(info, game_over=self.game_over)
        if self.game_over:
            info |= {"game_return": self.game_return, "game_length": self.game_length}
        if self.clip_rewards:
            reward = float(np.sign(reward))
        return obs, reward, terminated or (self.terminal_on_life_loss and life_lost), truncated, info


def atari(env: gym.Env, noop_max: int = 30, frame_skip: int = 4, terminal_on_life_loss: bool = True) -> gym.Env:
    """RL Zoo's ``AtariWrapper`` from gymnasium's ``AtariPreprocessing`` and :class:`AtariGame`: up
    to 30 no-op actions at reset, the action repeated for 4 frames (the max of the last two
    observed), 84×84 grayscale uint8, FIRE at reset where a game needs it, a lost life ends the
    learning episode (not the game), rewards clipped to their sign; scores are the games' own."""
    from gymnasium.wrappers import AtariPreprocessing

    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=84,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)  # fmt: skip
    return AtariGame(env, terminal_on_life_loss)


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
