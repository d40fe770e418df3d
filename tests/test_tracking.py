"""Experiment trackers: W&B in its offline mode and MLflow on a local SQLite store receive the same
scalars as progress.csv and eval.csv, the config, and the run's files; a resumed run continues its
tracked run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

import pgrad

SMALL = ["--total-steps", "512", "--preset", "none", "--n-steps", "128", "--n-envs", "2", "--batch-size", "64",
         "--n-epochs", "2", "--eval-every", "256", "--eval-episodes", "2"]  # fmt: skip


def cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ | (env or {}), cwd=cwd)  # fmt: skip


def columns(path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_wandb_offline_gets_every_scalar_the_config_and_the_files(tmp_path):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    result = cli("train", "ppo", *SMALL, "--track", "wandb", "--run-dir", str(run),
                 env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (offline,) = (run / "wandb").glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()  # W&B's log of the run's records, for `wandb sync`
    for name in [*columns(run / "progress.csv")[1:], "eval/mean_return", "eval/final_mean_return", "n_epochs",
                 "learning_rate"]:  # fmt: skip
        assert name.encode() in record, name
    saved = {p.name for p in (offline / "files").iterdir()}
    assert {
        "config.json",
        "progress.csv",
        "eval.csv",
        "eval.json",
        "model.safetensors",
        "best_model.safetensors",
    } <= saved
    assert json.loads((run / "tracking.json").read_text())["wandb"] == offline.name.split("-")[-1]


def test_mlflow_gets_the_same_scalars_params_and_artifacts_and_a_resume_continues_the_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    args = ["--track", "mlflow", "--tracking-uri", uri, "--track-project", "tests", "--run-dir", str(run)]
    result = cli("train", "ppo", *SMALL, *args, "--save-final-checkpoint", cwd=tmp_path)  # artifacts: ./mlruns
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert cli("train", "--resume", str(run), "--total-steps", "768", cwd=tmp_path).returncode == 0
    assert json.loads((run / "tracking.json").read_text())["mlflow"] == run_id  # the same tracked run
    client = mlflow.MlflowClient(uri)
    tracked = client.get_run(run_id)
    assert tracked.info.status == "FINISHED" and tracked.data.params["n_epochs"] == "2"
    assert tracked.info.experiment_id == client.get_experiment_by_name("tests").experiment_id
    rows = list(csv.DictReader(open(run / "progress.csv")))
    history = client.get_metric_history(run_id, "charts/episodic_return")
    assert [m.step for m in history] == [int(r["global_step"]) for r in rows]
    assert [m.value for m in history] == pytest.approx([float(r["charts/episodic_return"]) for r in rows])
    evals = [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/mean_return")]
    assert evals == [(int(r["global_step"]), pytest.approx(float(r["mean_return"])))
                     for r in csv.DictReader(open(run / "eval.csv"))]  # fmt: skip
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "progress.csv", "eval.csv", "model.safetensors", "agent.json"} <= artifacts


def test_a_tracker_whose_package_is_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ValueError, match=r"track='wandb' needs the wandb package: pip install 'pgrad\[track\]'"):
        pgrad.train("ppo", total_steps=256, track=("wandb",), run_dir=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    result = cli("train", "ppo", "--track", "comet", "--run-dir", str(tmp_path / "x"))
    assert result.returncode == 2 and "must be a tuple of 'wandb', 'mlflow'" in result.stderr


def test_a_tracker_that_cannot_start_is_one_line(tmp_path):
    pytest.importorskip("mlflow")
    result = cli("train", "ppo", "--total-steps", "256", "--track", "mlflow", "--tracking-uri", "bogus://nowhere",
                 "--run-dir", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 2 and "--track mlflow could not start its run" in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
