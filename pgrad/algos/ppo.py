"""Proximal Policy Optimization (notes: "Proximal Policy Optimization (PPO)", "Solving the
Constrained Problem").

    r_t(θ) = π_θ(a_t|s_t) / π_θold(a_t|s_t)
    clip:        J(θ) = E[ min(r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t) ]
    kl_penalty:  J(θ) = E[ r_t A_t ] − β KL(π_old‖π_θ);  after each update β ×2 if KL > 1.5 d, ÷2 if KL < d/1.5
    kl_dual:     the same J, with the notes' dual ascent β ← max(0, β + α_β (KL − d))

with GAE advantages, a value loss, an entropy bonus, and the implementation details of
CHECKLIST E.2 (Adam ε 1e-5, per-minibatch advantage normalisation, shuffled minibatches every
epoch, global grad-norm clip, linear annealing, k3 approx-KL, optional target-KL early stop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor

from pgrad.buffers import RolloutBuffer
from pgrad.config import (
    OnPolicyConfig,
    fits_rollout,
    in_range,
    non_negative,
    one_of,
    positive,
    positive_int,
    schedule,
    set_learning_rate,
)
from pgrad.estimators import explained_variance, gae, standardize
from pgrad.networks import actor_critic_for, evaluate_batch, evaluate_rollout
from pgrad.optim import adam, clip_grad_norm_, step_together
from pgrad.stack import StackedParameters, per_seed, side_by_side, stacked_rows


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """PPO with the clipped surrogate objective."""

    batch_size: int = 64
    """Minibatch size; n_steps × n_envs samples are shuffled and cut into minibatches each epoch."""
    n_epochs: int = 10
    """Passes over the rollout per update."""
    clip_range: float = 0.2
    """ε of the clipped surrogate."""
    clip_range_schedule: Literal["constant", "linear"] = "constant"
    """Constant ε, or linear decay to 0."""
    clip_range_vf: float | None = None
    """Clip the value prediction to V_old ± this (None: no value clipping; CHECKLIST item 14)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_ent."""
    vf_coef: float = 0.5
    """Value loss coefficient c_vf."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch (CHECKLIST item 12)."""
    target_kl: float | None = None
    """Stop the epochs early once approx KL exceeds 1.5 × this (None: never; as SB3)."""
    loss: Literal["clip", "kl_penalty", "kl_dual"] = "clip"
    """Policy objective: clipped surrogate, or surrogate − β·KL with adaptive or dual-ascent β."""
    kl_coef: float = 1.0
    """Initial β of the KL penalty (loss kl_penalty / kl_dual)."""
    kl_target: float = 0.01
    """d: the KL per update that β adapts towards (loss kl_penalty / kl_dual)."""
    kl_coef_lr: float = 1.0
    """α_β, the dual ascent step of loss kl_dual."""

    def validate(self) -> None:
        super().validate()
        fits_rollout("batch_size", self.batch_size, self.n_steps, self.n_envs)
        positive_int("n_epochs", self.n_epochs)
        in_range("clip_range", self.clip_range, 0.0, 1.0, low_open=True, high_open=True)
        one_of("clip_range_schedule", self.clip_range_schedule, ("constant", "linear"))
        if self.clip_range_vf is not None:
            positive("clip_range_vf", self.clip_range_vf)
        non_negative("ent_coef", self.ent_coef)
        non_negative("vf_coef", self.vf_coef)
        if self.target_kl is not None:
            positive("target_kl", self.target_kl)
        one_of("loss", self.loss, ("clip", "kl_penalty", "kl_dual"))
        non_negative("kl_coef", self.kl_coef)
        positive("kl_target", self.kl_target)
        positive("kl_coef_lr", self.kl_coef_lr)


LOSS_TERMS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "loss")


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_range: float,
    cfg: PPOConfig,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> dict[str, Tensor]:
    """PPO's loss on one minibatch of ``B`` samples (all inputs ``[B]``), as named terms.

    ``kl`` is the exact per-sample KL(π_old‖π_θ), needed by the KL-penalty objectives."""
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()  # r_t(θ) = π_θ(a|s) / π_θold(a|s)
    if cfg.normalize_advantage:
        advantages = standardize(advantages)  # per minibatch (CHECKLIST item 12)

    surrogate = ratio * advantages
    if cfg.loss == "clip":
        # PPO-clip: L^CLIP = −E[ min(r·A, clip(r, 1−ε, 1+ε)·A) ]
        clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
        policy_loss = -torch.min(surrogate, clipped).mean()
    else:
        # PPO-KL: L^KLPEN = −E[ r·A ] + β E[ KL(π_old‖π_θ) ]
        policy_loss = -surrogate.mean() + kl_coef * kl.mean()

    # Value loss (V − R)², as SB3 (no ½); optionally the max with the clipped prediction's error.
    value_loss = F.mse_loss(values, returns)
    if cfg.clip_range_vf is not None:
        v_clipped = old_values + (values - old_values).clamp(-cfg.clip_range_vf, cfg.clip_range_vf)
        value_loss = torch.max((values - returns).pow(2), (v_clipped - returns).pow(2)).mean()

    entropy = entropy.mean()
    # L = L^CLIP − c_ent·H + c_vf·L^V
    loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()  # k3 estimator of KL(π_old‖π)
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": approx_kl,
        "clipfrac": clip_fraction,
        "loss": loss,
        "ratio": ratio,
    }


