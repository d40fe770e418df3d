"""The trust-region core shared by NPG and TRPO (notes: "Natural Policy Gradient", "TRPO").

Both solve   max_θ' ∇L(θ)ᵀ(θ' − θ)   s.t.   KL(π_θ‖π_θ') ≈ ½ (θ' − θ)ᵀ F (θ' − θ) ≤ δ
whose solution is θ' = θ + α F⁻¹∇L with α = √(2δ / ∇Lᵀ F⁻¹ ∇L). Here F⁻¹∇L is found by
conjugate gradient from Fisher-vector products, never forming F. NPG applies the step as it
is; TRPO backtracks it until the exact KL ≤ δ and the surrogate improved.

Everything works on the flat vector of a list of parameters (every policy parameter, the
Gaussian's log-std included: CHECKLIST item 27).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def flat_params(params: Sequence[nn.Parameter]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_params(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def flat_grad(output: Tensor, params: Sequence[nn.Parameter], create_graph: bool = False) -> Tensor:
    """∇_θ output as one flat vector (zeros for parameters the output does not depend on)."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=create_graph, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def fisher_vector_product(
    mean_kl: Tensor, params: Sequence[nn.Parameter], damping: float
) -> Callable[[Tensor], Tensor]:
    """``v ↦ (F + ζI) v`` where F is the Hessian of ``mean_kl`` at the current parameters.

    ``mean_kl`` must be KL(π_old‖π_θ) with π_old *detached* at the current θ: then KL = 0 and
    ∇KL = 0 there, and its Hessian is the Fisher matrix F = E[∇log π ∇log πᵀ] (CHECKLIST item 23).
    # Fisher-vector product: F v = ∇_θ ( (∇_θ KL)ᵀ v ),  double backprop, no explicit matrix
    """
    grad_kl = flat_grad(mean_kl, params, create_graph=True)

    def product(v: Tensor) -> Tensor:
        hvp = torch.autograd.grad(grad_kl @ v, params, retain_graph=True, allow_unused=True)
        flat = torch.cat(
            [(torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(hvp, params, strict=True)]
        )
        return flat + damping * v

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
        alpha = step_scale(cg.x, fvp(cg.x), max_kl)
        return alpha * cg.x, cg
