"""Twin Delayed DDPG (Fujimoto et al. 2018): DDPG with its three fixes.

y = r + γ (1 − d) min_{i=1,2} Q'_i(s', ã'),   ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)
critics: min Σ_i E[(Q_i(s, a) − y)²]
actor (every d critic updates): max E[Q_1(s, μ(s))]; targets soft-updated then too
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from pgrad.config import DeterministicConfig, critic_options, critic_sizes, non_negative, positive_int
from pgrad.envs import require_box
from pgrad.estimators import td_target
from pgrad.networks import DeterministicActor, QEnsemble, frozen, observation_for, soft_update
from pgrad.noise import make_noise
from pgrad.optim import adam


@dataclass(frozen=True)
class TD3Config(DeterministicConfig):
    """TD3: clipped double Q, target policy smoothing, delayed actor updates."""

    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_policy_noise: float = 0.2
    """σ̃ of the smoothing noise on the target action."""
    target_noise_clip: float = 0.5
    """c: the smoothing noise is clipped to [−c, c]."""

    def validate(self) -> None:
        super().validate()
        positive_int("policy_delay", self.policy_delay)
        non_negative("target_policy_noise", self.target_policy_noise)
        non_negative("target_noise_clip", self.target_noise_clip)


class TD3:
    action_mode = "rescale"

    def __init__(self, cfg: TD3Config, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        action_dim = require_box("td3", action_space)
        obs_dim, obs = observation_for(cfg, observation_space)
        self.actor = DeterministicActor(
            obs_dim, action_dim, cfg.hidden_sizes, obs, cfg.activation, network=cfg.network
        ).to(device)
        critic = QEnsemble(obs_dim, action_dim, critic_sizes(cfg), k=2, observation=obs, **critic_options(cfg))
        self.critic = critic.to(device)  # Q_1, Q_2
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.learning_rate)
        self.noise = make_noise(cfg.noise, cfg.n_envs, action_dim, cfg.noise_std, cfg.seed + 2, cfg.ou_theta)
        self.generator = torch.Generator(device).manual_seed(cfg.seed + 3)
        self.updates = 0
        self.actor_loss = torch.tensor(0.0)  # the last delayed actor step's loss, logged between them
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
            # target policy smoothing: ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1)
            eps = torch.randn(actions.shape, generator=self.generator, device=actions.device) * cfg.target_policy_noise
            next_actions = (
                self.actor_target(next_obs) + eps.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            ).clamp(-1, 1)
            # clipped double Q: y = r + γ (1 − d) min_i Q'_i(s', ã')
            next_q = self.critic_target(next_obs, next_actions).amin(0)
            target_q = td_target(batch["rewards"], batch["terminated"], next_q, batch.get("discount", cfg.gamma))
        q = self.critic(obs, actions)  # [2, B]
        critic_loss = (q - target_q).pow(2).mean(-1).sum()  # Σ_i E[(Q_i(s, a) − y)²]
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        if self.updates % cfg.policy_delay == 0:  # updates 0, d, 2d, …
            with frozen(self.critic):
                # delayed actor: max E[Q_1(s, μ(s))]
                actor_loss = -self.critic.member(0, obs, self.actor(obs)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            self.actor_loss = actor_loss.detach()
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        values = torch.stack([critic_loss.detach(), self.actor_loss, q[0].detach().mean()]).tolist()
        return dict(zip(("losses/critic_loss", "losses/actor_loss", "losses/q_mean"), values, strict=True))
