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


def check_finite(metrics: dict[str, float], step: int, module: torch.nn.Module | None = None) -> None:
    """Raise :class:`NonFiniteError` naming the step and the quantity: a loss, or a parameter of
    ``module`` (a NaN gradient shows up there after the optimizer step)."""
    bad = [
        k
        for k, v in metrics.items()
        if k.startswith("losses/")
        and k != "losses/explained_variance"
        and isinstance(v, float)
        and not math.isfinite(v)
    ]
    if bad:
        raise NonFiniteError(f"non-finite {', '.join(bad)} at step {step}")
    if module is not None:
        params = list(module.named_parameters())
        finite = torch.stack([p.detach().isfinite().all() for _, p in params])
        if not bool(finite.all()):
            names = [name for (name, _), ok in zip(params, finite.tolist(), strict=True) if not ok]
            raise NonFiniteError(f"non-finite parameter(s) {', '.join(names)} at step {step}")


class EpisodeStats:
    """Means over the last 100 finished episodes (raw rewards), as SB3's ``ep_rew_mean``."""

    def __init__(self) -> None:
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.episodes = 0

    def add(self, env: VecEnv) -> dict[str, float]:
        return self.add_episodes(*env.pop_episodes())

    def add_episodes(self, returns: list[float], lengths: list[int]) -> dict[str, float]:
        self.episodes += len(returns)
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        return {
            "charts/episodic_return": float(np.mean(self.returns)) if self.returns else float("nan"),
            "charts/episodic_length": float(np.mean(self.lengths)) if self.lengths else float("nan"),
            "charts/episodes": float(self.episodes),
        }


class OnPolicyLoop:
    """Collect ``n_steps`` × ``n_envs`` transitions, bootstrap, update; ``ceil(total / (T·N))`` times.

    The attributes are the loop's whole state (``pgrad.state`` checkpoints them), so ``run``
    continues a restored loop exactly where it stopped. ``on_update(global_step, metrics)``
    receives the update's metrics plus ``charts/episodic_return`` and ``charts/episodic_length``
    (means over the last 100 finished episodes, NaN before the first).
    """

    def __init__(self, algo: OnPolicyAlgorithm, env: VecEnv, n_steps: int, total_steps: int, device: torch.device):
        self.algo, self.env, self.n_steps, self.device = algo, env, n_steps, device
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        action_shape = () if discrete else env.action_space.shape
        self.buf = RolloutBuffer(n_steps, env.n_envs, env.obs_shape, action_shape, discrete, device)
        self.n_updates = math.ceil(total_steps / (n_steps * env.n_envs))
        self.stats = EpisodeStats()
        self.update = self.global_step = 0
        self.obs: np.ndarray | None = None

    def collect(self) -> tuple[list[float], list[int]]:
        """Fill the buffer with one rollout (and its bootstrap values); return the returns and
        lengths of the episodes that ended in it."""
        algo, env, buf, device = self.algo, self.env, self.buf, self.device
        if self.obs is None:
            self.obs = env.reset()
        obs = torch.as_tensor(self.obs, device=device)
        final_values: dict[int, tuple[np.ndarray, Tensor]] = {}
        for t in range(self.n_steps):
            with torch.inference_mode():
                actions, log_probs, values = algo.act(obs)
            next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions.cpu().numpy())
            buf.store(t, obs, actions, log_probs, values, rewards, terminated, truncated)
            cut = truncated & ~terminated
            if cut.any():
                # Truncation is not termination: bootstrap from V of the real final observation.
                # (All N rows go through the network, so each row's arithmetic is the same as in a
                # rollout worker that holds a slice of the envs: see pgrad.distributed.)
                envs = np.flatnonzero(cut)
                with torch.inference_mode():
                    final_values[t] = (envs, algo.value(torch.as_tensor(real_next_obs, device=device))[envs])
            obs = torch.as_tensor(next_obs, device=device)
        self.obs = next_obs
        with torch.inference_mode():
            last_values = algo.value(obs)
        buf.finish(last_values, final_values)
        return env.pop_episodes()

    def run(self, on_update: Callable[[int, dict[str, float]], None]) -> int:
        while self.update < self.n_updates:
            episode_stats = self.stats.add_episodes(*self.collect())
            self.global_step += self.n_steps * self.buf.n_envs
            metrics = self.algo.update(self.buf, progress_remaining=1.0 - self.update / self.n_updates)
            self.update += 1
            check_finite(metrics, self.global_step, self.algo.policy)
            on_update(self.global_step, episode_stats | metrics)
        return self.global_step


class EpisodicAlgorithm(Protocol):
    policy: torch.nn.Module

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...
    def update(self, batch: EpisodeBuffer, progress_remaining: float) -> dict[str, float]: ...


