"""Environments: gymnasium vector envs in SAME_STEP autoreset mode, with what training needs on top.

``VecEnv.step`` returns the real next observation of every env (the final observation where an
episode just ended, CHECKLIST items 2-3) besides the observation to act on next, so that
truncated steps can be bootstrapped and replay buffers never mix episodes. It also keeps episode
statistics of the raw rewards, applies optional running normalisation of observations and
rewards (statistics saved with the agent, frozen at evaluation: items 20 and 45) and maps the
policy's actions to a Box space (clip, or rescale from [-1, 1]).
"""

from __future__ import annotations

import functools
import math
import pickle
from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from torch import Tensor

from pgrad.envspec import EnvSpec, missing_packages
from pgrad.spaces import ObsLayout, action_kind, describe


class RunningMeanStd:
    """Running mean and variance over a stream of batches (parallel update of Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        n = batch.shape[0]
        if n == 1:  # one env: the row and 0, what mean and var return for it (bitwise), without their overhead
            batch_mean, batch_var = batch[0], np.zeros_like(batch[0])
        else:
            batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = np.asarray(self.mean + delta * n / total)  # an array even for shape () (checkpoints)
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var, self.count = np.asarray(m2 / total), total

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array(self.count)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.mean = np.asarray(state["mean"], np.float64).copy()
        self.var = np.asarray(state["var"], np.float64).copy()
        self.count = float(np.asarray(state["count"]))


@dataclass
class Normalizer:
    """Observation normalisation ``clip((o − μ) / σ, ±clip)`` and reward scaling by the std of the
    discounted return (not mean-subtracted), as SB3's VecNormalize. With a packed ``layout`` (a
    Dict or Tuple observation) only its Box leaves are normalised, never images or indices:
    ``obs_shape`` is then the width of those leaves together."""

    obs_shape: tuple[int, ...]
    normalize_obs: bool = False
    normalize_reward: bool = False
    gamma: float = 0.99
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    epsilon: float = 1e-8
    training: bool = True
    layout: ObsLayout | None = None
    obs_rms: RunningMeanStd = field(init=False)
    return_rms: RunningMeanStd = field(init=False)

    def __post_init__(self) -> None:
        self.obs_rms = RunningMeanStd(self.obs_shape)
        self.return_rms = RunningMeanStd(())
        self._returns: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self.normalize_obs or self.normalize_reward

    @property
    def packed(self) -> bool:
        return self.layout is not None and self.layout.packed

    def _on_numeric(self, obs, normalise):
        """``normalise`` applied to the numeric part of a batch (the whole batch unless packed)."""
        if not self.packed:
            return normalise(obs)
        out = obs.copy() if isinstance(obs, np.ndarray) else obs.clone()
        self.layout.set_numeric(out, normalise(self.layout.get_numeric(obs)))
        return out

    def update_obs(self, obs: np.ndarray) -> None:
        if self.normalize_obs and self.training:
            self.obs_rms.update(self.layout.get_numeric(obs) if self.packed else obs)

    def obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.normalize_obs:
            return obs
        mean, std = self.obs_rms.mean, np.sqrt(self.obs_rms.var + self.epsilon)
        return self._on_numeric(
            obs, lambda x: np.clip((x - mean) / std, -self.clip_obs, self.clip_obs).astype(np.float32)
        )

    def observe_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Update the statistics of the discounted return R ← γR + r (reset at episode ends)."""
        if self.normalize_reward and self.training:
            if self._returns is None:
                self._returns = np.zeros_like(rewards, dtype=np.float64)
            self._returns = self._returns * self.gamma + rewards
            self.return_rms.update(self._returns)
            self._returns[dones] = 0.0

    def scale_rewards(self, rewards: np.ndarray) -> np.ndarray:
        if not self.normalize_reward:
            return rewards
        scaled = rewards / np.sqrt(self.return_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)

    def reward(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.observe_rewards(rewards, dones)
        return self.scale_rewards(rewards)

    def obs_tensor(self, obs: Tensor) -> Tensor:
        """:meth:`obs` for a batch already in a tensor (a replay sample), on its device."""
        if not self.normalize_obs:
            return obs
        mean = torch.as_tensor(self.obs_rms.mean, device=obs.device)
        std = torch.as_tensor(np.sqrt(self.obs_rms.var + self.epsilon), device=obs.device)
        return self._on_numeric(obs, lambda x: ((x.double() - mean) / std).clamp(-self.clip_obs, self.clip_obs).float())

    def rewards_tensor(self, rewards: Tensor) -> Tensor:
        """:meth:`scale_rewards` for a batch already in a tensor."""
        if not self.normalize_reward:
            return rewards
        scaled = rewards.double() / math.sqrt(float(self.return_rms.var) + self.epsilon)
        return scaled.clamp(-self.clip_reward, self.clip_reward).float()

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"obs_rms.{k}": v for k, v in self.obs_rms.state_dict().items()}
        state |= {f"return_rms.{k}": v for k, v in self.return_rms.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.obs_rms.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("obs_rms.")})
        self.return_rms.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("return_rms.")})


