"""The trust-region core shared by NPG and TRPO (notes: "Natural Policy Gradient", "TRPO").

Both solve   max_θ' ∇L(θ)ᵀ(θ' − θ)   s.t.   KL(π_θ‖π_θ') ≈ ½ (θ' − θ)ᵀ F (θ' − θ) ≤ δ
whose solution is θ' = θ + α F⁻¹∇L with α = √(2δ / ∇Lᵀ F⁻¹ ∇L). Here F⁻¹∇L is found by
conjugate gradient from Fisher-vector products, never forming F. NPG applies the step as it
is; TRPO backtracks it until the exact KL ≤ δ and the surrogate improved.

Everything works on the flat vector of a list of parameters (every policy parameter, the
Gaussian's log-std included: CHECKLIST item 27). Many seeds at once (``pgrad train trpo --seeds``,
:func:`update_seeds`) work on ``[S, P]``: seed s's flat vector in row s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pgrad.buffers import RolloutBuffer, minibatches
from pgrad.config import schedule, set_learning_rate
from pgrad.estimators import explained_variance, standardize
from pgrad.networks import fit_value
from pgrad.optim import step_together
from pgrad.stack import StackedParameters, stacked_rows


def flat_params(params: Sequence[nn.Parameter]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_params(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def flat_grad(output: Tensor, params: Sequence[Tensor], create_graph: bool = False, seeds: int | None = None) -> Tensor:
    """∇_θ output as one flat vector (zeros for parameters the output does not depend on); with
    ``seeds``, of stacked parameters ``[S, ...]``: ``[S, P]``, seed s's gradient in row s."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return _flat(grads, params, seeds)


def _flat(grads: Sequence[Tensor | None], params: Sequence[Tensor], seeds: int | None) -> Tensor:
    shape = (-1,) if seeds is None else (seeds, -1)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(shape) for g, p in zip(grads, params, strict=True)], dim=-1
    )


def fisher_vector_product(
    mean_kl: Tensor, params: Sequence[Tensor], damping: float, seeds: int | None = None
) -> Callable[[Tensor], Tensor]:
    """``v ↦ (F + ζI) v`` where F is the Hessian of ``mean_kl`` at the current parameters.

    ``mean_kl`` must be KL(π_old‖π_θ) with π_old *detached* at the current θ: then KL = 0 and
    ∇KL = 0 there, and its Hessian is the Fisher matrix F = E[∇log π ∇log πᵀ] (CHECKLIST item 23).
    # Fisher-vector product: F v = ∇_θ ( (∇_θ KL)ᵀ v ),  double backprop, no explicit matrix
    With ``seeds``: ``mean_kl [S]`` of stacked parameters, ``v [S, P]`` ↦ each seed's F_s v_s. The
    seeds share no parameter, so the Hessian of Σ_s KL_s is block-diagonal, diag(F_1, …, F_S): one
    double-backward pass of Σ_s (∇KL_s)ᵀ v_s multiplies every seed's block by its own vector.
    """
    grad_kl = flat_grad(mean_kl.sum(), params, create_graph=True, seeds=seeds)

    def product(v: Tensor) -> Tensor:
        hvp = torch.autograd.grad((grad_kl * v).sum(), params, retain_graph=True, allow_unused=True)
        return _flat(hvp, params, seeds) + damping * v

    return product


@dataclass
class CGResult:
    x: Tensor
    residual: float  # ‖b − A x‖ at exit
    iterations: int


