"""Soft Actor-Critic (notes: "Soft Actor-Critic (SAC)"): maximum-entropy RL, off-policy.

v1, the notes' form (Haarnoja et al. 2018a), fixed temperature α:
    V_ψ:  min E[(V_ψ(s) − (min_i Q_i(s, ã) − α log π(ã|s)))²],   ã ~ π(·|s) fresh
    Q_i:  min E[(Q_i(s, a) − y)²],   y = r + γ (1 − d) V̄_ψ(s'),   V̄ the Polyak target of V
    π:    min E[α log π(f(ε; s)|s) − min_i Q_i(s, f(ε; s))]   (reparameterised, tanh-corrected)
v2 (Haarnoja et al. 2018b), the default: no V network,
    y = r + γ (1 − d) (min_i Q'_i(s', a') − α log π(a'|s')),   a' ~ π(·|s') fresh,  Q' Polyak targets
    α learned: min E[−log α · (log π(ã|s) + H̄)],  H̄ = −dim(A)
discrete (Christodoulou 2019): expectations over the finite actions in closed form,
    V(s') = Σ_a π(a|s') (min_i Q'_i(s', a) − α log π(a|s')),   π: min Σ_a π(a|s) (α log π(a|s) − min_i Q_i(s, a))

Continuous actions live in [−1, 1]^D (tanh) and are rescaled to the Box by the env's action map;
log-probabilities and H̄ are those of the [−1, 1] policy, as SB3's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.config import (
    OffPolicyConfig,
    critic_options,
    critic_sizes,
    in_range,
    one_of,
    positive,
    positive_int,
    require,
)
from pgrad.envs import require_box
from pgrad.estimators import td_target
from pgrad.networks import (
    CategoricalActor,
    QEnsemble,
    SquashedGaussianActor,
    VNetwork,
    frozen,
    observation_for,
    polyak_,
    soft_update,
)
from pgrad.optim import adam, step_together
from pgrad.stack import StackedParameters, check_plain, seed_noise, stack_batches, stacked_call


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC for continuous actions: the notes' v1 or the auto-temperature v2."""

    variant: Literal["v1", "v2"] = "v2"
    """v1: soft V network + target V̄, fixed α (the notes' form). v2: target Q networks, learned α."""
    ent_coef: float | None = None
    """α. None: learned toward target_entropy (v2) or fixed at 0.2 (v1). A number: fixed α."""
    ent_coef_init: float = 1.0
    """Initial α when it is learned."""
    target_entropy: float | None = None
    """H̄ for the learned α; None: −dim(A)."""
    policy_delay: int = 1
    """Critic steps per actor (and temperature) step (v2; SBX's, DroQ's 20 with gradient_steps 20)."""
    use_sde: bool = False
    """gSDE (v2): noise θ_εᵀφ(s) from the actor's features, ε held per env (SB3's SAC use_sde)."""
    sde_sample_freq: int = -1
    """Draw the envs' ε every this many vector steps (-1: after each training round)."""
    full_std: bool = True
    """gSDE's σ per (feature, action dim); False: one per feature."""
    log_std_init: float = -3.0
    """gSDE's initial log σ (SB3's SAC default)."""

    def validate(self) -> None:
        super().validate()
        one_of("variant", self.variant, ("v1", "v2"))
        positive_int("policy_delay", self.policy_delay)
        if self.variant == "v1":
            require("policy_delay", self.policy_delay, self.policy_delay == 1, "must be 1 with variant v1")
            require("use_sde", self.use_sde, not self.use_sde, "must be False with variant v1 (gSDE is v2's, as SB3's)")
        require("sde_sample_freq", self.sde_sample_freq, self.sde_sample_freq == -1 or
                (isinstance(self.sde_sample_freq, int) and self.sde_sample_freq >= 1),
                "must be -1 (after each training round) or an integer >= 1")  # fmt: skip
        in_range("log_std_init", self.log_std_init, -20.0, 2.0)
        if self.ent_coef is not None:
            positive("ent_coef", self.ent_coef)
        positive("ent_coef_init", self.ent_coef_init)
        if self.target_entropy is not None:
            require("target_entropy", self.target_entropy, math.isfinite(self.target_entropy), "must be finite")