def check_spaces(observation_space: gym.Space, action_space: gym.Space, env_id: str, images: str = "auto") -> None:
    """pgrad takes Box, Discrete, MultiDiscrete, MultiBinary observations and Dict/Tuple of them,
    and Discrete, MultiDiscrete, MultiBinary and Box actions (which algorithm takes which action
    space, each one checks): any other space is refused here, before training, with what is allowed."""
    try:
        ObsLayout(observation_space, images)
        action_kind(action_space)
    except ValueError as e:
        raise ValueError(f"{env_id}: {e}") from None
    if isinstance(action_space, spaces.Box) and not np.all(np.isfinite([action_space.low, action_space.high])):
        raise ValueError(f"{env_id}: Box action space {action_space} has infinite bounds.")


def require_box(algo: str, action_space: gym.Space) -> int:
    """The action dimension of a Box space; a clear error naming the alternatives otherwise."""
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{algo} needs a continuous (Box) action space, got {action_space}; "
            "for Discrete actions use sac-discrete (or ppo, a2c, trpo, npg, reinforce), and for MultiDiscrete "
            "and MultiBinary ones ppo, a2c, trpo, npg or reinforce"
        )
    return int(np.prod(action_space.shape))


class ActionMap:
    """Policy actions (a batch) → env actions. Indices get the space's ``start`` added; Box actions
    are ``"clip"``: a Gaussian sample clipped to the bounds (the unclipped sample is what is stored,
    item 19), or ``"rescale"``: (−1, 1) mapped onto [low, high]; MultiBinary, MultiDiscrete and Box
    actions take the space's shape (the policy's are flat) and dtype."""

    not_state = ("dtype",)  # the space's, rebuilt with it

    def __init__(self, action_space: gym.Space, mode: str = "clip"):
        if mode not in ("clip", "rescale"):
            raise ValueError(f"action mode must be 'clip' or 'rescale', got {mode!r}")
        self.kind, self.mode, self.shape = action_kind(action_space), mode, action_space.shape
        self.discrete = self.kind == "discrete"
        self.start = None
        if self.kind in ("discrete", "multi_discrete") and np.any(action_space.start != 0):
            self.start = np.asarray(action_space.start).reshape(-1)
        self.dtype = action_space.dtype
        if self.kind == "box":
            self.low = action_space.low.astype(np.float32).reshape(-1)
            self.high = action_space.high.astype(np.float32).reshape(-1)
            self.scale = (self.high - self.low) / 2.0
            self.bias = (self.high + self.low) / 2.0

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if self.kind == "box":
            if self.mode == "clip":
                actions = np.clip(actions, self.low, self.high)
            else:
                actions = self.bias + self.scale * np.clip(actions, -1.0, 1.0)
            return actions if len(self.shape) == 1 else actions.reshape(-1, *self.shape)
        if self.start is not None:
            actions = actions + self.start
        if self.discrete:
            return actions
        return actions.astype(self.dtype).reshape(-1, *self.shape)


SIM_TYPES = (np.ndarray, np.random.Generator, np.generic, bool, int, float, type(None))
NATIVE_STATE = ("gymnasium.envs.box2d",)  # physics in native objects pgrad cannot copy (Box2D's world)


