"""The on-policy loop: collect T × N transitions → estimate → update, over a small protocol.

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

from pgrad.buffers import RolloutBuffer
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
    recent_returns: deque[float] = deque(maxlen=100)
    recent_lengths: deque[int] = deque(maxlen=100)
    episodes = 0

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

        returns, lengths = env.pop_episodes()
        episodes += len(returns)
        recent_returns.extend(returns)
        recent_lengths.extend(lengths)
        row = {
            "charts/episodic_return": float(np.mean(recent_returns)) if recent_returns else float("nan"),
            "charts/episodic_length": float(np.mean(recent_lengths)) if recent_lengths else float("nan"),
            "charts/episodes": float(episodes),
        }
        on_update(global_step, row | metrics)
    return global_step
