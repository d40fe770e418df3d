"""Hooks into a training run: ``pgrad.train(..., callbacks=[...])``.

A callback subclasses :class:`Callback` and overrides the hooks it needs. Each hook receives
copies of what the run computed, never the run's own objects, so a callback cannot change what
the algorithm computes (a run with a callback that does nothing is bitwise the run without).
Returning ``False`` from ``on_update`` or ``on_eval`` stops training cleanly, as SB3's
``_on_step`` does: the run then saves its agent, evaluates it and ends like a finished run.

>>> class Log(pgrad.Callback):
...     def on_eval(self, step, result):
...         print(step, result.mean)
...         return result.mean < 475  # stop once solved
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgrad.agent import Agent
    from pgrad.evaluation import EvalResult


@dataclass(frozen=True)
class RunInfo:
    """What a callback may know about the run: its algorithm, config (a frozen dataclass), directory,
    the step it starts from (0, or a resumed checkpoint's) and the agent being trained (read it:
    ``agent.act`` is safe between updates; changing its weights changes the run)."""

    algo: str
    config: Any
    run_dir: Path
    start_step: int
    agent: Agent


class Callback:
    """The protocol: every hook is optional and does nothing by default."""

    def on_training_start(self, run: RunInfo) -> None:
        """Before the first update (of a new or a resumed run)."""

    def on_update(self, step: int, metrics: dict[str, float]) -> bool | None:
        """After each update (each training round off-policy): the env steps so far and the update's
        metrics (``charts/episodic_return``, ``losses/...``). ``False`` stops training."""

    def on_eval(self, step: int, result: EvalResult) -> bool | None:
        """After each evaluation during training (``eval_every``): its returns and lengths per
        episode. ``False`` stops training."""

    def on_training_end(self, agent: Agent, steps: int) -> None:
        """After the agent is saved and evaluated (``agent.evaluation``), stopped early or not."""


class StopAtReturn(Callback):
    """Stop once an evaluation's mean return reaches ``threshold`` (SB3's StopTrainingOnRewardThreshold;
    ``--stop-at-return R``)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def on_eval(self, step: int, result: EvalResult) -> bool:
        return result.mean < self.threshold


def checked(callbacks: Any) -> list[Callback]:
    """A list of :class:`Callback` instances (one alone is accepted), or a ``ValueError`` naming what is not."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError(f"callbacks={callbacks!r} is invalid: a list of pgrad.Callback instances")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            what = "a class: pass an instance, Name()" if isinstance(cb, type) else type(cb).__name__
            raise ValueError(f"callbacks: {cb!r} is invalid ({what}): each must be a pgrad.Callback instance")
    return list(callbacks)


def wants_stop(answers: list[bool | None]) -> bool:
    """Whether any hook answered ``False`` (``None``, a hook that returns nothing, continues)."""
    for answer in answers:
        if answer is not None and not isinstance(answer, bool):
            raise TypeError(f"a callback hook returned {answer!r}: return True/None to continue, False to stop")
    return any(answer is False for answer in answers)
