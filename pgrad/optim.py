"""Optimiser helpers every algorithm shares: Adam and RMSprop that step in a few kernel calls, and
global grad-norm clipping.

Each computes what its torch counterpart computes (``torch.optim.Adam(fused=True)`` and
``torch.optim.RMSprop(foreach=True)`` bitwise, with the same state, so checkpoints are
interchangeable; ``torch.nn.utils.clip_grad_norm_`` up to float rounding: all tested). They only spend less time around the
kernels, which is most of the cost for the small MLPs of RL on a CPU. Measured on the 12 parameter
tensors of a 64-64 actor-critic, one thread: ``torch.optim.Adam`` 310 µs a step (per tensor),
fused 83 µs, :class:`Adam` 33 µs; ``zero_grad`` 9.5 → 0.7 µs; clipping 72 → 20 µs. torch's
``step`` spends the difference regrouping the tensors by device and dtype and checking options
that pgrad never sets (benchmarks/RESULTS.md).

The kernels they call are torch's private ones (``torch._fused_adam_``, ``torch._foreach_*``). A
torch build without them, or whose kernel refuses the arguments, gets torch's public step instead
(tested by removing them): slower, the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

_ONE = torch.ones(())
# torch's private kernels, looked up once; a build without one (or whose signature differs) gets
# torch's public path instead: Adam(fused=True) or foreach, torch.nn.utils.clip_grad_norm_.
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)
_FOREACH = all(
    hasattr(torch, name)
    for name in ("_foreach_add_", "_foreach_mul_", "_foreach_addcmul_", "_foreach_sqrt", "_foreach_addcdiv_")
)
_FOREACH_NORM = getattr(torch, "_foreach_norm", None)


def _count_step(steps: list[Tensor]) -> None:
    """t ← t + 1 on every step counter. Counters on the CPU take a tensor 1: with a Python 1 the
    foreach op wraps it in a new tensor once per counter (21 → 6 µs for 12; torch's RMSprop does the same)."""
    if steps[0].is_cpu:
        torch._foreach_add_(steps, _ONE, alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)


class _LeanStep:
    """``step`` for the options pgrad uses; anything else (a closure, first steps that create
    the state, amsgrad, weight decay, …) goes to torch's own ``step``."""

    lean = True  # False once the private kernel is missing or refused its arguments: torch's step from then on

    def _lean_group(self, group: dict) -> bool:
        raise NotImplementedError

    def _lean_step(self, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self.lean:
            return super().step(closure)
        groups = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state[p] for p in params]
            if not self._lean_group(group) or not all(states):  # an option pgrad never sets, or step 1
                return super().step()
            groups.append((group, params, states))
        for k, (group, params, states) in enumerate(groups):
            if not params:
                continue
            try:
                self._lean_step(group, params, [p.grad for p in params], states)
            except (TypeError, RuntimeError, AttributeError):
                if k:  # earlier groups took the step already: cannot redo this one cleanly
                    raise
                # Another torch build's kernel: undo the step count, take torch's own step from now on.
                for state in states:
                    state["step"] -= 1
                self.lean = False
                return super().step()
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


class Adam(_LeanStep, torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` (one fused kernel for all tensors, CPU and CUDA)."""

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999)
    ):
        params = list(params)
        try:
            super().__init__(params, lr=lr, eps=eps, betas=betas, fused=True)
        except RuntimeError:  # a torch without a fused CPU Adam (before 2.4): the foreach one
            super().__init__(params, lr=lr, eps=eps, betas=betas, foreach=True)
            self.lean = False
        self.lean = self.lean and _FUSED_ADAM is not None

    def _lean_group(self, group: dict) -> bool:
        return not (
            group["amsgrad"] or group["weight_decay"] or group["maximize"] or group["capturable"]
        ) and isinstance(group["lr"], float)

    def _lean_step(self, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict]) -> None:
        steps = [s["step"] for s in states]
        beta1, beta2 = group["betas"]
        _count_step(steps)  # t ← t + 1, then the fused Adam update (bias-corrected m̂, v̂)
        _FUSED_ADAM(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )


class RMSprop(_LeanStep, torch.optim.RMSprop):
    """``torch.optim.RMSprop(foreach=True)`` without momentum or centering (A2C's, as SB3/A3C)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, alpha: float, eps: float):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, foreach=True)
        self.lean = _FOREACH

    def _lean_group(self, group: dict) -> bool:
        return (
            not (group["momentum"] or group["centered"] or group["weight_decay"] or group["maximize"])
            and not group["capturable"]
        )

    def _lean_step(self, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict]) -> None:
        alpha, eps = group["alpha"], group["eps"]
        square_avgs = [s["square_avg"] for s in states]
        _count_step([s["step"] for s in states])
        # v ← α v + (1 − α) g²;  θ ← θ − lr · g / (√v + ε)
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, eps)
        torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])


def step_together(optimizers: list[Adam | RMSprop]) -> None:
    """Each of ``optimizers``' steps (many seeds' optimizers, ``pgrad train --seeds``), in one call of
    the kernels when they are lean optimizers of one class, one parameter group each, with the same
    hyperparameters, and their state exists (Adam and RMSprop are elementwise: one call over all
    their tensors computes what each step computes); otherwise each takes its own step."""
    groups = [o.param_groups[0] for o in optimizers]
    settings = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    lean = all(
        type(o) is type(optimizers[0]) and isinstance(o, _LeanStep) and o.lean and len(o.param_groups) == 1
        and o._lean_group(g) and setting == settings[0]
        for o, g, setting in zip(optimizers, groups, settings, strict=True)
    )  # fmt: skip
    params = [p for g in groups for p in g["params"] if p.grad is not None] if lean else []
    states = [o.state[p] for o, g in zip(optimizers, groups, strict=True) for p in g["params"] if p.grad is not None]
    if not (lean and params and all(states)):
        for o in optimizers:
            o.step()
        return
    with torch.no_grad():
        try:
            optimizers[0]._lean_step(groups[0], params, [p.grad for p in params], states)
        except (TypeError, RuntimeError, AttributeError):  # another torch build's kernel: each its own step
            for state in states:
                state["step"] -= 1
            for o in optimizers:
                o.lean = False
                o.step()


def adam(
    params: Iterable[nn.Parameter], lr: float, eps: float = 1e-8, betas: tuple[float, float] = (0.9, 0.999)
) -> Adam:
    """Adam over ``params`` (β = (0.9, 0.999) unless given: CrossQ's β₁ is 0.5), one fused kernel a step."""
    return Adam(params, lr, eps, betas)


def clip_grad_norm_(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale the gradients in place so that their global L2 norm is at most ``max_norm``.

    g ← g · min(1, max_norm / (‖g‖₂ + 1e-6)),  ‖g‖₂ over all parameters together (CHECKLIST E.2),
    as ``torch.nn.utils.clip_grad_norm_``, whose CPU path takes one norm kernel per tensor.
    Returns the norm before clipping.
    """
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if _FOREACH_NORM is None or not _FOREACH:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    total = torch.linalg.vector_norm(torch.stack(_FOREACH_NORM(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def norms(tensors: list[Tensor]) -> list[Tensor]:
    """Each tensor's L2 norm: one fused kernel where torch has it."""
    if _FOREACH_NORM is None:
        return [torch.linalg.vector_norm(t) for t in tensors]
    return list(_FOREACH_NORM(tensors))
