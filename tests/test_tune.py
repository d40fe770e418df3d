"""``pgrad tune``: Optuna over RL Zoo's search spaces, pruning through the evaluation callback, a
resumable study, parallel trials on Ray, and results written as a preset table and a Zoo entry."""

from __future__ import annotations

import csv
import subprocess
import sys
import tomllib

import pytest

from pgrad.algos import get_algo
from pgrad.train import resolve_config
from pgrad.tune import SPACES, objective
from pgrad.zoo import read_zoo

optuna = pytest.importorskip("optuna")

TINY = ["--total-steps", "1024", "--eval-every", "512", "--eval-episodes", "2", "--set", "n_envs=2",
        "--set", "n_steps=128"]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("algo", SPACES)
def test_every_sampled_config_is_valid(algo):
    env = "CartPole-v1" if algo in ("ppo", "a2c", "trpo", "npg") else "Pendulum-v1"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = SPACES[algo](trial, 4)
        cfg, _, _ = resolve_config(algo, env, "none", params | {"n_envs": 4})  # raises on any invalid value
        assert all(getattr(cfg, k) == (tuple(v) if isinstance(v, list) else v) for k, v in params.items())
        study.tell(trial, 0.0)


def test_tune_writes_the_best_trial_as_a_preset_and_a_zoo_entry_and_resumes(tmp_path):
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'study.db'}"
    result = cli("tune", "ppo", "--env", "CartPole-v1", "--trials", "3", *TINY, "--storage", db, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" for r in rows)
    best = max(rows, key=lambda r: float(r["value"]))
    assert f"best: trial {best['number']} of 3" in result.stdout
    table = tomllib.loads((out / "best.toml").read_text())["ppo"]["CartPole-v1"]
    assert table["total_steps"] == 1024 and table["n_envs"] == 2 and table["n_steps"] == 128
    assert table["clip_range"] == float(best["clip_range"]) and table["n_epochs"] == int(best["n_epochs"])
    trial_config = resolve_config("ppo", "CartPole-v1", "none", table)[0]  # the preset table is a valid config
    zoo = read_zoo(out / "best.yml", "ppo", "CartPole-v1", get_algo("ppo").config_class)
    assert zoo.fields == {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    assert trial_config.hidden_sizes == zoo.fields["hidden_sizes"]
    more = cli("tune", "ppo", "--env", "CartPole-v1", "--trials", "4", *TINY, "--storage", db, "--out", str(out))
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(list(csv.DictReader(open(out / "trials.csv")))) == 4  # the study resumed: one more trial


def test_the_pruner_stops_a_trial_at_an_evaluation_through_the_callback(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    fixed = {"total_steps": 4096, "eval_every": 512, "eval_episodes": 1, "n_envs": 2, "n_steps": 128}
    study.optimize(objective("ppo", "CartPole-v1", fixed, tmp_path), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert list(study.trials[0].intermediate_values) == [512]  # n_steps=128 × n_envs=2: the second update
    steps = [int(r["global_step"]) for r in csv.DictReader(open(tmp_path / "trial-0000" / "progress.csv"))]
    assert steps[-1] < 4096  # stopped at its first evaluation, not run to the end


@pytest.mark.xdist_group("ray")
def test_trials_run_in_parallel_on_ray_workers(tmp_path):
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'study.db'}"
    result = cli("tune", "ppo", "--env", "CartPole-v1", "--trials", "2", *TINY, "--storage", db, "--out", str(out),
                 "--workers", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(csv.DictReader(open(out / "trials.csv")))) == 2
    assert {p.name for p in out.glob("trial-*")} == {"trial-0000", "trial-0001"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["ppo", "--workers", "2"], "--workers needs --storage"),
        (["dqn"], "unknown algorithm 'dqn'"),
        (["sac-discrete"], "pgrad tune has no search space for 'sac-discrete'"),
        (["ppo", "--trials", "0"], "--trials 0 is invalid"),
        (["ppo", "--set", "learning_rate=-1"], "learning_rate=-1 is invalid"),
    ],
)
def test_tune_errors_are_one_line(args, message, tmp_path):
    result = cli("tune", *args, "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
