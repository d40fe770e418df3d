"""Preallocated storage: the on-policy rollout buffer (time-major ``[T, N, ...]`` tensors)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class RolloutBuffer:
    """``T`` steps of ``N`` envs, written in place each step, read whole by an update.

    ``next_values[t]`` is V of the real next state (see ``estimators``): ``values[t + 1]`` inside the
    rollout, the bootstrap value at ``t = T − 1``, and V(final observation) at truncations.
    """

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        discrete: bool,
        device: torch.device | str = "cpu",
    ):
        self.n_steps, self.n_envs, self.device = n_steps, n_envs, torch.device(device)
        T, N = n_steps, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=self.device)

        self.obs = zeros(T, N, *obs_shape)
        self.actions = zeros(T, N, *action_shape, dtype=torch.int64 if discrete else torch.float32)
        self.log_probs = zeros(T, N)
        self.values = zeros(T, N)
        self.rewards = zeros(T, N)
        self.next_values = zeros(T, N)
        self.terminated = zeros(T, N, dtype=torch.bool)
        self.truncated = zeros(T, N, dtype=torch.bool)

    def store(
        self,
        t: int,
        obs: Tensor,
        actions: Tensor,
        log_probs: Tensor,
        values: Tensor,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        self.obs[t] = obs
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values[t] = values
        self.rewards[t] = torch.as_tensor(rewards, device=self.device)
        self.terminated[t] = torch.as_tensor(terminated, device=self.device)
        self.truncated[t] = torch.as_tensor(truncated, device=self.device)

    def finish(self, last_values: Tensor, final_values: dict[int, tuple[np.ndarray, Tensor]]) -> None:
        """Fill ``next_values``: ``last_values`` = V(s_T); ``final_values[t] = (env indices, V)`` of
        the real final observations of episodes truncated at step ``t``."""
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        for t, (envs, values) in final_values.items():
            self.next_values[t, torch.as_tensor(envs, device=self.device)] = values

    def minibatch_indices(self, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """A fresh permutation of all ``T·N`` samples, cut into minibatches (CHECKLIST item 11)."""
        total = self.n_steps * self.n_envs
        perm = torch.randperm(total, generator=generator).to(self.device)
        for start in range(0, total, batch_size):
            yield perm[start : start + batch_size]