def conjugate_gradient(
    matrix_vector: Callable[[Tensor], Tensor], b: Tensor, max_iterations: int = 10, tolerance: float = 1e-10
) -> CGResult:
    """Solve ``A x = b`` for symmetric positive-definite A given only ``v ↦ A v``, from x = 0.

    Stops after ``max_iterations`` or once the squared residual ‖r‖² < ``tolerance``.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # r = b − A x with x = 0
    p = r.clone()
    r_dot = r @ r
    iterations = 0
    if not r_dot > 0:  # b = 0: x = 0 solves it (and 0/0 would follow)
        return CGResult(x, 0.0, 0)
    for iterations in range(1, max_iterations + 1):  # noqa: B007  (iterations is reported)
        Ap = matrix_vector(p)
        step = r_dot / (p @ Ap)
        x += step * p
        r -= step * Ap
        new_r_dot = r @ r
        if new_r_dot < tolerance:
            r_dot = new_r_dot
            break
        p = r + (new_r_dot / r_dot) * p
        r_dot = new_r_dot
    return CGResult(x, float(r_dot.sqrt()), iterations)


def conjugate_gradient_seeds(
    matrix_vector: Callable[[Tensor], Tensor], b: Tensor, max_iterations: int = 10, tolerance: float = 1e-10
) -> list[CGResult]:
    """:func:`conjugate_gradient` for S independent systems A_s x_s = b_s at once: ``b [S, P]``,
    ``matrix_vector`` maps ``[S, P]`` to each seed's A_s v_s. Each seed has its own scalars and
    stops where its own run stops (its ‖r‖² below the tolerance, or b_s = 0 from the start), its
    x_s fixed from then while the others go on. One result per seed."""
    x, r = torch.zeros_like(b), b.clone()
    p = r.clone()
    r_dot = (r * r).sum(1)
    running = r_dot > 0
    iterations = torch.zeros(len(b), dtype=torch.long)
    for iteration in range(1, max_iterations + 1):
        if not bool(running.any()):
            break
        Ap = matrix_vector(p)
        p_Ap = (p * Ap).sum(1)
        step = torch.where(running, r_dot / torch.where(running, p_Ap, 1.0), 0.0)  # a stopped seed: 0
        x += step[:, None] * p
        r -= step[:, None] * Ap
        new_r_dot = (r * r).sum(1)
        iterations[running] = iteration
        going = running & ~(new_r_dot < tolerance)
        beta = torch.where(going, new_r_dot / torch.where(going, r_dot, 1.0), 0.0)
        p = torch.where(going[:, None], r + beta[:, None] * p, p)
        r_dot = torch.where(running, new_r_dot, r_dot)
        running = going
    return [CGResult(x[s], float(r_dot[s].sqrt()), int(iterations[s])) for s in range(len(b))]


def scaled_step(x: Tensor, Fx: Tensor, max_kl: float) -> Tensor:
    """The full natural step α x, α = :func:`step_scale`; a zero x (a zero policy gradient) stays zero."""
    return x if not bool(x.any()) else step_scale(x, Fx, max_kl) * x


def step_scale(x: Tensor, Fx: Tensor, max_kl: float) -> float:
    """α = √(2δ / xᵀ F x): the step α·x has ½ (αx)ᵀF(αx) = δ, the trust region's edge."""
    quadratic = float(x @ Fx)
    if quadratic <= 0:
        raise FloatingPointError(f"xᵀFx = {quadratic:.3e} is not positive: the Fisher product is not PSD")
    return (2.0 * max_kl / quadratic) ** 0.5


@dataclass
class LineSearchResult:
    accepted: bool
    backtracks: int  # tries used (1 = the full step was accepted)
    kl: float  # exact KL at the accepted parameters (or of the last rejected try)
    improvement: float  # surrogate gain at the accepted parameters (0 when rejected)


def backtracking_line_search(
    params: Sequence[nn.Parameter],
    full_step: Tensor,
    evaluate: Callable[[], tuple[float, float]],
    old_surrogate: float,
    max_kl: float,
    shrink: float = 0.8,
    max_tries: int = 10,
) -> LineSearchResult:
    """Try θ + β^k · step for k = 0, 1, … until the exact KL ≤ δ **and** the surrogate improved.

    ``evaluate()`` returns ``(surrogate, exact mean KL)`` at the parameters currently set. If no
    try is accepted the old parameters are restored (a real bug in a peer library until 2026).
    """
    if not bool(full_step.any()):  # no step to search along (a zero policy gradient): θ kept
        return LineSearchResult(False, 0, 0.0, 0.0)
    old = flat_params(params)
    kl = float("nan")
    for k in range(max_tries):
        set_flat_params(params, old + shrink**k * full_step)
        surrogate, kl = evaluate()
        if kl <= max_kl and surrogate > old_surrogate:
            return LineSearchResult(True, k + 1, kl, surrogate - old_surrogate)
    set_flat_params(params, old)
    return LineSearchResult(False, max_tries, kl, 0.0)


