"""The on-policy loops: collect T × N transitions → estimate → update (and REINFORCE's whole episodes).

An on-policy algorithm supplies

- ``act(obs [N, obs_dim]) -> (actions, log_probs [N], values [N])``: sample from π_θold;
- ``value(obs) -> [B]``: V(s), used to bootstrap the rollout's end and truncated episodes;
- ``update(buffer, progress_remaining) -> dict[str, float]``: one update from a full buffer.

The loop owns everything else: the env, the buffer, the bootstrap values of the real final
observations at truncations (CHECKLIST items 1-3), episode statistics, and calling ``on_update``
(logging, evaluation, checkpoints) after each update. ``update`` never writes files or prints.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from pgrad.buffers import EpisodeBuffer, ReplayBuffer, RolloutBuffer
from pgrad.envs import VecEnv


class OnPolicyAlgorithm(Protocol):
    policy: torch.nn.Module

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...
    def value(self, obs: Tensor) -> Tensor: ...
    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]: ...


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf; the message names the step and the quantity."""


def check_finite(metrics: dict[str, float], step: int) -> None:
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v) and k.startswith("losses/")]
    bad = [k for k in bad if k != "losses/explained_variance"]
    if bad:
        raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}")


class EpisodeStats:
    """Means over the last 100 finished episodes (raw rewards), as SB3's ``ep_rew_mean``."""

    def __init__(self) -> None:
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.episodes = 0

    def add(self, env: VecEnv) -> dict[str, float]:
        returns, lengths = env.pop_episodes()
        self.episodes += len(returns)
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        return {
            "charts/episodic_return": float(np.mean(self.returns)) if self.returns else float("nan"),
            "charts/episodic_length": float(np.mean(self.lengths)) if self.lengths else float("nan"),
            "charts/episodes": float(self.episodes),
        }


def run_on_policy(
    algo: OnPolicyAlgorithm,
    env: VecEnv,
    n_steps: int,
    total_steps: int,
    device: torch.device,
    on_update: Callable[[int, dict[str, float]], None],
) -> int:
    """Train ``algo`` for ``ceil(total_steps / (n_steps · n_envs))`` updates; returns the steps taken.

    ``on_update(global_step, metrics)`` receives the update's metrics plus ``charts/episodic_return``
    and ``charts/episodic_length`` (means over the last 100 finished episodes, NaN before the first).
    """
    N = env.n_envs
    action_space = env.action_space
    discrete = isinstance(action_space, gym.spaces.Discrete)
    buf = RolloutBuffer(n_steps, N, env.obs_shape, () if discrete else action_space.shape, discrete, device)
    n_updates = math.ceil(total_steps / (n_steps * N))
    stats = EpisodeStats()

    obs = torch.as_tensor(env.reset(), device=device)
    global_step = 0
    for update in range(n_updates):
        final_values: dict[int, tuple[np.ndarray, Tensor]] = {}
        for t in range(n_steps):
            with torch.inference_mode():
                actions, log_probs, values = algo.act(obs)
            next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions.cpu().numpy())
            buf.store(t, obs, actions, log_probs, values, rewards, terminated, truncated)
            cut = truncated & ~terminated
            if cut.any():
                # Truncation is not termination: bootstrap from V of the real final observation.
                envs = np.flatnonzero(cut)
                with torch.inference_mode():
                    final_values[t] = (envs, algo.value(torch.as_tensor(real_next_obs[envs], device=device)))
            obs = torch.as_tensor(next_obs, device=device)
        global_step += n_steps * N
        with torch.inference_mode():
            last_values = algo.value(obs)
        buf.finish(last_values, final_values)

        metrics = algo.update(buf, progress_remaining=1.0 - update / n_updates)
        check_finite(metrics, global_step)

        on_update(global_step, stats.add(env) | metrics)
    return global_step


class EpisodicAlgorithm(Protocol):
    policy: torch.nn.Module

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...
    def update(self, batch: EpisodeBuffer, progress_remaining: float) -> dict[str, float]: ...


