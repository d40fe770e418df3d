"""A trained agent: the policy network, its observation normalisation and the env's action space.

``agent.act(obs)`` takes what the env returns (one observation or a batch) and gives what the env
takes. ``agent.save(dir)`` / ``pgrad.load(dir)`` round-trip through safetensors + JSON only.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pgrad import checkpoint
from pgrad.config import flag, in_range, plain, positive, positive_int
from pgrad.envs import ActionMap, Normalizer
from pgrad.envspec import EnvSpec
from pgrad.networks import (
    ActorCritic,
    CategoricalActor,
    DeterministicActor,
    RecurrentActorCritic,
    SquashedGaussianActor,
    reset_where,
)
from pgrad.spaces import ObsLayout, space_from_json, space_to_json

POLICY_CLASSES: dict[str, type[torch.nn.Module]] = {
    cls.__name__: cls
    for cls in (ActorCritic, RecurrentActorCritic, DeterministicActor, SquashedGaussianActor, CategoricalActor)
}


def check_normalizer(settings: dict[str, Any], stats: dict[str, np.ndarray], obs_shape: tuple[int, ...]) -> None:
    """A saved normaliser's settings and statistics are the kind training writes; ``obs_shape`` is
    what it normalises (``ObsLayout.numeric_shape``, ``(0,)`` where nothing is numeric)."""
    flag("normalize_obs", settings.get("normalize_obs"))  # checked as the config's fields are
    flag("normalize_reward", settings.get("normalize_reward"))
    in_range("gamma", settings.get("gamma"), 0.0, 1.0)
    positive("clip_obs", settings.get("clip_obs"))
    positive("clip_reward", settings.get("clip_reward"))
    unknown = set(settings) - {"normalize_obs", "normalize_reward", "gamma", "clip_obs", "clip_reward"}
    if unknown:
        raise ValueError(f"normalizer has unknown settings {sorted(unknown)}")
    shapes = {"obs_rms.mean": obs_shape, "obs_rms.var": obs_shape, "obs_rms.count": (),
              "return_rms.mean": (), "return_rms.var": (), "return_rms.count": ()}  # fmt: skip
    for name, shape in shapes.items():
        if name not in stats or stats[name].shape != shape:
            raise ValueError(f"normalizer statistic {name} is missing or not of shape {shape}")
    if (stats["obs_rms.var"] < 0).any() or stats["return_rms.var"] < 0 or stats["obs_rms.count"] <= 0:
        raise ValueError("normalizer statistics hold a negative variance or a count <= 0")


class Agent:
    """What ``pgrad.train`` returns and ``pgrad.load`` reads back."""

    def __init__(
        self,
        algo: str,
        env_id: str,
        policy: torch.nn.Module,
        observation_space: gym.Space,
        action_space: gym.Space,
        normalizer: Normalizer,
        action_mode: str = "clip",
        config: dict[str, Any] | None = None,
    ):
        self.algo, self.env_id, self.policy = algo, env_id, policy
        self.observation_space, self.action_space = observation_space, action_space
        self.normalizer, self.action_mode = normalizer, action_mode
        self.action_map = ActionMap(action_space, action_mode)
        self.layout = ObsLayout(observation_space, (config or {}).get("images", "auto"))
        self.config = config or {}
        self.device = next(policy.parameters()).device
        self.env_spec: EnvSpec | None = None  # the live spec of a run in this process (a lambda, say)
        self.user_spec: EnvSpec | None = None  # the same before pgrad's preprocessing (to train on again)
        self.run_dir: os.PathLike | None = None  # the run directory it was trained or loaded in
        self.env_record: dict[str, Any] = {"id": env_id}  # what agent.json records (rebuilt on evaluation)

    def make_env_spec(self) -> EnvSpec:
        """The env to evaluate on: the live spec, else the recorded one, whose modules this imports
        (as ``pgrad eval RUN`` does for the user's own run). A spec without an import path
        (a lambda, a local class, an instance) says how to evaluate instead."""
        if self.env_spec is not None:
            return self.env_spec.for_evaluation()
        if not self.env_record.get("recordable", True):
            raise ValueError(
                f"this agent's env {self.env_record.get('name')!r} has no import path (a lambda, a local class or an "
                "instance): evaluate it with pgrad.evaluate(agent, env=...) or pgrad eval RUN --env module:Factory"
            )
        return EnvSpec.from_json(self.env_record)

    @property
    def recurrent(self) -> bool:
        """Whether the policy carries a state from step to step (``rnn``): then ``act`` takes and
        returns it."""
        return getattr(self.policy, "recurrent", False)

    def act(self, obs: Any, deterministic: bool = True, state: Any = None, episode_start: Any = None) -> Any:
        """Env actions for one observation or a batch, as the env gives them (a dict of arrays for a
        Dict space, uint8 images as they are); one action, or a batch of them.

        Observations are normalised with the statistics frozen at save time (CHECKLIST item 45).

        A recurrent agent returns ``(actions, state)``, as SB3's ``predict``: pass the state back
        with the next observation, and ``episode_start`` (a bool, or one per observation) where an
        episode starts, which resets that env's state; ``state=None`` starts every env's episode.
        """
        flag("deterministic", deterministic)
        if not self.recurrent and (state is not None or episode_start is not None):
            raise ValueError(
                "state and episode_start are a recurrent agent's (rnn); this agent's policy is feed-forward"
            )
        batch, single = self.layout.batch_of(obs)
        batch = torch.as_tensor(self.normalizer.obs(batch), device=self.device)
        if self.recurrent:
            h = reset_where(self._state(state, len(batch), single), self._starts(episode_start, len(batch)))
            actions, h = self.policy.predict(batch, h, deterministic)
            state = h.cpu().numpy()[0] if single else h.cpu().numpy()
        else:
            actions = self.policy.predict(batch, deterministic)
        actions = self.action_map(actions.cpu().numpy())
        if single:
            actions = int(actions[0]) if self.action_map.discrete else actions[0]
        return (actions, state) if self.recurrent else actions

    def _state(self, state: Any, batch: int, single: bool) -> torch.Tensor:
        """A user's recurrent state, checked: ``[batch, K, H]`` (``[K, H]`` for one observation)."""
        initial = self.policy.initial_state(batch)
        if state is None:
            return initial
        shape = tuple(initial.shape[1:]) if single else tuple(initial.shape)
        try:
            array = np.asarray(state, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(
                f"state must be the array act() returned, of shape {shape}; got {type(state).__name__}"
            ) from None
        if array.shape != shape:
            raise ValueError(
                f"state of shape {array.shape} does not fit this agent's {shape}: pass back what act() returned"
            )
        if not np.isfinite(array).all():
            raise ValueError("state holds NaN or inf: pass back what act() returned")
        return torch.as_tensor(array, device=self.device).reshape(initial.shape)

    def _starts(self, episode_start: Any, batch: int) -> torch.Tensor:
        """Which envs start an episode at this observation: ``[batch]`` bools (None: none does)."""
        if episode_start is None:
            return torch.zeros(batch, dtype=torch.bool, device=self.device)
        starts = np.asarray(episode_start)
        if starts.shape not in ((), (batch,)) or not (starts.dtype == bool or np.isin(starts, (0, 1)).all()):
            raise ValueError(
                f"episode_start must be a bool or {batch} bools (one per observation); got {episode_start!r}"
            )
        return torch.as_tensor(np.broadcast_to(starts.astype(bool), (batch,)).copy(), device=self.device)

    def learn(self, steps: int, callbacks: Any = None, env: Any = None) -> Agent:
        """Train ``steps`` more env steps in this agent's run directory, from its run's last checkpoint
        (SB3's ``model.learn(steps, reset_num_timesteps=False)``): the run goes on exactly as one
        started with the larger total would, up to a linear schedule now spanning the new total.
        ``pgrad.train`` keeps the final checkpoint this needs (``save_final_checkpoint``); an agent
        from ``pgrad.load(run)`` continues that run. ``env``: the run's env again where it has no
        import path. This agent becomes the further-trained one, and is returned."""
        from pgrad.train import resume

        positive_int("steps", plain(steps))
        if self.run_dir is None:
            raise ValueError("this agent has no run directory to continue (it was not trained or loaded from a run)")
        done = checkpoint.checkpoint_step(self.run_dir)
        trained = resume(
            self.run_dir,
            env=self.user_spec if env is None else env,
            total_steps=done + plain(steps),
            callbacks=callbacks,
        )
        self.__dict__.update(trained.__dict__)
        return self

    def save(self, directory: str | os.PathLike, best: dict[str, Any] | None = None) -> None:
        """Write ``model.safetensors`` + ``agent.json`` into ``directory``; with ``best`` (the evaluation
        it won: step, mean return), the best model's files ``best_model.safetensors`` + ``best_agent.json``."""
        tensors = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        tensors |= {f"normalizer.{k}": torch.as_tensor(v) for k, v in self.normalizer.state_dict().items()}
        norm = self.normalizer
        meta = {
            "algo": self.algo,
            "env_id": self.env_id,
            "policy_class": type(self.policy).__name__,
            "policy_spec": self.policy.spec,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "action_mode": self.action_mode,
            "normalizer": {
                "normalize_obs": norm.normalize_obs,
                "normalize_reward": norm.normalize_reward,
                "gamma": norm.gamma,
                "clip_obs": norm.clip_obs,
                "clip_reward": norm.clip_reward,
            },
            "config": self.config,
            "env_spec": self.env_spec.to_json() if self.env_spec is not None else self.env_record,
        }
        if best is not None:
            checkpoint.save(directory, tensors, meta | {"best": best}, checkpoint.BEST_FILES)
        else:
            checkpoint.save(directory, tensors, meta)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu", best: bool = False) -> Agent:
        device = check_device(device)
        tensors, meta = checkpoint.load(directory, checkpoint.BEST_FILES if best else checkpoint.DEFAULT_FILES)
        try:
            for field in ("algo", "env_id"):
                if not isinstance(meta.get(field), str):
                    raise ValueError(f"{field}={meta.get(field)!r} is not a name")
            if meta.get("action_mode") not in ("clip", "rescale"):
                raise ValueError(f"action_mode={meta.get('action_mode')!r} is not 'clip' or 'rescale'")
            policy_class = POLICY_CLASSES[meta["policy_class"]]
            weights = {k[7:]: v for k, v in tensors.items() if k.startswith("policy.")}
            with torch.device("meta"):  # the architecture first, without memory: it must fit the weights
                shapes = {k: v.shape for k, v in policy_class.from_spec(meta["policy_spec"]).state_dict().items()}
            if shapes != {k: v.shape for k, v in weights.items()}:
                raise ValueError(f"the weights in {checkpoint.MODEL_FILE} do not fit its policy_spec")
            policy = policy_class.from_spec(meta["policy_spec"])
            policy.load_state_dict(weights)
            obs_space = space_from_json(meta["observation_space"])
            images = (meta.get("config") or {}).get("images", "auto")
            layout = ObsLayout(obs_space, images)
            stats = {k[11:]: v.numpy() for k, v in tensors.items() if k.startswith("normalizer.")}
            check_normalizer(meta["normalizer"], stats, layout.numeric_shape or (0,))
            normalizer = Normalizer(layout.numeric_shape or (0,), **meta["normalizer"], training=False, layout=layout)
            normalizer.load_state_dict(stats)
            agent = cls(
                meta["algo"],
                meta["env_id"],
                policy.to(device).eval(),
                obs_space,
                space_from_json(meta["action_space"]),
                normalizer,
                meta["action_mode"],
                meta.get("config"),
            )
            record = meta.get("env_spec", {"id": meta["env_id"]})
            if not isinstance(record, dict):
                raise ValueError(f"env_spec={record!r} is not an object")
            agent.env_record = record  # not imported here: loading never imports a module
            agent.run_dir = directory
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
            raise checkpoint.CheckpointError(
                f"{directory}: the saved agent is invalid or not of this pgrad ({type(e).__name__}: {e})"
            ) from None
        return agent


def check_device(device: str | torch.device) -> torch.device:
    """A torch device this machine has (cpu, cuda, cuda:N, mps); ``ValueError`` naming what is available
    otherwise."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is invalid: use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={str(device)!r} is invalid: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} is invalid here: torch sees no CUDA device (use 'cpu')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={str(device)!r} is invalid: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device={str(device)!r} is invalid here: torch has no MPS (Apple GPU) backend (use 'cpu')")
    return device


def load(directory: str | os.PathLike, device: str | torch.device = "cpu", best: bool = False) -> Agent:
    """Load an agent saved by ``Agent.save`` (or a run directory of ``pgrad train``); ``best``: the
    run's best model (the best evaluation during training) instead of the final one."""
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise ValueError(f"directory={directory!r} is invalid: the path of a saved agent or run directory")
    flag("best", best)
    return Agent.load(directory, device, best)