def native_kind(value: object) -> str | None:
    """State that is not a plain value and that pgrad saves as a uint8 or stacked array: ``"mjdata"``
    (a MuJoCo ``MjData``), ``"ale"`` (the Atari emulator), ``"arrays"`` (a deque or list of arrays
    of one shape, e.g. a frame stack); ``None`` for anything else. Checked by type name, so neither
    mujoco nor ale_py needs to be installed."""
    kind = type(value).__module__, type(value).__name__
    if kind == ("mujoco._structs", "MjData"):
        return "mjdata"
    if kind == ("ale_py._ale_py", "ALEInterface"):
        return "ale"
    if isinstance(value, (deque, list)) and value and all(isinstance(x, np.ndarray) for x in value):
        if len({(x.shape, x.dtype) for x in value}) == 1:
            return "arrays"
    return None


def native_state(value) -> np.ndarray:
    """The state of a :func:`native_kind` value as an array. An ``MjData`` by MuJoCo's own
    serialisation (the state its pickling uses, not Python's pickle): the model's sizes and the
    whole data arena. The derived quantities are part of it on purpose: gymnasium's Ant and
    Humanoid read positions and contact forces left by the previous step's forward pass before
    stepping, so ``mj_setState`` of the integration state followed by ``mj_forward`` does not
    continue a run bitwise (measured: Ant's reward differs by 6e-4 within 50 steps), while the full
    copy does. The emulator by ALE's ``cloneState(include_rng=True)``: the console and the sticky
    actions' generator."""
    kind = native_kind(value)
    if kind == "mjdata":
        return np.frombuffer(value.__getstate__(), np.uint8).copy()
    if kind == "ale":
        return np.frombuffer(value.cloneState(include_rng=True).serialize(), np.uint8).copy()
    return np.stack(list(value))


def _as_bytes(saved: object, what: str) -> bytes:
    if not (isinstance(saved, np.ndarray) and saved.dtype == np.uint8 and saved.ndim == 1):
        kind = f"{saved.dtype}{list(saved.shape)}" if isinstance(saved, np.ndarray) else type(saved).__name__
        raise ValueError(f"the saved {what} state is {kind}, not bytes (uint8[n])")
    return saved.tobytes()


def load_native(value, saved: object) -> None:
    """Write a :func:`native_state` back into ``value`` in place (the env and its renderer hold it),
    after checking that it fits: a ``ValueError`` naming what does not. A deque or list (even an
    empty one) is refilled with the saved rows."""
    kind = native_kind(value)
    if kind == "mjdata":
        load_mjdata(value, _as_bytes(saved, "MuJoCo"))
    elif kind == "ale":
        import ale_py

        try:
            state = ale_py.ALEState(_as_bytes(saved, "Atari emulator"))
            value.restoreState(state)
        except (RuntimeError, TypeError, SystemError) as e:
            why = "truncated, corrupt or another game's" if isinstance(e, SystemError) else str(e)  # untranslated
            raise ValueError(
                f"the saved Atari emulator state is refused by ale-py {ale_py.__version__} ({why})"
            ) from None
    else:
        load_arrays(value, saved)


def load_arrays(value: deque | list, saved: object) -> None:
    """Refill a deque or list of arrays (a frame stack, or a user env's list that grows) with the
    saved rows, in place: as many as were saved, each of this env's element shape and dtype."""
    if not isinstance(saved, np.ndarray) or saved.ndim == 0:
        raise ValueError(f"the saved arrays are a {type(saved).__name__}, not a stacked array")
    if value and (saved.shape[1:], saved.dtype) != (value[0].shape, value[0].dtype):
        raise ValueError(f"the saved arrays are {saved.dtype}{list(saved.shape[1:])} each, this env's "
                         f"{value[0].dtype}{list(value[0].shape)}")  # fmt: skip
    rows = list(saved.copy())
    if isinstance(value, deque):
        value.clear()
        value.extend(rows)
    else:
        value[:] = rows