class SurrogateProblem:
    """The surrogate and the KL on one fixed batch, both functions of the current θ.

    # surrogate: L(θ) = E[ π_θ(a|s) / π_θold(a|s) · A ]
    # KL:        D̄(θ) = E_s[ KL(π_θold(·|s) ‖ π_θ(·|s)) ],  π_θold detached
    """

    def __init__(
        self,
        distribution_fn: Callable[[Tensor], object],
        params: Sequence[nn.Parameter],
        obs: Tensor,
        actions: Tensor,
        advantages: Tensor,
    ):
        self.distribution_fn, self.params = distribution_fn, list(params)
        self.obs, self.actions, self.advantages = obs, actions, advantages
        with torch.no_grad():
            self.old_dist = distribution_fn(obs).detach()  # π_θold, frozen while θ moves
            self.old_log_probs = self.old_dist.log_prob(actions)

    def surrogate(self) -> Tensor:
        ratio = (self.distribution_fn(self.obs).log_prob(self.actions) - self.old_log_probs).exp()
        return (ratio * self.advantages).mean()

    def mean_kl(self) -> Tensor:
        return self.old_dist.kl(self.distribution_fn(self.obs)).mean()

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """``(L(θ), exact D̄(θ))`` at the parameters currently set."""
        return float(self.surrogate()), float(self.mean_kl())

    def natural_step(self, max_kl: float, damping: float, cg_iterations: int, cg_tolerance: float):
        """The full natural-gradient step α F⁻¹∇L with α = √(2δ / xᵀFx), and the CG result.
        A zero policy gradient (all advantages equal, say) gives a zero step: no step is taken."""
        g = flat_grad(self.surrogate(), self.params)  # ∇L(θ_old) = the policy gradient
        fvp = fisher_vector_product(self.mean_kl(), self.params, damping)
        cg = conjugate_gradient(fvp, g, cg_iterations, cg_tolerance)  # x ≈ F⁻¹ ∇L
        if not bool(cg.x.any()):
            return cg.x, cg
        return step_scale(cg.x, fvp(cg.x), max_kl) * cg.x, cg


# ---- NPG's and TRPO's update around the step: one seed, or many seeds at once ----


def rollout_batch(buf: RolloutBuffer, cfg) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(obs, actions, advantages, returns)`` of a rollout, flat ``[T·N, ...]``."""
    # GAE: A_t = Σ_k (γλ)^k δ_{t+k};  returns = A + V, the critic's regression target
    advantages, returns = buf.gae(cfg.gamma, cfg.gae_lambda)
    obs, actions = buf.obs.flatten(0, 1), buf.actions.flatten(0, 1)
    if cfg.normalize_advantage:
        advantages = standardize(advantages)
    return obs, actions, advantages, returns


def natural_update(algo, buf: RolloutBuffer, progress_remaining: float) -> dict[str, float]:
    """NPG's or TRPO's update of one seed: the full natural step α F⁻¹∇L, taken by ``algo.take_step``
    (whole, or by the line search), then the critic's regression on the GAE returns."""
    cfg = algo.cfg
    obs, actions, advantages, returns = rollout_batch(buf, cfg)
    problem = SurrogateProblem(algo.policy.distribution, algo.policy.policy_parameters(), obs, actions, advantages)
    step, cg = problem.natural_step(cfg.target_kl, cfg.cg_damping, cfg.cg_max_steps, cfg.cg_tolerance)
    metrics = algo.take_step(problem, step, cg)
    learning_rate = critic_learning_rate(algo, progress_remaining)
    value_loss = fit_value(
        algo.policy.value, algo.critic_optimizer, obs, returns, cfg.n_critic_updates, cfg.batch_size, algo.generator
    )
    return metrics | critic_metrics(value_loss, buf, returns, learning_rate)


def critic_learning_rate(algo, progress_remaining: float) -> float:
    """The critic's Adam learning rate of now (its schedule), set on its optimizer."""
    learning_rate = schedule(algo.cfg.learning_rate, algo.cfg.lr_schedule, progress_remaining)
    set_learning_rate(algo.critic_optimizer, learning_rate)
    return learning_rate


def critic_metrics(value_loss: Tensor, buf: RolloutBuffer, returns: Tensor, learning_rate: float) -> dict[str, float]:
    return {
        "losses/value_loss": float(value_loss),
        "losses/explained_variance": float(explained_variance(buf.values.flatten(), returns)),
        "charts/learning_rate": learning_rate,
    }


