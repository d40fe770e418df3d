"""Experiment trackers beside the run's own files: ``--track wandb``, ``--track mlflow``.

Every run writes TensorBoard, ``progress.csv``/``eval.csv`` and stdout lines (``pgrad.logging``);
a tracker receives the same scalars at the same steps, the config when the run starts, and the
run's files when it ends. The protocol is three calls, so another service is one small class:

    start(run_dir, name, config, resume_id)  -> the tracked run's id (kept in tracking.json)
    log(step, scalars)
    finish(run_dir, files, failed)

A resumed run continues the same tracked run (its id is in ``RUN_DIR/tracking.json``).
W&B honours ``WANDB_MODE=offline`` (no account, no network: ``wandb sync`` uploads later);
MLflow logs to ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
in the working directory).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

from pgrad.checkpoint import atomic_write

TRACKERS = ("wandb", "mlflow")
TRACKING_FILE = "tracking.json"
EXTRA = "pip install 'pgrad[track]'"


class Tracker(Protocol):
    def start(self, run_dir: Path, name: str, config: dict[str, Any], resume_id: str | None) -> str: ...
    def log(self, step: int, scalars: dict[str, float]) -> None: ...
    def finish(self, run_dir: Path, files: list[Path], failed: bool) -> None: ...


class Wandb:
    def __init__(self, project: str):
        self.project, self.run = project, None

    def start(self, run_dir: Path, name: str, config: dict[str, Any], resume_id: str | None) -> str:
        import wandb

        self.run = wandb.init(project=self.project, name=name, dir=str(run_dir), config=config, id=resume_id,
                              resume="allow" if resume_id else None, reinit="create_new")  # fmt: skip
        return self.run.id

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def finish(self, run_dir: Path, files: list[Path], failed: bool) -> None:
        for path in files:
            self.run.save(str(path), base_path=str(run_dir), policy="end")
        self.run.finish(exit_code=1 if failed else 0)


class Mlflow:
    def __init__(self, experiment: str, uri: str | None):
        self.experiment, self.uri, self.run = experiment, uri, None

    def start(self, run_dir: Path, name: str, config: dict[str, Any], resume_id: str | None) -> str:
        import mlflow

        self.client = mlflow.MlflowClient(self.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri())
        if resume_id is not None:
            self.run_id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
        else:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment = found.experiment_id if found else self.client.create_experiment(self.experiment)
            self.run_id = self.client.create_run(experiment, run_name=name).info.run_id
            params = [mlflow.entities.Param(k, json.dumps(v)[:6000]) for k, v in config.items()]
            self.client.log_batch(self.run_id, params=params)
        return self.run_id

    def log(self, step: int, scalars: dict[str, float]) -> None:
        import mlflow

        now = int(time.time() * 1000)
        metrics = [mlflow.entities.Metric(k, float(v), now, step) for k, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, run_dir: Path, files: list[Path], failed: bool) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def default_mlflow_uri() -> str:
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def check_available(names: tuple[str, ...]) -> None:
    """Each tracker's package imports (before the run writes anything), or one line saying what to install."""
    for name in names:
        module = {"wandb": "wandb", "mlflow": "mlflow"}[name]
        try:
            __import__(module)
        except ImportError:
            raise ValueError(f"track={name!r} needs the {module} package: {EXTRA}") from None


class Trackers:
    """The run's trackers together: started with the config, fed every scalar, finished with the files."""

    def __init__(self, cfg: Any, run_dir: Path, algo: str, config: dict[str, Any]):
        self.run_dir, self.algo, self.config = run_dir, algo, config
        self.items: dict[str, Tracker] = {}
        for name in cfg.track:
            self.items[name] = (
                Wandb(cfg.track_project) if name == "wandb" else Mlflow(cfg.track_project, cfg.tracking_uri)
            )
        self.name = f"{algo}-{cfg.env}-{cfg.seed}-{run_dir.name}"

    def start(self) -> None:
        if not self.items:
            return
        path = self.run_dir / TRACKING_FILE
        ids = json.loads(path.read_text()) if path.is_file() else {}
        for name, tracker in self.items.items():
            try:
                ids[name] = tracker.start(self.run_dir, self.name, {"algo": self.algo, **self.config}, ids.get(name))
            except Exception as e:  # a service that does not answer, a bad URI, no login: the tracker's own errors
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise ValueError(
                    f"--track {name} could not start its run ({type(e).__name__}: {first[:300]})"
                ) from None
        atomic_write(path, json.dumps(ids, indent=2).encode())

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tracker in self.items.values():
            tracker.log(step, scalars)

    def finish(self, failed: bool = False) -> None:
        files = [p for p in sorted(self.run_dir.iterdir()) if p.is_file() and p.name in RUN_ARTIFACTS]
        for tracker in self.items.values():
            tracker.finish(self.run_dir, files, failed)


RUN_ARTIFACTS = ("config.json", "progress.csv", "eval.csv", "eval.json", "curve.png", "model.safetensors", "agent.json",
                 "best_model.safetensors", "best_agent.json")  # fmt: skip
