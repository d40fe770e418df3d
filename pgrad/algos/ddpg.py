"""Deep Deterministic Policy Gradient (notes: "Deep Deterministic Policy Gradient (DDPG)").

    critic:  min E[(Q(s, a) − y)²],   y = r + γ (1 − d) Q'(s', μ'(s'))
    actor:   max E[Q(s, μ(s))]        (the deterministic policy gradient ∇_a Q · ∇_θ μ)
    targets: θ' ← τθ + (1 − τ)θ'

Exploration adds Gaussian or Ornstein–Uhlenbeck noise to μ(s) in the [−1, 1] action scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.config import DeterministicConfig, critic_options, critic_sizes
from pgrad.envs import require_box
from pgrad.estimators import td_target
from pgrad.networks import DeterministicActor, QEnsemble, frozen, observation_for, soft_update
from pgrad.noise import make_noise
from pgrad.optim import adam


@dataclass(frozen=True)
class DDPGConfig(DeterministicConfig):
    """DDPG: one critic, a deterministic actor, target networks, exploration noise."""


class DDPG:
    action_mode = "rescale"

    def __init__(self, cfg: DDPGConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        action_dim = require_box("ddpg", action_space)
        obs_dim, obs = observation_for(cfg, observation_space)
        self.actor = DeterministicActor(
            obs_dim, action_dim, cfg.hidden_sizes, obs, cfg.activation, network=cfg.network
        ).to(device)
        critic = QEnsemble(obs_dim, action_dim, critic_sizes(cfg), k=1, observation=obs, **critic_options(cfg))
        self.critic = critic.to(device)  # Q = member 0
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.learning_rate)
        self.noise = make_noise(cfg.noise, cfg.n_envs, action_dim, cfg.noise_std, cfg.seed + 2, cfg.ou_theta)
        self.policy = self.actor

    def explore(self, obs: Tensor) -> np.ndarray:
        """μ(s) + noise, clipped to [−1, 1]."""
        return np.clip(self.actor(obs).cpu().numpy() + self.noise(), -1.0, 1.0)

    def episodes_ended(self, envs: np.ndarray) -> None:
        self.noise.reset(envs)

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.cfg
        obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        with torch.no_grad():
            # DDPG target: y = r + γ (1 − d) Q'(s', μ'(s'))
            target_q = td_target(
                batch["rewards"],
                batch["terminated"],
                self.critic_target.member(0, next_obs, self.actor_target(next_obs)),
                batch.get("discount", cfg.gamma),
            )
        q = self.critic.member(0, obs, actions)
        critic_loss = F.mse_loss(q, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        with frozen(self.critic):
            # actor: max E[Q(s, μ(s))]
            actor_loss = -self.critic.member(0, obs, self.actor(obs)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        soft_update(self.actor_target, self.actor, cfg.tau)
        soft_update(self.critic_target, self.critic, cfg.tau)
        values = torch.stack([critic_loss, actor_loss, q.mean()]).detach().tolist()
        return dict(zip(("losses/critic_loss", "losses/actor_loss", "losses/q_mean"), values, strict=True))
