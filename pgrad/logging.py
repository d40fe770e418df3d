"""Run logging: ``progress.csv`` (deterministic metrics), ``eval.csv`` (evaluations during training),
TensorBoard, and a rich progress bar.

``progress.csv`` holds only quantities that a seed determines, so two runs of the same seed and
config on CPU write identical files. Wall-clock quantities (SPS, elapsed time) go to TensorBoard,
``timing.csv`` and the progress bar. Metric names follow CleanRL (``charts/``, ``losses/``).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pgrad.checkpoint import CheckpointError, atomic_write


class RunLogger:
    """``progress_bar``: a rich bar on a terminal; where stderr is not one (a pipe, a file, a CI log)
    a plain line at the first update, every ``LINE_EVERY`` seconds and at the last, since a bar
    there would print nothing until the run ends."""

    LINE_EVERY = 5.0  # seconds between plain progress lines

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        tensorboard: bool = True,
        progress_bar: bool = True,
        resume_step: int | None = None,
        trackers: Any = None,
    ):
        """``resume_step``: continue a run's files, dropping the rows logged after that step
        (written after its last checkpoint), so the resumed files have no duplicate or missing row.
        ``trackers`` (``pgrad.tracking.Trackers``) receive every scalar TensorBoard does."""
        self.run_dir = Path(run_dir)
        self.trackers = trackers
        self.total_steps = total_steps
        self._csv: csv.DictWriter | None = None
        self._offset = 0.0  # wall time before the resume, so SPS stays per whole run
        if resume_step is None:
            self._csv_file = open(self.run_dir / "progress.csv", "w", newline="")
            self._timing_file = open(self.run_dir / "timing.csv", "w", newline="")
            self._timing = csv.writer(self._timing_file)
            self._timing.writerow(["global_step", "time_elapsed", "sps"])
        else:
            fields, _ = _truncate_csv(self.run_dir / "progress.csv", resume_step)
            _, timing_rows = _truncate_csv(self.run_dir / "timing.csv", resume_step)
            self._offset = float(timing_rows[-1]["time_elapsed"]) if timing_rows else 0.0
            self._csv_file = open(self.run_dir / "progress.csv", "a", newline="")
            if fields:
                self._csv = csv.DictWriter(self._csv_file, fieldnames=fields, restval="")
            self._timing_file = open(self.run_dir / "timing.csv", "a", newline="")
            self._timing = csv.writer(self._timing_file)
            if not timing_rows:
                self._timing.writerow(["global_step", "time_elapsed", "sps"])
        self.best_eval = -math.inf  # the best evaluation mean so far (of the rows kept on a resume)
        self._eval_file = None
        self._eval: csv.writer | None = None
        if resume_step is not None and (self.run_dir / "eval.csv").is_file():
            eval_fields, eval_rows = _truncate_csv(self.run_dir / "eval.csv", resume_step)
            self.best_eval = max((float(r["mean_return"]) for r in eval_rows), default=-math.inf)
            self._eval_file = open(self.run_dir / "eval.csv", "a", newline="")
            self._eval = csv.writer(self._eval_file) if eval_fields else None
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1  # drop events after the checkpoint
            self._writer = SummaryWriter(str(self.run_dir), purge_step=purge)
        self._start = time.perf_counter()
        self._progress: Progress | None = None
        console = Console(stderr=True)
        self._lines = progress_bar and not console.is_terminal
        self._last_line: float | None = None
        if progress_bar and not self._lines:
            self._progress = Progress(
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("steps · {task.fields[sps]} SPS · return {task.fields[ret]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(
                "training", total=total_steps, completed=resume_step or 0, sps="-", ret="-"
            )
            self._progress.start()

    def log(self, global_step: int, metrics: dict[str, float]) -> None:
        """One row per update: to progress.csv, TensorBoard, and the progress bar."""
        row: dict[str, Any] = {"global_step": global_step, **metrics}
        if self._csv is None:
            self._csv = csv.DictWriter(self._csv_file, fieldnames=list(row), restval="")
            self._csv.writeheader()
        self._csv.writerow({k: row[k] for k in row if k in self._csv.fieldnames})
        self._csv_file.flush()
        elapsed = self.elapsed
        sps = global_step / max(elapsed, 1e-9)
        self._timing.writerow([global_step, f"{elapsed:.3f}", f"{sps:.1f}"])
        self._timing_file.flush()
        if self._writer is not None or self.trackers is not None:  # a dict per update only when someone reads it
            scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self._scalars(global_step, scalars | {"charts/SPS": sps})
        ret = metrics.get("charts/episodic_return", float("nan"))
        ret_text = "-" if not math.isfinite(ret) else f"{ret:.1f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=min(global_step, self.total_steps), sps=f"{sps:,.0f}",
                                  ret=ret_text)  # fmt: skip
        elif self._lines:
            now = time.perf_counter()
            if self._last_line is None or now - self._last_line >= self.LINE_EVERY or global_step >= self.total_steps:
                self._last_line = now
                print(f"step {global_step:,}/{self.total_steps:,} · {sps:,.0f} SPS · return {ret_text} · "
                      f"{elapsed:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    def log_eval(self, global_step: int, returns: list[float]) -> bool:
        """A row of ``eval.csv`` (step, mean, std, each episode's return) and TensorBoard's
        ``eval/mean_return``, ``eval/std_return``; whether the mean is the best so far."""
        mean, std = float(np.mean(returns)), float(np.std(returns))
        if self._eval_file is None:
            self._eval_file = open(self.run_dir / "eval.csv", "w", newline="")
        if self._eval is None:
            self._eval = csv.writer(self._eval_file)
            self._eval.writerow(
                ["global_step", "mean_return", "std_return", *(f"return_{i}" for i in range(len(returns)))]
            )
        self._eval.writerow([global_step, repr(mean), repr(std), *map(repr, map(float, returns))])
        self._eval_file.flush()
        self._scalars(global_step, {"eval/mean_return": mean, "eval/std_return": std})
        best = mean > self.best_eval
        self.best_eval = max(self.best_eval, mean)
        return best

    def _scalars(self, global_step: int, scalars: dict[str, float]) -> None:
        """To TensorBoard and the trackers."""
        if self._writer is not None:
            self._tensorboard(global_step, scalars)
        if self.trackers is not None:
            self.trackers.log(global_step, scalars)

    def _tensorboard(self, global_step: int, scalars: dict[str, float]) -> None:
        """All of a row's scalars in one TensorBoard event: 0.11 ms a row of 12 scalars, where
        ``add_scalar`` per metric (an event each) took 0.78 ms, which a row per update pays."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._writer._get_file_writer().add_summary(Summary(value=values), global_step)

    @property
    def elapsed(self) -> float:
        return self._offset + time.perf_counter() - self._start

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._csv_file.close()
        self._timing_file.close()
        if self._eval_file is not None:
            self._eval_file.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_csv(path: Path, last_step: int) -> tuple[list[str] | None, list[dict[str, str]]]:
    """Keep the rows with ``global_step <= last_step``; returns ``(header, rows kept)``.

    The file is replaced atomically (a kill during the rewrite leaves the old file whole). When no
    row is kept (a checkpoint written before the first logged row) the file is left empty and the
    header is ``None``: the caller writes it again with the first row."""
    rows: list[dict[str, str]] = []
    fields: list[str] | None = None
    if path.is_file():
        text = path.read_text()
        if text and not text.endswith("\n"):  # a row cut short by a kill or a full disk: not a row
            text = text[: text.rfind("\n") + 1]
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames) if reader.fieldnames else None
            rows = [row for row in reader if _step(row, path) <= last_step]
    if not rows:
        fields = None
    out = io.StringIO()
    if fields is not None:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, out.getvalue().encode())
    return fields, rows


def _step(row: dict[str, str], path: Path) -> int:
    try:
        return int(row["global_step"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: a row without a valid global_step ({row}); the file is corrupt") from None
