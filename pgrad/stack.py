"""Many seeds' networks as one: each parameter stacked on a leading seed dimension (issue 19).

Every seed keeps its own module, so acting, saving, checkpoints and evaluation see an ordinary
network; its parameters become views of one stacked tensor ``[S, ...]`` per parameter name. A
batched computation over the stacked tensors (``torch.func.vmap`` of the module's own forward,
:meth:`StackedParameters.vmap`) computes every seed's outputs in one pass of batched matrix
products, and its gradients land in the stacked tensors' ``.grad``; :meth:`share_grads` hands each
seed its slice as its parameters' ``.grad`` (views again), so each seed's own optimizer and
grad-norm clip act on its own slice, exactly as in a single run. A loss that is a sum over seeds
of each seed's loss gives each seed exactly its own gradient: the seeds share no parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from pgrad.networks import ACTIVATIONS, MLP


class StackedParameters:
    """The parameters of ``modules`` (one per seed, the same architecture) stacked, ``[S, ...]``."""

    def __init__(self, modules: Sequence[nn.Module]):
        self.modules = list(modules)
        self.names = [name for name, _ in self.modules[0].named_parameters()]
        for k, module in enumerate(self.modules):
            shapes = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
            if shapes != [(name, tuple(p.shape)) for name, p in self.modules[0].named_parameters()]:
                raise ValueError(
                    f"seed {k}'s network differs from seed 0's: the seeds of a stack share one architecture"
                )
            if any(True for _ in module.buffers()):
                raise ValueError(
                    "a network with running statistics (buffers) cannot be stacked over seeds; "
                    "train its seeds one run at a time"
                )
        with torch.no_grad():
            self.stacked = {
                name: torch.stack([dict(m.named_parameters())[name].detach() for m in self.modules]).requires_grad_()
                for name in self.names
            }
        self.per_seed: list[list[nn.Parameter]] = []
        for s, module in enumerate(self.modules):
            params = dict(module.named_parameters())
            for name in self.names:
                params[name].data = self.stacked[name].data[s]  # the same storage: a step on either is seen by both
            self.per_seed.append([params[name] for name in self.names])
        self._grads: list[Tensor | None] | None = None  # the stacked gradients the seeds' views are of

    def vmap(self, fn: Callable[..., dict[str, Tensor]]) -> Callable[..., dict[str, Tensor]]:
        """``fn(module, *per_seed_tensors) -> dict of tensors``, written for one seed with seed 0's
        module as the template, run for every seed at once: ``(*tensors [S, ...]) -> dict [S, ...]``.
        Gradients of the outputs flow into the stacked parameters."""
        template = self.modules[0]

        def one_seed(params: dict[str, Tensor], *tensors: Tensor) -> dict[str, Tensor]:
            return fn(lambda *inputs: functional_call(template, params, inputs), *tensors)

        batched = vmap(one_seed)
        return lambda *tensors: batched(self.stacked, *tensors)

    def zero_grad(self) -> None:
        """Zero the stacked gradients in place (the seeds' ``.grad`` views stay valid)."""
        for tensor in self.stacked.values():
            if tensor.grad is not None:
                tensor.grad.zero_()

    def share_grads(self) -> None:
        """After a backward pass: each seed's parameters see their slice of the stacked gradients
        as their ``.grad``. Autograd accumulates into an existing ``.grad`` in place, so the views
        are made once; a backward that replaced a gradient tensor gets new views."""
        grads = [self.stacked[name].grad for name in self.names]
        if self._grads is not None and all(g is h for g, h in zip(grads, self._grads, strict=True)):
            return
        for s, params in enumerate(self.per_seed):
            for p, grad in zip(params, grads, strict=True):
                p.grad = None if grad is None else grad[s]
        self._grads = grads

    def clip_grad_norms_(self, max_norm: float) -> Tensor:
        """Each seed's own global grad-norm clip, for all seeds at once (after :meth:`share_grads`):
        g_s ← g_s · min(1, max_norm / (‖g_s‖₂ + 1e-6)), ‖g_s‖₂ over all of seed s's parameters,
        as :func:`pgrad.optim.clip_grad_norm_` on each seed alone. Returns the norms ``[S]``."""
        grads = [g for g in (self.stacked[name].grad for name in self.names) if g is not None]
        per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [tensors, S]
        total = torch.linalg.vector_norm(per_tensor, dim=0)
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
        return total


def stacked_call(stack: StackedParameters, *inputs: Tensor, frozen: bool = False, submodule: str = "") -> Any:
    """Seed 0's module (or its ``submodule``, a dotted name) called on every seed's inputs
    ``[S, B, ...]`` with the stacked parameters: its :class:`~pgrad.networks.MLP` layers take all
    seeds in one batched product each (no vmap), and every other operation of its forward broadcasts
    over the leading seed dimension. For the networks :func:`check_plain` accepts. ``frozen``: the
    parameters lend their values and take no gradient (an actor's loss through its critics:
    gradients reach the actions only)."""
    prefix = f"{submodule}." if submodule else ""
    params = {k.removeprefix(prefix): v for k, v in stack.stacked.items() if k.startswith(prefix)}
    if frozen:
        params = {k: v.detach() for k, v in params.items()}
    return functional_call(stack.modules[0].get_submodule(submodule), params, inputs)


def check_plain(module: nn.Module, what: str) -> None:
    """Refuse a network :func:`stacked_call` cannot run: every Linear layer must sit in an
    :class:`~pgrad.networks.MLP` and every other layer be elementwise (no encoder, normalisation or
    dropout: their parameters or statistics would not be per seed)."""
    elementwise = tuple(ACTIVATIONS.values())
    in_mlp = {id(layer) for m in module.modules() if isinstance(m, MLP) for layer in m}
    for name, layer in module.named_modules():
        container = any(True for _ in layer.children())
        if container and not any(True for _ in layer.parameters(recurse=False)):
            continue
        if not container and id(layer) in in_mlp and isinstance(layer, (nn.Linear, *elementwise)):
            continue
        raise ValueError(
            f"{what}'s layer {name or 'itself'!r} ({type(layer).__name__}) cannot be stacked over seeds: --seeds "
            "takes plain MLPs of Linear layers and activations (no encoder, layer norm, dropout or SimBa block); "
            "train these seeds one run at a time"
        )


def stack_batches(batches: Sequence[dict[str, Tensor] | None]) -> dict[str, Tensor]:
    """The seeds' replay samples side by side, ``[S, B, ...]`` per key. A stopped seed's None borrows
    a running seed's rows: computed with, never stepped on."""
    running = next(b for b in batches if b is not None)
    return {k: torch.stack([(b if b is not None else running)[k] for b in batches]) for k in running}


def seed_noise(generators: Sequence[torch.Generator | None], shape: Sequence[int], like: Tensor) -> Tensor:
    """``[S, *shape]`` standard normal noise, each seed's from its own generator as its single run
    draws it (zeros for None: a stopped seed draws nothing)."""
    return torch.stack([
        torch.randn(shape, generator=g, dtype=like.dtype, device=like.device) if g is not None
        else torch.zeros(shape, dtype=like.dtype, device=like.device)
        for g in generators
    ])  # fmt: skip


def stacked_rows(drawn: Sequence[Tensor | slice | None], n: int, device) -> Tensor:
    """The seeds' minibatch rows of ``n`` samples (each seed's own draw: indices, or ``slice(None)``
    for all in place) as one index ``[S, size]``; a stopped seed's None takes any rows (0…size−1):
    computed with, never stepped on."""
    rows = [torch.arange(n, device=device)[i] if isinstance(i, slice) else i for i in drawn]
    size = next(len(r) for r in rows if r is not None)
    return torch.stack([torch.arange(size, device=device) if r is None else r for r in rows])


def side_by_side(rollouts: Sequence) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The seeds' rollout buffers' ``(rewards, values, next_values, terminated, truncated)``, each
    ``[T, N]``, as one ``[T, S·N]`` each: an estimator that works env by env (column by column: n-step
    returns, GAE) computes every seed's targets in one pass."""
    fields = ("rewards", "values", "next_values", "terminated", "truncated")
    return tuple(torch.cat([getattr(buf, name) for buf in rollouts], dim=1) for name in fields)


def per_seed(x: Tensor, seeds: int) -> Tensor:
    """``[T, S·N, ...]`` back to each seed's flat samples ``[S, T·N, ...]``, in a single run's ``t·N + n`` order."""
    T, M = x.shape[:2]
    return x.reshape(T, seeds, M // seeds, *x.shape[2:]).transpose(0, 1).flatten(1, 2)