def run_episodes(
    algo: EpisodicAlgorithm,
    env: VecEnv,
    episodes_per_update: int,
    total_steps: int,
    device: torch.device,
    on_update: Callable[[int, dict[str, float]], None],
) -> int:
    """REINFORCE's loop: every update sees whole episodes only.

    Each update resets all envs and lets each run ``ceil(episodes_per_update / N)`` complete
    episodes from the reset; an env that has finished its quota keeps stepping with the others
    but those steps are masked out. Waiting for a fixed number of *first* finishers instead would
    favour short episodes. All env steps taken count towards ``total_steps``.
    """
    N = env.n_envs
    quota = math.ceil(episodes_per_update / N)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    batch = EpisodeBuffer(N, env.obs_shape, () if discrete else env.action_space.shape, discrete, device)
    stats = EpisodeStats()
    global_step = 0
    obs_np = env.reset()  # seeded
    while global_step < total_steps:
        if batch.length:  # later updates: fresh episodes, the env RNG continuing from the seed
            obs_np = env.reset(seed=None)
        batch.clear()
        finished = np.zeros(N, np.int64)
        obs = torch.as_tensor(obs_np, device=device)
        while (finished < quota).any():
            active = finished < quota
            with torch.inference_mode():
                actions, _, _ = algo.act(obs)
            next_obs, rewards, terminated, truncated, _ = env.step(actions.cpu().numpy())
            # A time-limit cut ends the episode of the finite-horizon objective REINFORCE estimates.
            dones = terminated | truncated
            batch.store(obs, actions, rewards, dones, active)
            finished += dones & active
            obs = torch.as_tensor(next_obs, device=device)
        global_step += batch.length * N
        metrics = algo.update(batch, progress_remaining=max(0.0, 1.0 - global_step / total_steps))
        check_finite(metrics, global_step)
        on_update(global_step, stats.add(env) | metrics)
    return global_step


class OffPolicyAlgorithm(Protocol):
    policy: torch.nn.Module

    def explore(self, obs: Tensor) -> np.ndarray: ...
    def episodes_ended(self, envs: np.ndarray) -> None: ...
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]: ...


def run_off_policy(
    algo: OffPolicyAlgorithm,
    env: VecEnv,
    cfg,
    device: torch.device,
    on_update: Callable[[int, dict[str, float]], None],
) -> int:
    """The off-policy loop: act → store → sample → update.

    Actions are in the policy's space ([−1, 1]^D for Box, rescaled by the env; ints for Discrete):
    uniformly random for the first ``learning_starts`` steps, then ``algo.explore``. Every
    ``train_freq`` vector steps, ``gradient_steps`` updates on uniform replay samples of
    ``batch_size``. ``on_update`` follows each training round.
    """
    N = env.n_envs
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    action_shape = () if discrete else env.action_space.shape
    buffer = ReplayBuffer(cfg.buffer_size, env.obs_shape, action_shape, discrete, device)
    stats = EpisodeStats()
    sample_generator = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    obs = env.reset()
    global_step = vector_step = 0
    while global_step < cfg.total_steps:
        if global_step < cfg.learning_starts:
            if discrete:
                actions = rng.integers(0, env.action_space.n, N)
            else:
                actions = rng.uniform(-1.0, 1.0, (N, *action_shape)).astype(np.float32)
        else:
            with torch.inference_mode():
                actions = algo.explore(torch.as_tensor(obs, device=device))
        next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions)
        # Store the real successor and termination only: truncation still bootstraps.
        buffer.add(obs, actions, rewards, real_next_obs, terminated)
        dones = terminated | truncated
        if dones.any():
            algo.episodes_ended(np.flatnonzero(dones))
        obs = next_obs
        global_step += N
        vector_step += 1
        if global_step >= cfg.learning_starts and vector_step % cfg.train_freq == 0:
            for _ in range(cfg.gradient_steps):
                metrics = algo.update(buffer.sample(cfg.batch_size, sample_generator))
            check_finite(metrics, global_step)
            on_update(global_step, stats.add(env) | metrics)
    return global_step
