"""CrossQ (Bhatt et al., "CrossQ: Batch Normalization in Deep Reinforcement Learning for Greater
Sample Efficiency and Simplicity", ICLR 2024): SAC without target networks.

The critics and the actor carry Batch Renormalization layers; the current and next state-action
batches go through the critics *together*, so that the normalisation statistics are those of both
distributions (the reason target networks can go):

    [Q_i(s, a); Q_i(s', a')] = Q_i([s; s'], [a; a'])   in training mode,  a' ~ π(·|s') (π in evaluation mode)
    Q_i:  min Σ_i E[(Q_i(s, a) − y)²],   y = r + γ (1 − d) (min_i sg[Q_i(s', a')] − α log π(a'|s'))
    π:    min E[α log π(ã|s) − min_i Q_i(s, ã)]   every ``policy_delay`` critic steps (π in training
          mode, the critics in evaluation mode), α learned as SAC's: min E[−log α · (log π(ã|s) + H̄)]

sg[·] stops the gradient. No Polyak averaging (``tau`` is unused); Adam with β₁ = 0.5; wide critics
(1024 × 1024 here and in sb3-contrib; 2048 × 2048 in the paper). The actor, the temperature and the
exploration are SAC's (:mod:`pgrad.algos.sac`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor

from pgrad.algos.sac import SAC, SACConfig, Temperature
from pgrad.config import in_range, require
from pgrad.envs import require_box
from pgrad.estimators import td_target
from pgrad.networks import QEnsemble, SquashedGaussianActor, observation_for
from pgrad.optim import adam


@dataclass(frozen=True)
class CrossQConfig(SACConfig):
    """CrossQ's defaults, as sb3-contrib's (tau is unused: there are no target networks)."""

    learning_rate: float = 1e-3
    """Learning rate of the actor, the critics and the temperature (Adam, β₁ = adam_beta1)."""
    critic_hidden_sizes: tuple[int, ...] | None = (1024, 1024)
    """Hidden layer sizes of the (wide) critics."""
    policy_delay: int = 3
    """Critic steps per actor (and temperature) step (CrossQ's 3)."""
    adam_beta1: float = 0.5
    """Adam's β₁ for every optimiser (CrossQ's 0.5; 0.9 is Adam's default)."""
    batch_norm_momentum: float = 0.01
    """m, the rate of BatchRenorm's running statistics."""
    batch_norm_eps: float = 1e-3
    """ε added to the variances."""
    renorm_warmup_steps: int = 100_000
    """Batches normalised with their own statistics only (plain batch norm) before renormalisation."""

    def validate(self) -> None:
        require("variant", self.variant, self.variant == "v2", "must be v2 (CrossQ is SAC v2 without targets)")
        super().validate()
        in_range("adam_beta1", self.adam_beta1, 0.0, 1.0, high_open=True)
        in_range("batch_norm_momentum", self.batch_norm_momentum, 0.0, 1.0, low_open=True)
        in_range("batch_norm_eps", self.batch_norm_eps, 0.0, 1.0, low_open=True)
        require("renorm_warmup_steps", self.renorm_warmup_steps, isinstance(self.renorm_warmup_steps, int)
                and self.renorm_warmup_steps >= 0, "must be an integer >= 0")  # fmt: skip
        require("critic_layer_norm", self.critic_layer_norm, not self.critic_layer_norm,
                "must be False: CrossQ's critics are batch-renormalised")  # fmt: skip
        require("critic_dropout", self.critic_dropout, self.critic_dropout == 0, "must be 0 with CrossQ")
        require(
            "network", self.network, self.network == "mlp", "must be 'mlp': CrossQ's networks are batch-renormalised"
        )
        require("use_sde", self.use_sde, not self.use_sde, "must be False with CrossQ (not implemented for it)")


class CrossQ(SAC):
    action_mode = "rescale"

    def __init__(self, cfg: CrossQConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        action_dim = require_box("crossq", action_space)
        obs_dim, obs = observation_for(cfg, observation_space)
        renorm = dict(momentum=cfg.batch_norm_momentum, eps=cfg.batch_norm_eps, warmup_steps=cfg.renorm_warmup_steps)
        actor = SquashedGaussianActor(obs_dim, action_dim, cfg.hidden_sizes, obs, cfg.activation, renorm)
        critic = QEnsemble(obs_dim, action_dim, cfg.critic_hidden_sizes or cfg.hidden_sizes, k=2, observation=obs,
                           activation=cfg.activation, batch_renorm=renorm)  # fmt: skip
        self.actor, self.critic = actor.to(device).eval(), critic.to(device).eval()  # evaluation mode but in updates
        betas = (cfg.adam_beta1, 0.999)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.learning_rate, betas=betas)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.learning_rate, betas=betas)
        target = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.temperature = Temperature(cfg.ent_coef, cfg.ent_coef_init, target, cfg.learning_rate, device)  # Adam's β
        self.generator = torch.Generator(device).manual_seed(cfg.seed + 3)
        self.policy = self.actor
        self.updates = 0
        self.actor_loss, self.alpha_logged = torch.tensor(0.0), self.temperature.alpha  # the last actor step's

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.cfg
        obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        alpha = self.temperature.alpha
        with torch.no_grad():
            next_actions, next_log_prob = self.actor(next_obs).rsample_with_log_prob(self.generator)
        # one pass of [s; s'], [a; a'] in training mode: BatchRenorm normalises both with joint statistics
        self.critic.train()
        q_all = self.critic(torch.cat([obs, next_obs]), torch.cat([actions, next_actions]))  # [2, 2B]
        self.critic.eval()
        q, next_q = q_all[:, : len(obs)], q_all[:, len(obs) :].detach()
        with torch.no_grad():
            # y = r + γ (1 − d) (min_i sg[Q_i(s', a')] − α log π(a'|s'))
            next_v = next_q.amin(0) - alpha * next_log_prob
            target_q = td_target(batch["rewards"], batch["terminated"], next_v, batch.get("discount", cfg.gamma))
        critic_loss = (q - target_q).pow(2).mean(-1).sum()  # Σ_i E[(Q_i(s, a) − y)²]
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.updates += 1

        if self.updates % cfg.policy_delay == 0:  # updates d, 2d, … (sb3-contrib's count)
            self.actor.train()
            self.actor_loss, log_prob, _ = self._actor_step(obs, alpha)  # the critics in evaluation mode
            self.actor.eval()
            self.temperature.update(log_prob)
            self.alpha_logged = alpha
        metrics = [critic_loss.detach(), self.actor_loss, q[0].detach().mean(), self.alpha_logged]
        names = ("losses/critic_loss", "losses/actor_loss", "losses/q_mean", "losses/alpha")
        return dict(zip(names, torch.stack(metrics).tolist(), strict=True))