def load_mjdata(data, saved: bytes) -> None:
    """Copy an ``MjData``'s serialised bytes into the env's own ``MjData``, after checking that
    they were taken from a model of the same sizes."""
    import mujoco

    new = mujoco.MjData.__new__(mujoco.MjData)
    warnings: list[str] = []  # MuJoCo's parser warns (into MUJOCO_LOG.TXT in the cwd, by default) before failing
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(warnings.append)
    try:
        new.__setstate__(saved)
    except Exception as e:  # noqa: BLE001 - MuJoCo's own parser: any failure is an unreadable state
        why = "; ".join([*warnings, str(e)])
        raise ValueError(f"the saved MuJoCo state cannot be read by mujoco {mujoco.__version__} ({why})") from None
    finally:
        mujoco.set_mju_user_warning(previous)
    sizes = ("nq", "nv", "na", "nu", "nbody", "nmocap", "nsensordata", "nuserdata", "nplugin", "nbuffer", "narena")
    differ = [f"{k} {getattr(new.model, k)} vs {getattr(data.model, k)}" for k in sizes
              if getattr(new.model, k) != getattr(data.model, k)]  # fmt: skip
    if differ:
        raise ValueError(f"the saved MuJoCo state is of another model ({', '.join(differ[:3])})")
    mujoco.mj_copyData(data, data.model, new)


class SimState(gym.Wrapper):
    """The outermost wrapper of every sub-env: reads and writes the state of the layers below it.

    ``pgrad_sim_state`` is a property, so gymnasium's ``get_attr`` / ``set_attr`` reach it in both
    vectorisation modes: in this process (sync) or in the env's subprocess (async), where the
    values travel pickled through gymnasium's pipe. It holds no state of its own. A MuJoCo env's
    ``MjData``, the Atari emulator and a frame stack (in any layer, under any name) are state too,
    held as :func:`native_state`'s arrays.
    """

    @property
    def pgrad_exact_state(self) -> bool:
        """False for Box2D, and for an Atari env with sticky actions (``repeat_action_probability``
        > 0, the v5 default): ALE's saved state holds its generator but not the last action taken,
        which a sticky step repeats (measured: 2 of 12 restored Pong-v5 runs diverged within 10
        steps, none without stickiness)."""
        env = self.env.unwrapped
        ale = getattr(env, "ale", None)
        sticky = native_kind(ale) == "ale" and ale.getFloat("repeat_action_probability") > 0
        return not (type(env).__module__.startswith(NATIVE_STATE) or sticky)

    def _layers(self):
        layer, depth = self.env, 0
        while True:
            yield f"layer{depth}", layer
            if not isinstance(layer, gym.Wrapper):
                return
            layer, depth = layer.env, depth + 1

    @property
    def pgrad_games(self) -> bool:
        """Whether a layer below counts games of several episodes (``pgrad.wrappers.AtariGame``)."""
        return any(getattr(layer, "pgrad_games", False) for _, layer in self._layers())

    @property
    def pgrad_attributes(self) -> list[str]:
        """Every attribute name of the layers below, whatever its value: what a saved state may set."""
        return [f"{name}.{key}" for name, layer in self._layers() for key in vars(layer)]

    @property
    def pgrad_sim_state(self) -> dict:
        return {f"{name}.{key}": value if isinstance(value, SIM_TYPES) else native_state(value)
                for name, layer in self._layers() for key, value in vars(layer).items()
                if isinstance(value, SIM_TYPES) or native_kind(value)}  # fmt: skip

    @property
    def pgrad_native_keys(self) -> list[str]:
        """The keys of ``pgrad_sim_state`` that hold a :func:`native_state`, checked when loaded (an
        MjData's bytes vary in length with the arena in use: a saved one may be longer or shorter
        than a fresh env's)."""
        return [f"{name}.{key}" for name, layer in self._layers() for key, value in vars(layer).items()
                if native_kind(value)]  # fmt: skip

    @pgrad_sim_state.setter
    def pgrad_sim_state(self, state: dict) -> None:
        layers = dict(self._layers())
        for full_key, value in state.items():
            name, key = full_key.split(".", 1)
            current = getattr(layers[name], key, None)
            if native_kind(current) or (isinstance(current, (deque, list)) and isinstance(value, np.ndarray)):
                load_native(current, value)  # in place (a list of arrays may be empty after the reset)
            else:
                setattr(layers[name], key, value)


