"""Learning curves from run directories: one line per run, or mean ± std over the seeds of a config."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from pgrad.checkpoint import atomic_write

# Fields that differ between seeds of one experiment and do not define it.
_NOT_PART_OF_EXPERIMENT = {"seed", "run_dir", "overwrite", "progress_bar", "tensorboard", "device", "torch_threads",
                           "verbose", "save_final_checkpoint", "track", "track_project", "tracking_uri"}  # fmt: skip


def read_curve(run_dir: str | Path, metric: str = "charts/episodic_return") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a progress.csv column, or of eval.csv's for ``eval/mean_return``-like names."""
    path = Path(run_dir) / "progress.csv"
    if metric.startswith("eval/") and metric not in _header(path):
        path, metric = Path(run_dir) / "eval.csv", metric[len("eval/") :]
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir!s}: no progress.csv (not a pgrad run directory?)")
    steps, values = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if metric not in row:
                raise KeyError(f"{path}: no column {metric!r}; columns are {list(row)}")
            value = float(row[metric]) if row[metric] not in ("", None) else float("nan")
            steps.append(float(row["global_step"]))
            values.append(value)
    return np.array(steps), np.array(values)


def _header(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def experiment_key(run_dir: str | Path) -> str:
    """Runs with equal keys are seeds of one experiment: algo, env and every non-seed setting."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return str(run_dir)
    data = json.loads(path.read_text())
    values = {k: v for k, v in data["config"].items() if k not in _NOT_PART_OF_EXPERIMENT}
    return json.dumps({"algo": data["algo"], **values}, sort_keys=True)


def _differing_fields(keys: list[str]) -> list[str]:
    """The config fields whose values differ between experiments (e.g. a sweep's grid)."""
    configs = []
    for key in keys:
        try:
            configs.append(json.loads(key))
        except json.JSONDecodeError:
            return []
    names = sorted({k for c in configs for k in c})
    return [n for n in names if len({json.dumps(c.get(n)) for c in configs}) > 1]


def _differences(key: str, fields: list[str]) -> str:
    if not fields:
        return ""
    config = json.loads(key)
    return " " + ", ".join(f"{n}={config.get(n)}" for n in fields)


def _label(run_dirs: list[Path]) -> str:
    path = run_dirs[0] / "config.json"
    if path.is_file():
        data = json.loads(path.read_text())
        label = f"{data['algo']} {data['config']['env']}"
    else:
        label = run_dirs[0].name
    return label if len(run_dirs) == 1 else f"{label} ({len(run_dirs)} seeds)"


def plot_runs(
    run_dirs: list[str | Path], out: str | Path, metric: str = "charts/episodic_return", title: str | None = None
) -> Path:
    """Plot ``metric`` against steps; seeds of one experiment become a mean line and a ±1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Path]] = defaultdict(list)
    for run in run_dirs:
        groups[experiment_key(run)].append(Path(run))
    differing = _differing_fields(list(groups))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, runs in groups.items():
        label = _label(runs) + _differences(key, differing)
        curves = [read_curve(r, metric) for r in runs]
        if len(curves) == 1:
            ax.plot(*curves[0], label=label)
            continue
        grid = np.linspace(0, min(c[0][-1] for c in curves), 200)
        ys = np.stack([np.interp(grid, steps, values) for steps, values in curves])
        mean, std = np.nanmean(ys, 0), np.nanstd(ys, 0)
        (line,) = ax.plot(grid, mean, label=label)
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric.split("/")[-1].replace("_", " "))
    ax.set_title(title or metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out, image = Path(out), io.BytesIO()
    fig.savefig(image, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write(out, image.getvalue())  # redrawn during a run: a reader never sees half a figure
    return out
