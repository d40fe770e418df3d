"""Preallocated storage: the on-policy rollout buffer (time-major ``[T, N, ...]`` tensors)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pgrad.estimators import gae


class RolloutBuffer:
    """``T`` steps of ``N`` envs, written in place each step, read whole by an update.

    ``next_values[t]`` is V of the real next state (see ``estimators``): ``values[t + 1]`` inside the
    rollout, the bootstrap value at ``t = T − 1``, and V(final observation) at truncations.
    """

    STORED = ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated")  # by store()
    not_state = ("_views",)

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device | str = "cpu",
        obs_dtype: torch.dtype = torch.float32,
        state_shape: tuple[int, ...] | None = None,
    ):
        self.n_steps, self.n_envs, self.device = n_steps, n_envs, torch.device(device)
        T, N = n_steps, n_envs

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=self.device)

        self.obs = zeros(T, N, *obs_shape, dtype=obs_dtype)
        self.actions = zeros(T, N, *action_shape, dtype=action_dtype)
        self.log_probs = zeros(T, N)
        self.values = zeros(T, N)
        self.rewards = zeros(T, N)
        self.next_values = zeros(T, N)
        self.terminated = zeros(T, N, dtype=torch.bool)
        self.truncated = zeros(T, N, dtype=torch.bool)
        self.recurrent = state_shape is not None
        if self.recurrent:  # a recurrent policy's state entering each step, and where episodes start
            self.states = zeros(T, N, *state_shape)
            self.episode_starts = zeros(T, N, dtype=torch.bool)
        self._views = {name: getattr(self, name).numpy() for name in self.STORED} if self.device.type == "cpu" else {}

    def checkpoint_state(self) -> dict:
        """Nothing: the buffer is refilled before every update reads it."""
        return {}

    def load_checkpoint_state(self, state: dict) -> None:
        pass

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
        row = (obs, actions, log_probs, values, rewards, terminated, truncated)
        if self.device.type == "cpu":  # through numpy views of the same memory: 7.6 µs a step instead of 16
            for name, x in zip(self.STORED, row, strict=True):
                self._views[name][t] = x.numpy() if torch.is_tensor(x) else x
        else:
            for name, x in zip(self.STORED, row, strict=True):
                getattr(self, name)[t] = torch.as_tensor(x, device=self.device)

    def store_memory(self, t: int, states: Tensor, episode_starts: Tensor) -> None:
        """A recurrent policy's states entering step ``t`` (reset where an episode starts there)."""
        self.states[t] = states
        self.episode_starts[t] = episode_starts

    def finish(self, last_values: Tensor, final_values: dict[int, tuple[np.ndarray, Tensor]]) -> None:
        """Fill ``next_values``: ``last_values`` = V(s_T); ``final_values[t] = (env indices, V)`` of
        the real final observations of episodes truncated at step ``t``."""
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        for t, (envs, values) in final_values.items():
            self.next_values[t, torch.as_tensor(envs, device=self.device)] = values

    def gae(self, gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
        """``estimators.gae`` on this rollout, flattened to ``[T·N]``: ``(advantages, returns)``."""
        with torch.no_grad():
            advantages, returns = gae(
                self.rewards, self.values, self.next_values, self.terminated, self.truncated, gamma, gae_lambda
            )
        return advantages.flatten(), returns.flatten()

    def minibatch_indices(self, batch_size: int, generator: torch.Generator) -> Iterator[Tensor | slice | Sequences]:
        """Minibatches of all ``T·N`` samples, shuffled afresh (:func:`minibatches`); of a
        recurrent policy's rollout, whole sequences (:func:`sequence_minibatches`)."""
        if self.recurrent:
            return sequence_minibatches(self.episode_starts, batch_size, generator, self.device)
        return minibatches(self.n_steps * self.n_envs, batch_size, generator, self.device)


def minibatches(n: int, batch_size: int, generator: torch.Generator, device) -> Iterator[Tensor | slice]:
    """Index ``n`` samples by: a fresh permutation cut into minibatches of ``batch_size`` (CHECKLIST
    item 11), or, when one minibatch holds them all, every sample in place (``slice(None)``, a
    view): a mean over the same samples in another order differs only in float rounding, and
    gathering a shuffled copy of every tensor is ~5% of a PPO CartPole gradient step."""
    if batch_size >= n:
        yield slice(None)
        return
    perm = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


@dataclass(frozen=True)
class Sequences:
    """``B`` sequences of a rollout, padded to the longest (``L`` steps), for a recurrent update.

    ``index [L, B]``: each step's flat sample index ``t·N + n`` (padding repeats the sequence's
    first); ``mask [L, B]``: the real steps; ``first [B]``: each sequence's first sample, whose stored
    state the recurrence restarts from. ``samples`` lists the real steps in ``mask``'s row-major
    order, the order a network's outputs at ``mask`` come in.
    """

    index: Tensor
    mask: Tensor
    first: Tensor

    @property
    def samples(self) -> Tensor:
        return self.index[self.mask]


def sequence_minibatches(
    starts: Tensor, batch_size: int, generator: torch.Generator | None, device
) -> Iterator[Sequences]:
    """Minibatches of whole sequences of a ``[T, N]`` rollout whose ``starts[t, n]`` marks the
    first step of an episode (sb3-contrib's recurrent minibatches): a sequence is one env's run of
    steps from ``t = 0`` or an episode's start to the next start or the rollout's end, so no
    sequence crosses an episode boundary. The sequences are shuffled (with ``generator``) and cut
    into ``⌈T·N / batch_size⌉``-ish groups of about ``batch_size`` steps (a group takes the sequences
    that begin within its ``batch_size`` steps); with ``batch_size ≥ T·N``, one group of all in order."""
    T, N = starts.shape
    begins = starts.detach().cpu().clone()
    begins[0] = True
    begin_pos = torch.nonzero(begins.T.reshape(-1)).squeeze(1)  # env-major: position n·T + t
    lengths = torch.diff(begin_pos, append=torch.tensor([T * N]))
    env, t0 = begin_pos // T, begin_pos % T
    order = torch.arange(len(begin_pos))
    if batch_size < T * N:
        order = torch.randperm(len(begin_pos), generator=generator)
        offsets = torch.cumsum(lengths[order], 0) - lengths[order]
        groups = order.split(torch.unique_consecutive(offsets // batch_size, return_counts=True)[1].tolist())
    else:
        groups = [order]
    for group in groups:
        length, start, n = lengths[group], t0[group], env[group]
        steps = torch.arange(int(length.max()))[:, None]
        mask = steps < length[None, :]
        t = start[None, :] + torch.where(mask, steps, 0)
        yield Sequences((t * N + n).to(device), mask.to(device), (start * N + n).to(device))


class EpisodeBuffer:
    """Whole episodes from ``N`` envs, time-major ``[T, N]``; ``T`` grows (doubling) as needed.

    ``valid[t, n]`` marks the steps kept: an env that has run its quota of episodes keeps
    stepping with the others but its further steps are not used.
    """

    def __init__(
        self,
        n_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device | str = "cpu",
        capacity: int = 1024,
        obs_dtype: torch.dtype = torch.float32,
    ):
        self.n_envs, self.device, self.length = n_envs, torch.device(device), 0
        self._specs = {
            "obs": ((*obs_shape,), obs_dtype),
            "actions": ((*action_shape,), action_dtype),
            "rewards": ((), torch.float32),
            "dones": ((), torch.bool),
            "valid": ((), torch.bool),
        }
        self._data = {k: self._zeros(capacity, *spec) for k, spec in self._specs.items()}

    def _zeros(self, capacity: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return torch.zeros((capacity, self.n_envs, *shape), dtype=dtype, device=self.device)

    def clear(self) -> None:
        self.length = 0

    def checkpoint_state(self) -> dict:
        """Nothing: each update starts from an empty batch."""
        return {}

    def load_checkpoint_state(self, state: dict) -> None:
        pass

    def store(self, obs: Tensor, actions: Tensor, rewards: np.ndarray, dones: np.ndarray, valid: np.ndarray) -> None:
        t = self.length
        if t == next(iter(self._data.values())).shape[0]:  # full: double the capacity once
            self._data = {k: torch.cat([v, self._zeros(v.shape[0], *self._specs[k])]) for k, v in self._data.items()}
        d = self._data
        d["obs"][t] = obs
        d["actions"][t] = actions
        d["rewards"][t] = torch.as_tensor(rewards, device=self.device)
        d["dones"][t] = torch.as_tensor(dones, device=self.device)
        d["valid"][t] = torch.as_tensor(valid, device=self.device)
        self.length = t + 1

    def __getattr__(self, name: str) -> Tensor:
        """``obs``, ``actions``, ``rewards``, ``dones``, ``valid``: the first ``length`` steps."""
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name][: self.length]
        raise AttributeError(name)


class ReplayBuffer:
    """Preallocated circular storage of transitions ``(s, a, r, s', terminated)`` for off-policy methods.

    ``s'`` is the real next state (the final observation at an episode's end, never the reset one:
    ``VecEnv.step`` returns it), and only *termination* is stored: a time-limit cut is not an end
    of the MDP, so its target still bootstraps from Q(s', ·) (CHECKLIST items 2-3).
    """

    COLUMNS = ("obs", "next_obs", "actions", "rewards", "terminated")  # stored per row

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device | str = "cpu",
        obs_dtype: torch.dtype = torch.float32,
    ):
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=self.device)
        if "next_obs" in self.COLUMNS:
            self.next_obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=self.device)
        self.actions = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros(capacity, device=self.device)
        self.terminated = torch.zeros(capacity, device=self.device)
        self.position, self.size = 0, 0
        self.in_checkpoints = True

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        ended: np.ndarray | None = None,
    ) -> None:
        """Store one vector step: ``N`` transitions (rows of the arrays); ``ended``: which of them
        ended an episode (terminated or truncated; :class:`CompactReplayBuffer` needs it)."""
        n = len(rewards)
        idx = (self.position + torch.arange(n)) % self.capacity
        row = {"obs": obs, "next_obs": next_obs, "actions": actions, "rewards": rewards, "terminated": terminated,
               "ended": ended}  # fmt: skip
        for name in self.COLUMNS:
            store = getattr(self, name)
            if self.device.type == "cpu":
                store.numpy()[idx.numpy()] = row[name]
            else:
                store[idx.to(self.device)] = torch.as_tensor(
                    np.asarray(row[name]), dtype=store.dtype, device=self.device
                )
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def checkpoint_state(self) -> dict:
        """What a checkpoint keeps: the filled rows only, and the write position (nothing when
        ``in_checkpoints`` is off: a resumed run then starts from an empty buffer)."""
        if not self.in_checkpoints:
            return {}
        n = self.size
        return {name: getattr(self, name)[:n] for name in self.COLUMNS} | {"position": self.position, "size": self.size}

    def load_checkpoint_state(self, state: dict) -> None:
        if not state:
            return
        position, size = state["position"], state["size"]
        if not (isinstance(size, int) and isinstance(position, int) and 0 <= position < self.capacity):
            raise ValueError(f"replay buffer position={position!r} is not in [0, {self.capacity})")
        if not 0 <= size <= self.capacity or (size < self.capacity and position != size % self.capacity):
            raise ValueError(f"replay buffer size={size!r} does not fit its capacity {self.capacity} and position")
        for name in self.COLUMNS:
            store = getattr(self, name)
            if state[name].shape != (size, *store.shape[1:]) or state[name].dtype != store.dtype:
                raise ValueError(
                    f"replay buffer {name} is {state[name].dtype}{list(state[name].shape)}, not {size} rows"
                )
            store[:size] = state[name]
        self.position, self.size = position, size

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A uniform sample (with replacement) of stored transitions, each ``[B, ...]``."""
        return self.transitions(torch.randint(0, self.size, (batch_size,), generator=generator).to(self.device))

    def transitions(self, idx: Tensor) -> dict[str, Tensor]:
        """The transitions stored in rows ``idx``."""
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "next_obs": self.next_obs[idx],
            "terminated": self.terminated[idx],
        }


class NStepReplayBuffer(ReplayBuffer):
    """A replay buffer whose samples look ``n`` steps ahead in the same env (n-step targets).

    Rows are written ``N`` at a time, so the same env's next transition is row ``i + N``. A sample
    of row ``i`` holds the rewards of rows ``i, i + N, …, i + (n−1)N`` (``[B, n]``) with a mask of
    the steps that belong to its episode and are already written: the steps stop after the first
    that ended an episode (terminated *or* truncated). ``next_obs`` and ``terminated`` are the last
    valid step's, so a truncation bootstraps from its real final observation and a termination
    does not bootstrap. :func:`pgrad.estimators.n_step_return` then sums the (normalised) rewards.
    """

    COLUMNS = (*ReplayBuffer.COLUMNS, "ended")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: torch.dtype, device: torch.device | str = "cpu",
                 obs_dtype: torch.dtype = torch.float32, n_envs: int = 1, n_steps: int = 1):  # fmt: skip
        self.ended = torch.zeros(capacity, device=device)
        super().__init__(capacity, obs_shape, action_shape, action_dtype, device, obs_dtype)
        self.n_envs, self.n_steps = n_envs, n_steps

    def add(self, obs, actions, rewards, next_obs, terminated, ended=None) -> None:
        if ended is None:
            raise ValueError("an n-step replay buffer needs `ended` (terminated or truncated) for each row")
        super().add(obs, actions, rewards, next_obs, terminated, ended)

    def transitions(self, idx: Tensor) -> dict[str, Tensor]:
        n, N = self.n_steps, self.n_envs
        ahead = torch.arange(n, device=self.device)
        rows = (idx[:, None] + N * ahead) % self.capacity  # [B, n]: the same env's next n transitions
        written = ((self.position - idx - 1) % self.capacity + 1)[:, None] > N * ahead  # not past the newest row
        ended_before = torch.cumsum(self.ended[rows], dim=1) - self.ended[rows] > 0  # an earlier step ended it
        mask = written & ~ended_before
        last = rows.gather(1, (mask.sum(1, keepdim=True) - 1))[:, 0]  # the last step of each sample
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[rows],
            "mask": mask,
            "next_obs": self.next_obs[last],
            "terminated": self.terminated[last],
        }


class CompactReplayBuffer(ReplayBuffer):
    """A replay buffer that stores each observation once (SB3's ``optimize_memory_usage``): half the
    memory of observations, which is nearly all of it for images.

    Rows are written ``N`` at a time (one vector step of ``N`` envs), so the successor of row ``i``
    is row ``i + N``: the same env's next observation. Where an episode ended there the next row
    holds the reset observation instead, so the real final observation of each ended episode is
    kept on the side, by row (one per episode). Unlike SB3's, truncated episodes therefore still
    bootstrap from their real final state. The newest ``N`` rows, whose successors are not written
    yet, are not sampled.
    """

    COLUMNS = ("obs", "actions", "rewards", "terminated")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: torch.dtype, device: torch.device | str = "cpu",
                 obs_dtype: torch.dtype = torch.float32, n_envs: int = 1):  # fmt: skip
        super().__init__(capacity, obs_shape, action_shape, action_dtype, device, obs_dtype)
        self.n_envs = n_envs
        self.final_obs: dict[int, Tensor] = {}  # row → the real final observation of the episode it ended
        self.has_final = torch.zeros(capacity, dtype=torch.bool, device=self.device)  # the rows final_obs holds

    def add(self, obs, actions, rewards, next_obs, terminated, ended=None) -> None:
        n = len(rewards)
        if ended is None:
            raise ValueError("CompactReplayBuffer.add needs ended (which transitions ended an episode)")
        rows = [(self.position + k) % self.capacity for k in range(n)]
        for row in rows:
            self.final_obs.pop(row, None)  # the row is overwritten, and its episode end with it
        self.has_final[rows] = False
        super().add(obs, actions, rewards, None, terminated)
        for k in np.flatnonzero(ended):
            self.final_obs[rows[k]] = torch.as_tensor(np.array(next_obs[k]), device=self.device)
            self.has_final[rows[k]] = True

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A uniform sample over every row whose successor is stored (all but the newest ``N``)."""
        valid = self.size - self.n_envs
        if valid < 1:
            raise ValueError(f"a compact replay buffer of {self.size} rows has no transition to sample yet")
        oldest = self.position if self.size == self.capacity else 0
        idx = (oldest + torch.randint(0, valid, (batch_size,), generator=generator)) % self.capacity
        return self.transitions(idx.to(self.device))

    def transitions(self, idx: Tensor) -> dict[str, Tensor]:
        next_obs = self.obs[(idx + self.n_envs) % self.capacity]
        for j in torch.nonzero(self.has_final[idx]).flatten().tolist():  # the few rows that ended episodes
            next_obs[j] = self.final_obs[int(idx[j])]
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "next_obs": next_obs,
            "terminated": self.terminated[idx],
        }

    def checkpoint_state(self) -> dict:
        state = super().checkpoint_state()
        if state:
            rows = sorted(self.final_obs)
            state["final_rows"] = torch.tensor(rows, dtype=torch.int64)
            state["final_obs"] = torch.stack([self.final_obs[r] for r in rows]) if rows else self.obs[:0]
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        if not state:
            return
        rows, finals = state.pop("final_rows"), state.pop("final_obs")
        super().load_checkpoint_state(state)
        if rows.dtype != torch.int64 or rows.dim() != 1 or finals.shape != (len(rows), *self.obs.shape[1:]):
            raise ValueError("replay buffer final observations do not fit its rows")
        if finals.dtype != self.obs.dtype or ((rows < 0) | (rows >= self.size)).any():
            raise ValueError("replay buffer final observations name rows it does not have")
        self.final_obs = {int(r): f.clone() for r, f in zip(rows, finals, strict=True)}
        self.has_final.zero_()
        self.has_final[rows.to(self.device)] = True