class VecEnv:
    """A gymnasium vector env of ``n_envs`` copies, seeded ``seed + i``, autoreset SAME_STEP.

    ``step`` returns ``(obs, rewards, terminated, truncated, next_obs)`` as numpy arrays:
    ``obs`` is what to act on next (a reset observation where an episode ended) and ``next_obs``
    the real successor of the step taken (the final observation there). Both are normalised when
    normalisation is on. Finished episodes' raw returns and lengths collect in
    ``episode_returns`` / ``episode_lengths`` until ``pop_episodes()``; ``ended`` marks the envs
    whose recorded episode ended at the last step. For envs of games (``AtariGame``: an episode
    per life, clipped rewards) the episodes recorded are the games, with their own scores.
    """

    def __init__(
        self,
        env: EnvSpec | str,
        n_envs: int,
        seed: int,
        vectorization: str = "sync",
        normalize_obs: bool = False,
        normalize_reward: bool = False,
        gamma: float = 0.99,
        action_mode: str = "clip",
        env_kwargs: dict | None = None,
        images: str = "auto",
    ):
        spec = env if isinstance(env, EnvSpec) and not env_kwargs else EnvSpec.from_user(env, env_kwargs)
        if vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if spec.instance is not None and (n_envs != 1 or vectorization != "sync"):
            raise ValueError(
                f"an env instance ({spec.name}) trains with n_envs=1 and vectorization='sync' only; for "
                f"n_envs={n_envs} pass a factory that makes a new env each call (the class, or a function)"
            )
        self.spec, self.n_envs, self.seed = spec, n_envs, seed
        env_fns = [functools.partial(make_sub_env, spec) for _ in range(n_envs)]
        vector = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
        with missing_packages(spec.name):
            try:
                self.envs = vector(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                if vectorization == "sync" or "pickl" not in str(e).lower():
                    raise
                raise ValueError(
                    f"vectorization='async' runs each env in a subprocess and needs a picklable factory; "
                    f"{spec.name} is not ({e}): use vectorization='sync' or an importable factory"
                ) from None
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        check_spaces(self.observation_space, self.action_space, spec.name, images)
        self.action_space.seed(seed)
        self.layout = ObsLayout(self.observation_space, images)
        self.obs_shape, self.obs_dtype = self.layout.shape, self.layout.torch_dtype  # one stored observation
        numeric = self.layout.numeric_shape
        if normalize_obs and numeric is None:
            raise ValueError(
                f"normalize_obs=True is invalid for {spec.name}: its observations {describe(self.observation_space)} "
                "have no Box part that is not an image (images are scaled by 1/255, indices one-hot)"
            )
        self.normalizer = Normalizer(numeric or (0,), normalize_obs, normalize_reward, gamma, layout=self.layout)
        self.action_map = ActionMap(self.action_space, action_mode)
        self.games = all(self.envs.get_attr("pgrad_games"))
        self.ended = np.zeros(n_envs, bool)
        self._ep_return = np.zeros(n_envs, np.float64)
        self._ep_length = np.zeros(n_envs, np.int64)
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []

    def reset(self, seed: int | None | str = "initial", raw: bool = False) -> np.ndarray:
        """Reset every env. The default seeds them (sub-env i gets ``seed + i``, item 46);
        ``seed=None`` starts new episodes from the RNG state the seeded reset left. ``raw``: the
        observations as the env gives them (the statistics are updated all the same)."""
        obs, _ = self.envs.reset(seed=self.seed if seed == "initial" else seed)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        obs = self.layout.store(obs, self.n_envs)
        self.normalizer.update_obs(obs)
        return obs if raw else self.normalizer.obs(obs)

    def step(self, actions: np.ndarray, raw: bool = False) -> tuple[np.ndarray, ...]:
        """``raw``: observations and rewards as the env gives them, while the normalisation
        statistics are updated as usual (a replay buffer normalises them when sampling)."""
        obs, rewards, terminated, truncated, infos = self.envs.step(self.action_map(actions))
        obs = self.layout.store(obs, self.n_envs)
        dones = terminated | truncated
        next_obs = obs
        if dones.any():
            next_obs = obs.copy()
            ended = infos["_final_obs"]
            next_obs[ended] = np.stack([self.layout.store_one(o) for o in infos["final_obs"][ended]])
        self._ep_return += rewards
        self._ep_length += 1
        self.ended = dones
        if dones.any() and self.games:  # a game's end, with its own score (the step's info of a done env)
            final = infos["final_info"]
            self.ended = dones & final.get("game_over", np.zeros_like(dones))
            if self.ended.any():
                self.episode_returns += [float(r) for r in final["game_return"][self.ended]]
                self.episode_lengths += [int(n) for n in final["game_length"][self.ended]]
        elif dones.any():
            self.episode_returns += [float(r) for r in self._ep_return[dones]]
            self.episode_lengths += [int(n) for n in self._ep_length[dones]]
        self._ep_return[dones] = 0.0
        self._ep_length[dones] = 0
        norm = self.normalizer
        if raw:
            norm.update_obs(obs)
            norm.observe_rewards(rewards, dones)
            return obs, rewards.astype(np.float32, copy=False), terminated, truncated, next_obs
        if norm.normalize_obs:
            norm.update_obs(obs)
            next_obs = norm.obs(next_obs) if next_obs is not obs else None
            obs = norm.obs(obs)
            next_obs = obs if next_obs is None else next_obs
        rewards = norm.reward(rewards.astype(np.float32, copy=False), dones)
        return obs, rewards, terminated, truncated, next_obs

    @property
    def exact_state(self) -> bool:
        """Whether ``sim_state`` holds all of the sub-envs' state (MuJoCo's and the Atari emulator's
        included; not Box2D's)."""
        return all(self.envs.get_attr("pgrad_exact_state"))

    def sim_state(self) -> dict:
        """The sub-envs' own state, ``{"env{i}.layer{depth}.{attribute}": value}``: plain numeric
        attributes (e.g. CartPole's ``state``, a TimeLimit's ``_elapsed_steps``) and each env's random
        generator, read through :class:`SimState` in this process (sync) or the env's (async)."""
        return {f"env{i}.{key}": value for i, state in enumerate(self.envs.get_attr("pgrad_sim_state"))
                for key, value in state.items()}  # fmt: skip

    def fresh_sim_state(self) -> tuple[dict, set[str]]:
        """``(sim_state, attribute names)`` after a seeded reset of the sub-envs (not of the
        statistics), when the layers have the attributes a stepped env has: the structure a
        saved state must fit (a native state, checked when loaded, is None there)."""
        self.envs.reset(seed=self.seed)
        names = {f"env{i}.{key}" for i, keys in enumerate(self.envs.get_attr("pgrad_attributes")) for key in keys}
        native = {f"env{i}.{key}" for i, keys in enumerate(self.envs.get_attr("pgrad_native_keys")) for key in keys}
        return {k: None if k in native else v for k, v in self.sim_state().items()}, names

    def load_sim_state(self, state: dict) -> None:
        """Write a saved ``sim_state`` back into reset sub-envs. A saved key that the run's own envs
        do not have, or a value of another kind than plain numbers, arrays and generators, is
        refused (``ValueError``): a checkpoint never chooses what it sets."""
        _, names = self.fresh_sim_state()
        unknown = sorted(set(state) - names)
        if unknown:
            raise ValueError(f"the saved env state names attributes this run's envs do not have: {unknown[:3]}")
        for key, value in state.items():
            if not isinstance(value, SIM_TYPES):
                raise ValueError(
                    f"the saved environment state {key} is a {type(value).__name__}, not a number or array"
                )
        per_env: list[dict] = [{} for _ in range(self.n_envs)]
        for key, value in state.items():
            env, rest = key.split(".", 1)
            per_env[int(env[3:])][rest] = value
        self.envs.set_attr("pgrad_sim_state", per_env)

    def pop_episodes(self) -> tuple[list[float], list[int]]:
        returns, lengths = self.episode_returns, self.episode_lengths
        self.episode_returns, self.episode_lengths = [], []
        return returns, lengths

    def close(self) -> None:
        self.envs.close()


def make_sub_env(spec: EnvSpec) -> gym.Env:
    """One sub-env of a vector env: the spec's env with :class:`SimState` outermost."""
    return SimState(spec.make())


def make_vec_env(
    env_id: EnvSpec | str,
    n_envs: int = 1,
    seed: int = 0,
    vectorization: str = "sync",
    normalize_obs: bool = False,
    normalize_reward: bool = False,
    gamma: float = 0.99,
    action_mode: str = "clip",
    env_kwargs: dict | None = None,
    images: str = "auto",
) -> VecEnv:
    """Build a :class:`VecEnv`; normalisation is off unless asked for."""
    return VecEnv(
        env_id, n_envs, seed, vectorization, normalize_obs, normalize_reward, gamma, action_mode, env_kwargs, images
    )
