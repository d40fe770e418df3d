"""Deep Deterministic Policy Gradient (notes: "Deep Deterministic Policy Gradient (DDPG)").

    critic:  min E[(Q(s, a) − y)²],   y = r + γ (1 − d) Q'(s', μ'(s'))
    actor:   max E[Q(s, μ(s))]        (the deterministic policy gradient ∇_a Q · ∇_θ μ)
    targets: θ' ← τθ + (1 − τ)θ'

Exploration adds Gaussian or Ornstein–Uhlenbeck noise to μ(s) in the [−1, 1] action scale.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.config import DeterministicConfig, critic_options, critic_sizes
from pgrad.envs import require_box
from pgrad.estimators import td_target
from pgrad.networks import DeterministicActor, QEnsemble, frozen, observation_for, polyak_, soft_update
from pgrad.noise import make_noise
from pgrad.optim import adam, step_together
from pgrad.stack import StackedParameters, check_plain, seed_noise, stack_batches, stacked_call


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


NETWORKS = ("actor", "actor_target", "critic", "critic_target")


@dataclass
class DeterministicStacks:
    """The seeds' actors, critics and their targets, each stacked (:class:`~pgrad.stack.StackedParameters`)."""

    actor: StackedParameters
    actor_target: StackedParameters
    critic: StackedParameters
    critic_target: StackedParameters

    @classmethod
    def of(cls, algos: Sequence) -> DeterministicStacks:
        for name in NETWORKS:
            check_plain(getattr(algos[0], name), f"the {name.replace('_', ' ')}")
        return cls(*(StackedParameters([getattr(a, name) for a in algos]) for name in NETWORKS))


def first_critic(stack: StackedParameters, obs: Tensor, actions: Tensor) -> Tensor:
    """Q_1(s, a) of every seed's critics ``[S, B]`` (the others not computed), no gradient to them."""
    critic = stack.modules[0]
    return critic._output(stacked_call(stack, critic._input(obs, actions, 0), frozen=True, submodule="members.0"))


def update_seeds(algos: Sequence, batches: Sequence[dict[str, Tensor] | None], stacks: DeterministicStacks) -> list:
    """:meth:`DDPG.update` and :meth:`~pgrad.algos.td3.TD3.update` for many seeds at once
    (``pgrad train ddpg --seeds``, ``td3``): TD3's are DDPG's with its target smoothing noise (each
    seed's ε from its own generator, as its single run draws it), its twin critics and its delay.

    Each seed has its own replay sample, Adam steps and Polyak averages; the forward and backward
    passes are shared, one batched product per layer on a loss Σ_s L_s (∇ for seed s: ∇L_s). A seed
    whose batch is None (its run stopped) draws and steps nothing. Returns each seed's metrics.
    """
    cfg = algos[0].cfg
    twin = hasattr(cfg, "policy_delay")  # TD3
    active = [b is not None for b in batches]
    if not any(active):
        return [None] * len(algos)
    x = stack_batches(batches)  # [S, B, ...]
    obs, actions, next_obs = x["obs"], x["actions"], x["next_obs"]
    with torch.no_grad():
        next_actions = stacked_call(stacks.actor_target, next_obs)
        if twin:  # target policy smoothing: ã' = clip(μ'(s') + clip(ε, −c, c), −1, 1)
            generators = [algo.generator if go else None for algo, go in zip(algos, active, strict=True)]
            eps = seed_noise(generators, actions.shape[1:], actions) * cfg.target_policy_noise
            next_actions = (next_actions + eps.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)).clamp(-1, 1)
        # y = r + γ (1 − d) min_i Q'_i(s', ã')   (DDPG: its one critic, ã' = μ'(s'))
        next_q = stacked_call(stacks.critic_target, next_obs, next_actions).amin(0)  # [S, B]
        target_q = td_target(x["rewards"], x["terminated"], next_q, x.get("discount", cfg.gamma))
    q = stacked_call(stacks.critic, obs, actions)  # [k, S, B]
    critic_loss = (q - target_q).pow(2).mean(-1).sum(0)  # each seed's Σ_i E[(Q_i(s, a) − y)²]: [S]
    stacks.critic.zero_grad()
    critic_loss.sum().backward()  # ∇_θs Σ_s' L_s' = ∇_θs L_s
    stacks.critic.share_grads()
    step_together([algo.critic_optimizer for algo, go in zip(algos, active, strict=True) if go])

    counted = next(a for a, go in zip(algos, active, strict=True) if go).updates if twin else 0  # (running seeds')
    if counted % getattr(cfg, "policy_delay", 1) == 0:  # TD3: updates 0, d, 2d, …; DDPG: every one
        # actor: max E[Q_1(s, μ(s))], the critics frozen
        actor_loss = -first_critic(stacks.critic, obs, stacked_call(stacks.actor, obs)).mean(-1)  # [S]
        stacks.actor.zero_grad()
        actor_loss.sum().backward()
        stacks.actor.share_grads()
        step_together([algo.actor_optimizer for algo, go in zip(algos, active, strict=True) if go])
        pairs = [(stacks.actor_target, stacks.actor), (stacks.critic_target, stacks.critic)]
        if all(active):  # θ' ← τθ + (1 − τ)θ', every seed's in one op
            polyak_([t for target, _ in pairs for t in target.stacked.values()],
                    [s for _, source in pairs for s in source.stacked.values()], cfg.tau)  # fmt: skip
        else:
            for algo in (a for a, go in zip(algos, active, strict=True) if go):
                soft_update(algo.actor_target, algo.actor, cfg.tau)
                soft_update(algo.critic_target, algo.critic, cfg.tau)
        for algo, go, loss in zip(algos, active, actor_loss.detach(), strict=True):
            if go and twin:
                algo.actor_loss = loss
    else:
        actor_loss = torch.stack([algo.actor_loss for algo in algos])  # each seed's last actor step's
    if twin:
        for algo, go in zip(algos, active, strict=True):
            algo.updates += go
    rows = torch.stack([critic_loss.detach(), actor_loss.detach(), q[0].detach().mean(-1)], 1).tolist()
    names = ("losses/critic_loss", "losses/actor_loss", "losses/q_mean")
    return [dict(zip(names, row, strict=True)) if go else None for row, go in zip(rows, active, strict=True)]
