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
from pgrad.envs import ActionMap, Normalizer
from pgrad.networks import ActorCritic, CategoricalActor, DeterministicActor, SquashedGaussianActor

POLICY_CLASSES: dict[str, type[torch.nn.Module]] = {
    cls.__name__: cls for cls in (ActorCritic, DeterministicActor, SquashedGaussianActor, CategoricalActor)
}


def space_to_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(), "shape": list(space.shape)}


def space_from_json(data: dict[str, Any]) -> gym.Space:
    if data["type"] == "Discrete":
        return gym.spaces.Discrete(data["n"])
    return gym.spaces.Box(np.array(data["low"], np.float32), np.array(data["high"], np.float32), dtype=np.float32)


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
        self.config = config or {}
        self.device = next(policy.parameters()).device

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray | int:
        """Env actions for one observation ``[obs_dim]`` or a batch ``[B, obs_dim]``.

        Observations are normalised with the statistics frozen at save time (CHECKLIST item 45).
        """
        obs = np.asarray(obs, dtype=np.float32)
        expected = self.observation_space.shape
        single = obs.shape == expected
        if not single and obs.shape[1:] != expected:
            raise ValueError(
                f"observation of shape {obs.shape} does not fit the agent's {expected} (or a batch of them)"
            )
        batch = obs[None] if single else obs
        batch = self.normalizer.obs(batch)
        actions = self.policy.predict(torch.as_tensor(batch, device=self.device), deterministic).cpu().numpy()
        actions = self.action_map(actions)
        if single:
            return int(actions[0]) if self.action_map.discrete else actions[0]
        return actions

    def save(self, directory: str | os.PathLike) -> None:
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
        }
        checkpoint.save(directory, tensors, meta)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Agent:
        tensors, meta = checkpoint.load(directory)
        try:
            policy = POLICY_CLASSES[meta["policy_class"]].from_spec(meta["policy_spec"])
            policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy.")})
            obs_space = space_from_json(meta["observation_space"])
            normalizer = Normalizer(obs_space.shape, **meta["normalizer"], training=False)
            normalizer.load_state_dict({k[11:]: v.numpy() for k, v in tensors.items() if k.startswith("normalizer.")})
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
        except (KeyError, TypeError, RuntimeError, ValueError) as e:
            raise checkpoint.CheckpointError(
                f"{directory}: saved agent does not match this pgrad ({type(e).__name__}: {e})"
            ) from None
        return agent


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Agent:
    """Load an agent saved by ``Agent.save`` (or a run directory of ``pgrad train``)."""
    return Agent.load(directory, device)