@dataclass(frozen=True)
class SACDiscreteConfig(OffPolicyConfig):
    """SAC for Discrete actions with a learned temperature."""

    learning_starts: int = 1000
    """Uniformly random actions for this many env steps before learning starts."""
    ent_coef: float | None = None
    """α. None: learned toward target_entropy_scale · log|A|. A number: fixed α."""
    ent_coef_init: float = 1.0
    """Initial α when it is learned."""
    target_entropy_scale: float = 0.89
    """H̄ = scale · log|A| (CleanRL's 0.89; the SAC-discrete paper's 0.98)."""

    def validate(self) -> None:
        super().validate()
        if self.ent_coef is not None:
            positive("ent_coef", self.ent_coef)
        positive("ent_coef_init", self.ent_coef_init)
        in_range("target_entropy_scale", self.target_entropy_scale, 0.0, 1.0, low_open=True)


class Temperature:
    """α, fixed or learned by gradient on log α: min −log α · E[log π + H̄]."""

    def __init__(self, fixed: float | None, init: float, target_entropy: float, lr: float, device: torch.device):
        self.fixed, self.target_entropy = fixed, target_entropy
        self.log_alpha = torch.tensor(math.log(init), device=device, requires_grad=True)
        self.optimizer = adam([self.log_alpha], lr) if fixed is None else None

    @property
    def alpha(self) -> Tensor:
        return torch.tensor(self.fixed) if self.fixed is not None else self.log_alpha.detach().exp()

    def update(self, expected_log_prob: Tensor) -> None:
        """``expected_log_prob`` = log π(ã|s) per sample (or Σ_a π log π for discrete), detached."""
        if self.optimizer is None:
            return
        # temperature: min −log α · (log π + H̄)
        loss = -(self.log_alpha * (expected_log_prob + self.target_entropy)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class SAC:
    action_mode = "rescale"

    def __init__(self, cfg: SACConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        action_dim = require_box(f"sac (variant {cfg.variant})", action_space)
        obs_dim, obs = observation_for(cfg, observation_space)
        sde = dict(use_sde=True, full_std=cfg.full_std, log_std_init=cfg.log_std_init) if cfg.use_sde else {}
        self.actor = SquashedGaussianActor(
            obs_dim, action_dim, cfg.hidden_sizes, obs, cfg.activation, network=cfg.network, **sde
        ).to(device)
        critic = QEnsemble(obs_dim, action_dim, critic_sizes(cfg), k=2, observation=obs, **critic_options(cfg))
        self.critic = critic.to(device)  # Q_1, Q_2
        self.actor_optimizer = adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.learning_rate)
        if cfg.variant == "v1":
            self.v = VNetwork(obs_dim, critic_sizes(cfg), obs, cfg.activation, network=cfg.network).to(device)
            self.v_target = copy.deepcopy(self.v)
            self.v_optimizer = adam(self.v.parameters(), cfg.learning_rate)
            fixed = 0.2 if cfg.ent_coef is None else cfg.ent_coef
        else:
            self.critic_target = copy.deepcopy(self.critic)
            fixed = cfg.ent_coef
        target = -float(action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.temperature = Temperature(fixed, cfg.ent_coef_init, target, cfg.learning_rate, device)
        self.generator = torch.Generator(device).manual_seed(cfg.seed + 3)
        self.policy = self.actor
        self.updates = 0  # critic steps, for policy_delay
        self.actor_metrics = torch.zeros(2)  # the last actor step's loss and entropy estimate
        shape = (cfg.n_envs, self.actor.latent_dim, action_dim) if cfg.use_sde else (0,)
        self.exploration = torch.zeros(shape)  # gSDE: each env's held ε [N, d, D]
        self.explored, self.redraw = 0, True  # gSDE: vector steps since it was drawn; draw before the next

    def explore(self, obs: Tensor) -> np.ndarray:
        if not self.cfg.use_sde:
            return self.actor(obs).sample(self.generator).cpu().numpy()
        every = self.cfg.sde_sample_freq
        if self.redraw or (every > 0 and self.explored % every == 0):
            self.exploration, self.explored, self.redraw = self._epsilon(len(obs)), 0, False
        self.explored += 1
        return self.actor(obs).sample(self.exploration).cpu().numpy()

    def _epsilon(self, n: int) -> Tensor:
        """gSDE's ε ~ N(0, 1), ``[n, d, D]``."""
        return torch.randn((n, *self.actor.log_std.shape[:1], self.actor.spec["action_dim"]), generator=self.generator)

    def _noise(self, batch: int) -> torch.Generator | Tensor:
        """The randomness of one gradient step's sampled actions: the generator, or with gSDE one ε
        for the whole batch, drawn afresh (SB3's reset_noise before each step), which also ends the
        envs' held ε when ``sde_sample_freq`` is -1."""
        if not self.cfg.use_sde:
            return self.generator
        if self.cfg.sde_sample_freq == -1:
            self.redraw = True
        return self._epsilon(1).expand(batch, -1, -1)

    def episodes_ended(self, envs: np.ndarray) -> None:
        """Nothing to reset: SAC explores by sampling its stochastic policy."""

    def _actor_step(self, obs: Tensor, alpha: Tensor, noise=None) -> tuple[Tensor, Tensor, Tensor]:
        """π: min E[α log π(ã|s) − min_i Q_i(s, ã)], ã = f(ε; s); returns (loss, log π(ã|s), min Q)."""
        actions, log_prob = self.actor(obs).rsample_with_log_prob(self.generator if noise is None else noise)
        with frozen(self.critic):
            q = self.critic(obs, actions).amin(0)
            actor_loss = (alpha * log_prob - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return actor_loss.detach(), log_prob.detach(), q.detach()

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.cfg
        obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        alpha = self.temperature.alpha
        noise = self._noise(len(obs))
        with torch.no_grad():
            if cfg.variant == "v1":
                # Q target: y = r + γ (1 − d) V̄_ψ(s')
                next_v = self.v_target(next_obs)
            else:
                # soft target: y = r + γ (1 − d) (min_i Q'_i(s', a') − α log π(a'|s')), a' ~ π(·|s')
                next_actions, next_log_prob = self.actor(next_obs).rsample_with_log_prob(noise)
                next_q = self.critic_target(next_obs, next_actions).amin(0)
                next_v = next_q - alpha * next_log_prob
            target_q = td_target(batch["rewards"], batch["terminated"], next_v, batch.get("discount", cfg.gamma))
        q = self.critic(obs, actions)  # [2, B]
        critic_loss = (q - target_q).pow(2).mean(-1).sum()  # Σ_i E[(Q_i(s, a) − y)²]
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.updates += 1

        if cfg.variant == "v2" and self.updates % cfg.policy_delay:  # the critics only (updates d, 2d, … do all)
            soft_update(self.critic_target, self.critic, cfg.tau)
            actor_loss, entropy = self.actor_metrics  # the last actor step's, as logged then
            metrics = [critic_loss.detach(), actor_loss, q[0].detach().mean(), entropy, alpha]
            return dict(zip(SAC_METRICS, torch.stack(metrics).tolist(), strict=True))
        actor_loss, log_prob, q_new = self._actor_step(obs, alpha, noise)
        self.actor_metrics = torch.stack([actor_loss, -log_prob.mean()])
        metrics = [critic_loss.detach(), actor_loss, q[0].detach().mean(), -log_prob.mean()]
        if cfg.variant == "v1":
            # V_ψ: min E[(V_ψ(s) − (min_i Q_i(s, ã) − α log π(ã|s)))²], ã fresh from π
            value_loss = F.mse_loss(self.v(obs), q_new - alpha * log_prob)
            self.v_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            self.v_optimizer.step()
            soft_update(self.v_target, self.v, cfg.tau)
            metrics.append(value_loss.detach())
        else:
            self.temperature.update(log_prob)
            soft_update(self.critic_target, self.critic, cfg.tau)
            metrics.append(alpha)
        names = (*SAC_METRICS[:-1], "losses/value_loss" if cfg.variant == "v1" else "losses/alpha")
        return dict(zip(names, torch.stack(metrics).tolist(), strict=True))


SAC_METRICS = ("losses/critic_loss", "losses/actor_loss", "losses/q_mean", "losses/entropy", "losses/alpha")


@dataclass
class SACStacks:
    """The seeds' actors, critics and target critics, each stacked (:class:`~pgrad.stack.StackedParameters`)."""

    actor: StackedParameters
    critic: StackedParameters
    critic_target: StackedParameters

    @classmethod
    def of(cls, algos: Sequence[SAC]) -> SACStacks:
        names = ("actor", "critic", "critic_target")
        for name in names:
            check_plain(getattr(algos[0], name), f"sac's {name.replace('_', ' ')}")
        return cls(*(StackedParameters([getattr(a, name) for a in algos]) for name in names))


def update_seeds(
    algos: Sequence[SAC], batches: Sequence[dict[str, Tensor] | None], stacks: SACStacks
) -> list[dict[str, float] | None]:
    """:meth:`SAC.update` (v2) for many seeds at once (``pgrad train sac --seeds``).

    Each seed has what its single run has: its replay sample, its noise (drawn from its own
    generator in the order its single run draws it: ε for a' ~ π(·|s'), then ε for ã ~ π(·|s) on an
    actor step), its α and temperature step, its Adam steps and its Polyak average. Only the
    forward and backward passes are shared: one pass of all seeds' networks (a batched product per
    layer, :func:`~pgrad.stack.stacked_call`) on a loss Σ_s L_s, whose gradient for seed s's
    parameters is ∇L_s (the seeds share no parameter). A seed whose batch is None (its run stopped)
    draws and steps nothing. Returns each seed's metrics, None for those.
    """
    cfg = algos[0].cfg
    active = [b is not None for b in batches]
    if not any(active):
        return [None] * len(algos)
    x = stack_batches(batches)  # [S, B, ...]
    obs, actions, next_obs = x["obs"], x["actions"], x["next_obs"]
    alpha = torch.stack([algo.temperature.alpha.to(obs.device) for algo in algos])[:, None]  # [S, 1]
    generators = [algo.generator if go else None for algo, go in zip(algos, active, strict=True)]

    with torch.no_grad():
        # soft target: y = r + γ (1 − d) (min_i Q'_i(s', a') − α log π(a'|s')), a' ~ π(·|s')
        next_actions, next_log_prob = stacked_call(stacks.actor, next_obs).rsample_with_log_prob(
            seed_noise(generators, actions.shape[1:], obs)
        )
        next_q = stacked_call(stacks.critic_target, next_obs, next_actions).amin(0)  # [S, B]
        target_q = td_target(
            x["rewards"], x["terminated"], next_q - alpha * next_log_prob, x.get("discount", cfg.gamma)
        )
    q = stacked_call(stacks.critic, obs, actions)  # [2, S, B]
    critic_loss = (q - target_q).pow(2).mean(-1).sum(0)  # each seed's Σ_i E[(Q_i(s, a) − y)²]: [S]
    stacks.critic.zero_grad()
    critic_loss.sum().backward()  # ∇_θs Σ_s' L_s' = ∇_θs L_s
    stacks.critic.share_grads()
    step_together([algo.critic_optimizer for algo, go in zip(algos, active, strict=True) if go])
    for algo, go in zip(algos, active, strict=True):
        algo.updates += go

    counted = next(a for a, go in zip(algos, active, strict=True) if go).updates  # (a stopped seed's is behind)
    if counted % cfg.policy_delay == 0:  # the critics only between (updates d, 2d, … do all)
        # π: min E[α log π(ã|s) − min_i Q_i(s, ã)], ã = f(ε; s), the critics frozen
        new_actions, log_prob = stacked_call(stacks.actor, obs).rsample_with_log_prob(
            seed_noise(generators, actions.shape[1:], obs)
        )
        new_q = stacked_call(stacks.critic, obs, new_actions, frozen=True).amin(0)
        actor_loss = (alpha * log_prob - new_q).mean(-1)  # [S]
        stacks.actor.zero_grad()
        actor_loss.sum().backward()
        stacks.actor.share_grads()
        step_together([algo.actor_optimizer for algo, go in zip(algos, active, strict=True) if go])
        log_prob = log_prob.detach()
        for s, algo in enumerate(algos):
            if active[s]:
                algo.actor_metrics = torch.stack([actor_loss[s].detach(), -log_prob[s].mean()])
                algo.temperature.update(log_prob[s])
    if all(active):  # θ' ← τθ + (1 − τ)θ', every seed's in one op
        polyak_(list(stacks.critic_target.stacked.values()), list(stacks.critic.stacked.values()), cfg.tau)
    else:
        for algo in (a for a, go in zip(algos, active, strict=True) if go):
            soft_update(algo.critic_target, algo.critic, cfg.tau)
    logged = torch.stack([algo.actor_metrics for algo in algos])  # [S, 2]: the last actor step's
    rows = torch.stack(
        [critic_loss.detach(), logged[:, 0], q[0].detach().mean(-1), logged[:, 1], alpha[:, 0]], 1
    ).tolist()
    return [dict(zip(SAC_METRICS, row, strict=True)) if go else None for row, go in zip(rows, active, strict=True)]


class SACDiscrete:
    action_mode = "clip"  # unused: Discrete actions pass through

    def __init__(
        self, cfg: SACDiscreteConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device
    ):
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"sac-discrete needs a Discrete action space, got {action_space}; use sac, td3 or ddpg for Box "
                "actions, and ppo, a2c, trpo, npg or reinforce for MultiDiscrete and MultiBinary ones"
            )
        self.cfg, self.device = cfg, device
        (obs_dim, obs), n_actions = observation_for(cfg, observation_space), int(action_space.n)
        self.actor = CategoricalActor(
            obs_dim, n_actions, cfg.hidden_sizes, obs, cfg.activation, network=cfg.network
        ).to(device)
        self.critic = QEnsemble(
            obs_dim, n_actions, critic_sizes(cfg), k=2, discrete=True, observation=obs, **critic_options(cfg)
        ).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.learning_rate)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.learning_rate)
        target = cfg.target_entropy_scale * math.log(n_actions)  # H̄ = scale · log|A|
        self.temperature = Temperature(cfg.ent_coef, cfg.ent_coef_init, target, cfg.learning_rate, device)
        self.generator = torch.Generator(device).manual_seed(cfg.seed + 3)
        self.policy = self.actor

    def explore(self, obs: Tensor) -> np.ndarray:
        return self.actor(obs).sample(self.generator).cpu().numpy()

    def episodes_ended(self, envs: np.ndarray) -> None:
        """Nothing to reset."""

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        cfg = self.cfg
        obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        alpha = self.temperature.alpha
        with torch.no_grad():
            next_dist = self.actor(next_obs)
            next_q = self.critic_target(next_obs).amin(0)  # [B, A]
            # V(s') = Σ_a π(a|s') (min_i Q'_i(s', a) − α log π(a|s')), the expectation in closed form
            next_v = (next_dist.probs * (next_q - alpha * next_dist.logits)).sum(-1)
            target_q = td_target(batch["rewards"], batch["terminated"], next_v, batch.get("discount", cfg.gamma))
        q = self.critic(obs).gather(2, actions[None, :, None].expand(2, -1, 1)).squeeze(2)  # Q_i(s, a): [2, B]
        critic_loss = (q - target_q).pow(2).mean(-1).sum()  # Σ_i E[(Q_i(s, a) − y)²]
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        dist = self.actor(obs)
        with torch.no_grad():
            q_all = self.critic(obs).amin(0)
        # π: min Σ_a π(a|s) (α log π(a|s) − min_i Q_i(s, a))
        actor_loss = (dist.probs * (alpha * dist.logits - q_all)).sum(-1).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        expected_log_prob = (dist.probs * dist.logits).sum(-1).detach()  # E_a[log π(a|s)] = −H(π(·|s))
        self.temperature.update(expected_log_prob)
        soft_update(self.critic_target, self.critic, cfg.tau)
        values = torch.stack(
            [critic_loss.detach(), actor_loss.detach(), q[0].detach().mean(), -expected_log_prob.mean(), alpha]
        ).tolist()
        names = ("losses/critic_loss", "losses/actor_loss", "losses/q_mean", "losses/entropy", "losses/alpha")
        return dict(zip(names, values, strict=True))