class PPO:
    """Acts with π_θold during collection; ``update`` runs the clipped-surrogate epochs."""

    not_state = ("params",)  # the policy's parameters as a list, for the optimizer and clip

    def __init__(self, cfg: PPOConfig, observation_space: gym.Space, action_space: gym.Space, device: torch.device):
        self.cfg, self.device = cfg, device
        self.policy = actor_critic_for(cfg, observation_space, action_space).to(device)
        self.params = list(self.policy.parameters())
        self.optimizer = adam(self.params, cfg.learning_rate, eps=1e-5)  # Adam ε = 1e-5 (CHECKLIST item 9)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # minibatch shuffles
        self.kl_coef = cfg.kl_coef  # β of the KL-penalty objectives, adapted after each update

    def schedules(self, progress_remaining: float) -> tuple[float, float]:
        """This update's learning rate (set on the optimizer) and clip range ε."""
        cfg = self.cfg
        learning_rate = schedule(cfg.learning_rate, cfg.lr_schedule, progress_remaining)
        set_learning_rate(self.optimizer, learning_rate)
        return learning_rate, schedule(cfg.clip_range, cfg.clip_range_schedule, progress_remaining)

    def step(self) -> None:
        """One optimizer step on the gradients in place: global grad-norm clip, then Adam."""
        if self.cfg.max_grad_norm > 0:
            clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()

    def metrics(
        self, history: list[Tensor], old_values: Tensor, returns: Tensor, learning_rate: float, clip_range: float
    ) -> dict[str, float]:
        """The update's metrics: the minibatches' mean loss terms (``history``: one row each)."""
        means = torch.stack(history).mean(0).tolist() if history else [float("nan")] * len(LOSS_TERMS)
        metrics = {f"losses/{k}": v for k, v in zip(LOSS_TERMS, means, strict=True)}
        metrics["losses/explained_variance"] = float(explained_variance(old_values, returns))
        metrics["charts/learning_rate"] = learning_rate
        metrics["charts/clip_range"] = clip_range
        metrics["charts/gradient_steps"] = len(history)
        return metrics

    def update(self, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
        cfg = self.cfg
        learning_rate, clip_range = self.schedules(progress_remaining)

        # GAE: A_t = Σ_k (γλ)^k δ_{t+k};  returns = A + V, the critic's TD(λ) target
        advantages, returns = buf.gae(cfg.gamma, cfg.gae_lambda)
        obs = buf.obs.flatten(0, 1)
        states = buf.states.flatten(0, 1) if buf.recurrent else None  # a recurrent policy's, entering each step
        actions = buf.actions.flatten(0, 1)
        old_log_probs, old_values = buf.log_probs.flatten(), buf.values.flatten()

        penalised = cfg.loss != "clip"
        if penalised:
            with torch.no_grad():
                old_dist = evaluate_rollout(self.policy, buf)[0].detach()  # π_old on the whole batch, frozen

        history: list[Tensor] = []
        stopped_early = False
        for _epoch in range(cfg.n_epochs):
            for batch in buf.minibatch_indices(cfg.batch_size, self.generator):
                # (a recurrent policy's minibatch: whole sequences, re-run from their stored states)
                dist, values, idx = evaluate_batch(self.policy, obs, states, batch)
                with torch.set_grad_enabled(cfg.ent_coef > 0):  # with c_ent = 0, H is only logged
                    entropy = dist.entropy()
                terms = ppo_loss(
                    dist.log_prob(actions[idx]),
                    old_log_probs[idx],
                    advantages[idx],
                    values,
                    old_values[idx],
                    returns[idx],
                    entropy,
                    clip_range,
                    cfg,
                    old_dist[idx].kl(dist) if penalised else None,
                    self.kl_coef,
                )
                if cfg.target_kl is not None and terms["approx_kl"].item() > 1.5 * cfg.target_kl:
                    stopped_early = True
                    break

                self.optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                self.step()
                history.append(torch.stack([terms[k].detach() for k in LOSS_TERMS]))
            if stopped_early:
                break

        metrics = self.metrics(history, old_values, returns, learning_rate, clip_range)
        if penalised:
            with torch.no_grad():
                kl = float(old_dist.kl(evaluate_rollout(self.policy, buf)[0]).mean())  # exact KL of the update
            metrics["losses/kl"], metrics["charts/kl_coef"] = kl, self.kl_coef
            self.kl_coef = adapt_kl_coef(self.kl_coef, kl, cfg)
        return metrics


def update_seeds(
    algos: Sequence[PPO],
    bufs: Sequence[RolloutBuffer],
    stack: StackedParameters,
    progress_remaining: float,
    active: Sequence[bool],
) -> list[dict[str, float] | None]:
    """:meth:`PPO.update` for many seeds at once (``pgrad train ppo --seeds``), the clipped objective.

    Each seed has what its single run has: its rollout and GAE, its minibatch shuffles (its own
    generator), advantage normalisation over its minibatch, its target-KL stop, its grad-norm clip
    and Adam step. Only the forward and backward passes are shared: one batched pass of all seeds'
    networks (:class:`~pgrad.stack.StackedParameters`) on a loss Σ_s L_s, whose gradient for seed
    s's parameters is ∇L_s. A seed not ``active`` (its run stopped) draws and steps nothing.
    Returns each active seed's metrics, None for the others.
    """
    if not any(active):
        return [None] * len(algos)
    cfg = algos[0].cfg
    schedules = [algo.schedules(progress_remaining) for algo in algos]
    clip_range = schedules[0][1]
    with torch.no_grad():  # A = GAE(γ, λ), returns = A + V, every seed's in one pass
        targets = gae(*side_by_side(bufs), cfg.gamma, cfg.gae_lambda)
    advantages, returns = (per_seed(x, len(algos)) for x in targets)  # [S, T·N]
    obs = torch.stack([buf.obs.flatten(0, 1) for buf in bufs])  # [S, T·N, ...]
    actions = torch.stack([buf.actions.flatten(0, 1) for buf in bufs])
    old_log_probs = torch.stack([buf.log_probs.flatten() for buf in bufs])
    old_values = torch.stack([buf.values.flatten() for buf in bufs])
    n = obs.shape[1]

    def seed_terms(policy, obs, actions, old_log_probs, advantages, old_values, returns) -> dict[str, Tensor]:
        dist, values = policy(obs)
        with torch.set_grad_enabled(cfg.ent_coef > 0):  # with c_ent = 0, H is only logged
            entropy = dist.entropy()
        terms = ppo_loss(
            dist.log_prob(actions), old_log_probs, advantages, values, old_values, returns, entropy, clip_range, cfg
        )
        return {k: terms[k] for k in LOSS_TERMS}

    all_terms = stack.vmap(seed_terms)
    seeds = torch.arange(len(algos), device=obs.device)[:, None]
    history: list[list[Tensor]] = [[] for _ in algos]
    stepping = list(active)
    for _epoch in range(cfg.n_epochs):
        orders = [
            iter(buf.minibatch_indices(cfg.batch_size, algo.generator)) if go else None
            for algo, buf, go in zip(algos, bufs, stepping, strict=True)
        ]
        for _ in range(math.ceil(n / cfg.batch_size)):
            index = stacked_rows([next(order) if order is not None else None for order in orders], n, obs.device)
            picked = (x[seeds, index] for x in (obs, actions, old_log_probs, advantages, old_values, returns))
            terms = all_terms(*picked)  # each [S]
            if cfg.target_kl is not None:
                for s, kl in enumerate(terms["approx_kl"].tolist()):
                    if stepping[s] and kl > 1.5 * cfg.target_kl:  # this seed's epochs end here
                        stepping[s], orders[s] = False, None
            if not any(stepping):
                break
            stack.zero_grad()
            terms["loss"].sum().backward()  # ∇_θs Σ_s' L_s' = ∇_θs L_s
            stack.share_grads()
            if cfg.max_grad_norm > 0:
                stack.clip_grad_norms_(cfg.max_grad_norm)  # each seed's global norm
            step_together([algo.optimizer for algo, go in zip(algos, stepping, strict=True) if go])
            rows_of_terms = torch.stack([terms[k].detach() for k in LOSS_TERMS], 1)  # [S, terms]
            for s in range(len(algos)):
                if stepping[s]:
                    history[s].append(rows_of_terms[s])
        if not any(stepping):
            break
    return [
        algo.metrics(history[s], old_values[s], returns[s], *schedules[s]) if active[s] else None
        for s, algo in enumerate(algos)
    ]


def adapt_kl_coef(beta: float, kl: float, cfg: PPOConfig) -> float:
    """The next β from the KL an update reached."""
    if cfg.loss == "kl_dual":
        # dual ascent on the Lagrangian: β ← max(0, β + α_β (KL − d))
        return max(0.0, beta + cfg.kl_coef_lr * (kl - cfg.kl_target))
    # adaptive penalty (Schulman et al. 2017, §4): double above 1.5 d, halve below d / 1.5
    if kl > 1.5 * cfg.kl_target:
        return beta * 2.0
    if kl < cfg.kl_target / 1.5:
        return beta / 2.0
    return beta
