"""The user's surface: pgrad.train/load/act, the run directory, presets, and the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pgrad
from pgrad.checkpoint import CheckpointError
from pgrad.cli import main
from pgrad.train import resolve_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "ppo"
    pgrad.train("ppo", env="CartPole-v1", total_steps=2_048, seed=0, run_dir=str(path), eval_episodes=2)
    return path


def test_run_directory_has_everything(run_dir):
    for name in (
        "config.json",
        "progress.csv",
        "model.safetensors",
        "agent.json",
        "curve.png",
        "eval.json",
        "timing.csv",
    ):
        assert (run_dir / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    header = (run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    for column in (
        "global_step",
        "charts/episodic_return",
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "charts/learning_rate",
    ):
        assert column in header, column


def test_the_curve_is_redrawn_at_each_checkpoint_and_evaluation_during_the_run(tmp_path):
    """A long run's curve.png shows the returns so far, written atomically (a reader never sees half)."""
    import matplotlib.image

    seen = []

    class Watch(pgrad.Callback):
        def on_update(self, step, metrics):
            curve = tmp_path / "run" / "curve.png"
            seen.append((step, curve.stat().st_mtime_ns if curve.is_file() else None))

    pgrad.train("ppo", env="CartPole-v1", total_steps=4_096, seed=0, run_dir=str(tmp_path / "run"), n_envs=4,
                n_steps=128, checkpoint_every=1_024, eval_every=1_536, eval_episodes=1, tensorboard=False,
                callbacks=[Watch()])  # fmt: skip
    assert seen[0] == (512, None)  # before the first checkpoint
    drawn = {mtime for _, mtime in seen if mtime is not None}
    assert len(drawn) >= 4  # redrawn at checkpoints 1024, 2048, 3072, evaluations 1536, 3072
    assert matplotlib.image.imread(tmp_path / "run" / "curve.png").shape[2] in (3, 4)
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_tensorboard_holds_every_csv_column_at_every_logged_step(run_dir):
    """Each progress row is written to TensorBoard as one event holding all of its scalars."""
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    tags = set(events.Tags()["scalars"])
    assert "charts/SPS" in tags
    for column in ("charts/episodic_return", "losses/policy_loss", "losses/approx_kl", "charts/learning_rate"):
        logged = events.Scalars(column)
        assert [e.step for e in logged] == [int(r["global_step"]) for r in rows], column
        np.testing.assert_allclose([e.value for e in logged], [float(r[column]) for r in rows], rtol=1e-6)


def test_config_json_records_values_and_their_sources(run_dir):
    data = json.loads((run_dir / "config.json").read_text())
    assert data["preset"] == "ppo/CartPole-v1"
    assert data["config"]["n_envs"] == 8 and data["sources"]["n_envs"] == "preset"
    assert data["config"]["total_steps"] == 2048 and data["sources"]["total_steps"] == "user"
    assert data["sources"]["vf_coef"] == "default"


def test_save_load_act_single_and_batch(run_dir, tmp_path):
    agent = pgrad.load(run_dir)
    obs = np.zeros(4, np.float32)
    single = agent.act(obs)
    assert isinstance(single, int) and single in (0, 1)
    batch = agent.act(np.zeros((5, 4), np.float32))
    assert batch.shape == (5,)
    agent.save(tmp_path / "copy")
    again = pgrad.load(tmp_path / "copy")
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), again.act(obs))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        agent.act(np.zeros(3))