def update_seeds(
    algos: Sequence,
    bufs: Sequence[RolloutBuffer],
    stack: StackedParameters,
    progress_remaining: float,
    active: Sequence[bool],
) -> list[dict[str, float] | None]:
    """NPG's or TRPO's update for many seeds at once (``pgrad train trpo --seeds``).

    Each seed has what its single run has: its rollout, GAE and advantage normalisation, its
    conjugate gradient (its own scalars and stop), its step scale α_s, its line search (TRPO) or
    whole step (NPG), taken by its own ``take_step``, and its critic fit (its own minibatch shuffles
    and Adam). Shared are the passes: the policy gradients of Σ_s L_s in one backward pass, every
    seed's Fisher-vector product in one double-backward pass per CG iteration, the critic's
    forward and backward passes. A seed not ``active`` (its run stopped) steps and draws nothing.
    """
    if not any(active):
        return [None] * len(algos)
    seeds, cfg = len(algos), algos[0].cfg
    batches = [rollout_batch(buf, cfg) for buf in bufs]
    obs, actions, advantages, returns = (torch.stack(x) for x in zip(*batches, strict=True))
    problems = [
        SurrogateProblem(algo.policy.distribution, algo.policy.policy_parameters(), *batch[:3])
        for algo, batch in zip(algos, batches, strict=True)
    ]
    old_log_probs = torch.stack([problem.old_log_probs for problem in problems])

    def seed_terms(policy, obs, actions, old_log_probs, advantages) -> dict[str, Tensor]:
        dist, _ = policy(obs)
        ratio = (dist.log_prob(actions) - old_log_probs).exp()
        # L(θ) = E[π_θ/π_θold · A], and D̄(θ) with π_θold this pass's π, detached (θ = θ_old here)
        return {"surrogate": (ratio * advantages).mean(), "kl": dist.detach().kl(dist).mean()}

    terms = stack.vmap(seed_terms)(obs, actions, old_log_probs, advantages)
    names = {id(p): name for name, p in algos[0].policy.named_parameters()}
    params = [stack.stacked[names[id(p)]] for p in algos[0].policy.policy_parameters()]
    g = flat_grad(terms["surrogate"].sum(), params, seeds=seeds)  # row s: ∇L_s(θ_s,old)
    fvp = fisher_vector_product(terms["kl"], params, cfg.cg_damping, seeds=seeds)
    cgs = conjugate_gradient_seeds(fvp, g, cfg.cg_max_steps, cfg.cg_tolerance)  # x_s ≈ F_s⁻¹ ∇L_s
    Fx = fvp(torch.stack([cg.x for cg in cgs]))
    metrics: list[dict[str, float] | None] = [
        algo.take_step(problem, scaled_step(cg.x, Fx[s], cfg.target_kl), cg) if active[s] else None
        for s, (algo, problem, cg) in enumerate(zip(algos, problems, cgs, strict=True))
    ]
    rates = [
        critic_learning_rate(algo, progress_remaining) if go else 0.0 for algo, go in zip(algos, active, strict=True)
    ]
    value_losses = _fit_values(algos, stack, obs, returns, active)
    for s, buf in enumerate(bufs):
        if active[s]:
            metrics[s] |= critic_metrics(value_losses[s], buf, returns[s], rates[s])
    return metrics


def _fit_values(
    algos: Sequence, stack: StackedParameters, obs: Tensor, targets: Tensor, active: Sequence[bool]
) -> Tensor:
    """:func:`~pgrad.networks.fit_value` of every active seed's critic at once: its own shuffles
    (its generator), the shared forward and backward passes, its own Adam step. The mean loss of
    the last epoch per seed, ``[S]``."""
    cfg, n = algos[0].cfg, obs.shape[1]
    values = stack.vmap(lambda policy, obs: {"v": policy(obs)[1]})
    seeds = torch.arange(len(algos), device=obs.device)[:, None]
    optimizers = [algo.critic_optimizer for algo, go in zip(algos, active, strict=True) if go]
    losses: list[Tensor] = []
    for _epoch in range(cfg.n_critic_updates):
        orders = [
            minibatches(n, cfg.batch_size, algo.generator, obs.device) if go else None
            for algo, go in zip(algos, active, strict=True)
        ]
        losses = []
        for _ in range(math.ceil(n / cfg.batch_size)):
            index = stacked_rows([next(order) if order is not None else None for order in orders], n, obs.device)
            loss = (values(obs[seeds, index])["v"] - targets[seeds, index]).pow(2).mean(1)  # [S]: (V − target)²
            stack.zero_grad()
            loss.sum().backward()  # ∇_θs Σ_s' L_s' = ∇_θs L_s
            stack.share_grads()
            step_together(optimizers)
            losses.append(loss.detach())
    return torch.stack(losses).mean(0)