class EpisodeLoop:
    """REINFORCE's loop: every update sees whole episodes only.

    Each update resets all envs and lets each run ``ceil(episodes_per_update / N)`` complete
    episodes from the reset; an env that has finished its quota keeps stepping with the others
    but those steps are masked out. Waiting for a fixed number of *first* finishers instead would
    favour short episodes. All env steps taken count towards ``total_steps``.
    """

    def __init__(
        self, algo: EpisodicAlgorithm, env: VecEnv, episodes_per_update: int, total_steps: int, device: torch.device
    ):
        self.algo, self.env, self.total_steps, self.device = algo, env, total_steps, device
        self.quota = math.ceil(episodes_per_update / env.n_envs)
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        action_shape = () if discrete else env.action_space.shape
        self.batch = EpisodeBuffer(env.n_envs, env.obs_shape, action_shape, discrete, device)
        self.stats = EpisodeStats()
        self.global_step = 0
        self.started = False

    def collect(self) -> tuple[list[float], list[int]]:
        """Fill the batch with every env's quota of whole episodes; return the returns and lengths
        of all episodes that ended meanwhile."""
        algo, env, batch, device = self.algo, self.env, self.batch, self.device
        # The first reset seeds the envs; later ones start fresh episodes, the RNG continuing.
        obs_np = env.reset(seed=None) if self.started else env.reset()
        self.started = True
        batch.clear()
        finished = np.zeros(env.n_envs, np.int64)
        obs = torch.as_tensor(obs_np, device=device)
        while (finished < self.quota).any():
            active = finished < self.quota
            with torch.inference_mode():
                actions, _, _ = algo.act(obs)
            next_obs, rewards, terminated, truncated, _ = env.step(actions.cpu().numpy())
            # A time-limit cut ends the episode of the finite-horizon objective REINFORCE estimates.
            dones = terminated | truncated
            batch.store(obs, actions, rewards, dones, active)
            finished += dones & active
            obs = torch.as_tensor(next_obs, device=device)
        return env.pop_episodes()

    def run(self, on_update: Callable[[int, dict[str, float]], None]) -> int:
        while self.global_step < self.total_steps:
            episode_stats = self.stats.add_episodes(*self.collect())
            self.global_step += self.batch.length * self.batch.n_envs
            progress_remaining = max(0.0, 1.0 - self.global_step / self.total_steps)
            metrics = self.algo.update(self.batch, progress_remaining=progress_remaining)
            check_finite(metrics, self.global_step, self.algo.policy)
            on_update(self.global_step, episode_stats | metrics)
        return self.global_step


class OffPolicyAlgorithm(Protocol):
    policy: torch.nn.Module

    def explore(self, obs: Tensor) -> np.ndarray: ...
    def episodes_ended(self, envs: np.ndarray) -> None: ...
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]: ...


class OffPolicyLoop:
    """The off-policy loop: act → store → sample → update.

    Actions are in the policy's space ([−1, 1]^D for Box, rescaled by the env; ints for Discrete):
    uniformly random for the first ``learning_starts`` steps, then ``algo.explore``. Every
    ``train_freq`` vector steps, ``gradient_steps`` updates on uniform replay samples of
    ``batch_size``; ``on_update`` follows each training round.
    """

    def __init__(self, algo: OffPolicyAlgorithm, env: VecEnv, cfg, device: torch.device):
        self.algo, self.env, self.cfg, self.device = algo, env, cfg, device
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.action_shape = () if self.discrete else tuple(env.action_space.shape)
        self.buffer = ReplayBuffer(cfg.buffer_size, env.obs_shape, self.action_shape, self.discrete, device)
        self.buffer.in_checkpoints = cfg.save_replay_buffer
        self.stats = EpisodeStats()
        self.sample_generator = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.global_step = self.vector_step = 0
        self.obs: np.ndarray | None = None

    def run(self, on_update: Callable[[int, dict[str, float]], None]) -> int:
        algo, env, cfg, buffer = self.algo, self.env, self.cfg, self.buffer
        N = env.n_envs
        if self.obs is None:
            self.obs = env.reset()
        while self.global_step < cfg.total_steps:
            if self.global_step < cfg.learning_starts:
                if self.discrete:
                    actions = self.rng.integers(0, env.action_space.n, N)
                else:
                    actions = self.rng.uniform(-1.0, 1.0, (N, *self.action_shape)).astype(np.float32)
            else:
                with torch.inference_mode():
                    actions = algo.explore(torch.as_tensor(self.obs, device=self.device))
            next_obs, rewards, terminated, truncated, real_next_obs = env.step(actions)
            # Store the real successor and termination only: truncation still bootstraps.
            buffer.add(self.obs, actions, rewards, real_next_obs, terminated)
            dones = terminated | truncated
            if dones.any():
                algo.episodes_ended(np.flatnonzero(dones))
            self.obs = next_obs
            self.global_step += N
            self.vector_step += 1
            if self.global_step >= cfg.learning_starts and self.vector_step % cfg.train_freq == 0:
                for _ in range(cfg.gradient_steps):
                    metrics = algo.update(buffer.sample(cfg.batch_size, self.sample_generator))
                check_finite(metrics, self.global_step, algo.policy)
                on_update(self.global_step, self.stats.add(env) | metrics)
        return self.global_step