def test_presets_apply_and_user_fields_override():
    cfg, sources, name = resolve_config("ppo", "CartPole-v1", "auto", {"n_epochs": 3})
    assert name == "ppo/CartPole-v1" and cfg.n_envs == 8 and cfg.n_epochs == 3 and sources["n_epochs"] == "user"
    plain, _, none = resolve_config("ppo", "CartPole-v1", "none", {})
    assert none is None and plain.n_envs == 1 and plain.n_steps == 2048


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algo": "ppp"}, r"unknown algorithm 'ppp'.*Did you mean: ppo"),
        ({"env": "CartPol-v1"}, r"unknown env id 'CartPol-v1'.*CartPole-v1"),
        ({"learning_rate": -1.0}, r"learning_rate=-1.0 is invalid: must be a finite number > 0"),
        ({"gamma": 1.5}, r"gamma=1.5 is invalid: must be a number in \[0.0, 1.0\]"),
        ({"batch_size": 10_000}, r"batch_size=10000 is invalid: must be <= n_steps × n_envs = 256"),
        ({"n_epoch": 3}, r"unknown ppo config field 'n_epoch'.*n_epochs"),
        ({"clip_range": 0.0}, r"clip_range=0.0 is invalid"),
        ({"preset": "zoo"}, r"preset='zoo' is invalid"),
    ],
)
def test_python_api_errors_name_the_bad_value(kwargs, match, tmp_path):
    args = {"algo": "ppo", "env": "CartPole-v1", "total_steps": 1000, "run_dir": str(tmp_path / "r")} | kwargs
    with pytest.raises(ValueError, match=match):
        pgrad.train(**args)


def test_existing_run_dir_is_not_overwritten(run_dir):
    before = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(run_dir))
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_corrupt_and_foreign_checkpoints_give_clear_errors(run_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "agent.json").write_text((run_dir / "agent.json").read_text())
    (bad / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        pgrad.load(bad)
    (bad / "agent.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a pgrad agent"):
        pgrad.load(bad)
    with pytest.raises(CheckpointError, match="no agent.json"):
        pgrad.load(tmp_path)


def test_pickle_in_place_of_a_checkpoint_is_never_executed(run_dir, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "agent.json").write_text((run_dir / "agent.json").read_text())
    (evil / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        pgrad.load(evil)
    assert not marker.exists()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ppp"], "unknown algorithm 'ppp'"),
        (["train", "ppo", "--env", "CartPol-v1"], "CartPole-v1"),
        (["train", "ppo", "--learning-rate", "-3"], "learning_rate=-3.0 is invalid"),
        (["eval", "/nonexistent/run"], "is not a directory with a saved pgrad agent"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(args, message):
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_train_eval_plot_list(tmp_path):
    run = tmp_path / "cli-run"
    result = cli(
        "train",
        "ppo",
        "--env",
        "CartPole-v1",
        "--total-steps",
        "512",
        "--n-epochs",
        "2",
        "--run-dir",
        str(run),
        "--eval-episodes",
        "1",
        "--no-tensorboard",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((run / "config.json").read_text())
    assert data["config"]["n_epochs"] == 2 and data["sources"]["n_epochs"] == "user"
    assert data["sources"]["n_envs"] == "preset"
    result = cli("eval", str(run), "--episodes", "2")
    assert result.returncode == 0 and "mean return" in result.stdout
    assert main(["plot", str(run), str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    result = cli("list")
    assert result.returncode == 0 and "ppo" in result.stdout and "CartPole-v1" in result.stdout
    assert "E[min(r·A" in result.stdout  # rich markup must not eat the equation


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path):
    """Piped to a file or a CI log, a bar would print nothing until the end: plain lines instead, at
    the first update, every few seconds and at the last."""
    result = cli("train", "ppo", "--env", "CartPole-v1", "--total-steps", "4096", "--preset", "none", "--n-steps",
                 "256", "--batch-size", "64", "--run-dir", str(tmp_path / "r"), "--eval-episodes", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 256/4,096 · ") and lines[-1].startswith("step 4,096/4,096 · ")
    assert all(" SPS · return " in line for line in lines)
    assert "━" not in result.stderr  # no bar characters in a log


def test_cli_help_lists_every_field_with_defaults():
    result = cli("train", "ppo", "--env", "CartPole-v1", "--help")
    assert result.returncode == 0
    for flag in ("--learning-rate", "--clip-range", "--n-epochs", "--gae-lambda", "--target-kl", "--total-steps"):
        assert flag in result.stdout, flag
    assert "ppo/CartPole-v1" in result.stdout
