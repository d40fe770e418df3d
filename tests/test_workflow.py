"""The practitioner's workflow (issue 18): callbacks, evaluation during training and the best model,
stopping at a return, continuing and fine-tuning a run, devices — as a user drives them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import pgrad
from pgrad import checkpoint

PPO_SMALL = dict(preset="none", n_envs=2, n_steps=128, batch_size=64, n_epochs=2, eval_episodes=2)
SAC_SMALL = dict(learning_starts=100, batch_size=32, hidden_sizes=(32, 32), log_interval=50, eval_episodes=1)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=300)


def same_weights(a: Path, b: Path, name: str = "model.safetensors") -> bool:
    x, y = load_file(a / name), load_file(b / name)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


class Recorder(pgrad.Callback):
    """Records every hook call; ``stop_after`` evaluations it asks to stop."""

    def __init__(self, stop_after: int | None = None):
        self.calls: list[tuple] = []
        self.stop_after = stop_after

    def on_training_start(self, run):
        self.calls.append(("start", run.algo, run.start_step, type(run.agent).__name__))

    def on_update(self, step, metrics):
        self.calls.append(("update", step, "charts/episodic_return" in metrics))

    def on_eval(self, step, result):
        self.calls.append(("eval", step, len(result.returns)))
        if self.stop_after is not None and sum(c[0] == "eval" for c in self.calls) >= self.stop_after:
            return False

    def on_training_end(self, agent, steps):
        self.calls.append(("end", steps, agent.evaluation is not None))


class Meddler(pgrad.Callback):
    """Does nothing to the run, but mutates everything it is handed."""

    def on_update(self, step, metrics):
        metrics.clear()

    def on_eval(self, step, result):
        result.returns.clear()
        return True


# -- callbacks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo, env, small", [("ppo", "CartPole-v1", PPO_SMALL), ("sac", "Pendulum-v1", SAC_SMALL)])
def test_a_run_with_callbacks_that_do_nothing_is_bitwise_the_run_without(algo, env, small, tmp_path):
    steps = 1024 if algo == "ppo" else 400
    common = dict(env=env, total_steps=steps, seed=3, **small)
    pgrad.train(algo, run_dir=str(tmp_path / "plain"), **common)
    pgrad.train(algo, run_dir=str(tmp_path / "hooked"), callbacks=[pgrad.Callback(), Meddler()], **common)
    assert same_weights(tmp_path / "plain", tmp_path / "hooked")
    assert (tmp_path / "plain" / "progress.csv").read_text() == (tmp_path / "hooked" / "progress.csv").read_text()


def test_evaluating_during_training_leaves_training_bitwise_unchanged(tmp_path):
    """Evaluations (sampled actions too) draw on no generator of the run."""
    common = dict(env="CartPole-v1", total_steps=1024, seed=5, **PPO_SMALL)
    pgrad.train("ppo", run_dir=str(tmp_path / "plain"), **common)
    pgrad.train("ppo", run_dir=str(tmp_path / "evals"), eval_every=256, eval_deterministic=False, **common)
    assert same_weights(tmp_path / "plain", tmp_path / "evals")
    assert (tmp_path / "plain" / "progress.csv").read_text() == (tmp_path / "evals" / "progress.csv").read_text()
    assert len((tmp_path / "evals" / "eval.csv").read_text().splitlines()) == 1 + 4


def test_hooks_fire_in_order_and_a_callback_stops_the_run_like_a_finished_one(tmp_path):
    recorder = Recorder(stop_after=2)
    agent = pgrad.train("ppo", env="CartPole-v1", total_steps=50_000, seed=0, run_dir=str(tmp_path / "r"),
                        eval_every=256, callbacks=[recorder], **PPO_SMALL)  # fmt: skip
    kinds = [c[0] for c in recorder.calls]
    assert kinds == ["start", "update", "eval", "update", "eval", "end"], kinds
    assert recorder.calls[0] == ("start", "ppo", 0, "Agent")
    assert recorder.calls[-1] == ("end", 512, True)  # stopped at its second evaluation, then evaluated
    assert agent.evaluation is not None and (tmp_path / "r" / "eval.json").is_file()
    assert pgrad.load(tmp_path / "r").act(np.zeros(4, np.float32)) in (0, 1)
    rows = list(csv.DictReader(open(tmp_path / "r" / "progress.csv")))
    assert int(rows[-1]["global_step"]) == 512


def test_callbacks_must_be_callback_instances():
    with pytest.raises(ValueError, match="pass an instance"):
        pgrad.train("ppo", total_steps=256, callbacks=[Recorder])
    with pytest.raises(ValueError, match="a list of pgrad.Callback instances"):
        pgrad.train("ppo", total_steps=256, callbacks=print)


# -- evaluation during training, the best model, stop at a return ---------------------------------


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("runs") / "evaluated"
    result = cli("train", "ppo", "--env", "CartPole-v1", "--total-steps", "6144", "--seed", "1", "--eval-every",
                 "1024", "--eval-episodes", "3", "--run-dir", str(run), "--no-progress-bar")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return run, result


def test_evaluations_go_to_eval_csv_stdout_and_tensorboard(evaluated_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, result = evaluated_run
    rows = list(csv.DictReader(open(run / "eval.csv")))
    assert [int(r["global_step"]) for r in rows] == [1024 * k for k in range(1, 7)]
    for r in rows:
        returns = [float(r[f"return_{i}"]) for i in range(3)]
        assert float(r["mean_return"]) == pytest.approx(np.mean(returns))
        assert float(r["std_return"]) == pytest.approx(np.std(returns))
    lines = [line for line in result.stdout.splitlines() if line.startswith("eval at step")]
    assert len(lines) == 6 and lines[0].startswith("eval at step 1,024: ") and "over 3 episodes" in lines[0]
    events = EventAccumulator(str(run))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("eval/mean_return")]
    assert logged == [(int(r["global_step"]), pytest.approx(float(r["mean_return"]))) for r in rows]
    assert "pgrad ppo on CartPole-v1" in result.stdout  # --no-progress-bar still prints the summary


def test_best_model_is_the_best_evaluation_and_pgrad_eval_best_uses_it(evaluated_run, tmp_path):
    run, result = evaluated_run
    rows = list(csv.DictReader(open(run / "eval.csv")))
    best = max(rows, key=lambda r: float(r["mean_return"]))  # the first of equal maxima
    meta = json.loads((run / "best_agent.json").read_text())
    assert meta["best"] == {"global_step": int(best["global_step"]), "mean_return": float(best["mean_return"])}
    new_best = [line for line in result.stdout.splitlines() if "new best" in line]
    assert new_best[-1].startswith(f"eval at step {int(best['global_step']):,}:")
    evaluated = cli("eval", str(run), "--best", "--episodes", "3")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "(best model)" in evaluated.stdout
    assert json.loads(evaluated.stdout.splitlines()[-1])["mean_return"] == pytest.approx(float(best["mean_return"]))
    assert cli("plot", str(run), "--metric", "eval/mean_return", "-o", str(tmp_path / "e.png")).returncode == 0
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_eval_best_of_a_run_without_evaluations_is_one_clear_line(tmp_path):
    pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(tmp_path / "r"), **PPO_SMALL)
    result = cli("eval", str(tmp_path / "r"), "--best")
    assert (
        result.returncode == 2
        and "has no best model (best_model.safetensors" in result.stderr
        and "--eval-every" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_stop_at_return_stops_saves_and_exits_0(tmp_path):
    run = tmp_path / "r"
    result = cli("train", "ppo", "--env", "CartPole-v1", "--total-steps", "100000", "--seed", "0", "--eval-every",
                 "512", "--eval-episodes", "2", "--stop-at-return", "30", "--run-dir", str(run))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(run / "eval.csv")))
    assert float(rows[-1]["mean_return"]) >= 30 and all(float(r["mean_return"]) < 30 for r in rows[:-1])
    assert "stopped early, of 100,000" in result.stdout
    assert (run / "model.safetensors").is_file() and (run / "eval.json").is_file()
    result = cli("train", "ppo", "--stop-at-return", "30", "--run-dir", str(tmp_path / "no"))
    assert result.returncode == 2 and "stop_at_return=30.0 is invalid: needs eval_every > 0" in result.stderr
    assert not (tmp_path / "no").exists()


def test_verbose_0_prints_nothing_on_stdout(tmp_path):
    result = cli("train", "ppo", "--total-steps", "512", "--verbose", "0", "--eval-every", "256", "--run-dir",
                 str(tmp_path / "r"), "--eval-episodes", "1")  # fmt: skip
    assert result.returncode == 0 and result.stdout == "", result.stdout
    result = cli("train", "ppo", "--total-steps", "512", "--verbose", "2", "--run-dir", str(tmp_path / "v"),
                 "--eval-episodes", "1", "--no-progress-bar")  # fmt: skip
    assert "losses/policy_loss" in result.stdout


# -- continuing and fine-tuning --------------------------------------------------------------------


@pytest.mark.parametrize("algo, env, small, half", [("ppo", "CartPole-v1", PPO_SMALL, 512),
                                                    ("sac", "Pendulum-v1", SAC_SMALL, 200)])  # fmt: skip
def test_extending_a_finished_run_is_bitwise_the_run_trained_to_the_larger_total(algo, env, small, half, tmp_path):
    common = dict(env=env, seed=2, **small)
    pgrad.train(algo, total_steps=2 * half, run_dir=str(tmp_path / "straight"), **common)
    short = tmp_path / "short"
    result = cli("train", algo, "--env", env, "--total-steps", str(half), "--seed", "2", "--save-final-checkpoint",
                 "--run-dir", str(short), *flags(small))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoint.checkpoint_step(short) == half
    again = cli("train", "--resume", str(short))
    assert again.returncode == 2 and f"finished at step {half:,}: extend it with --total-steps N" in again.stderr
    result = cli("train", "--resume", str(short), "--total-steps", str(2 * half))
    assert result.returncode == 0, result.stderr[-2000:]
    assert same_weights(tmp_path / "straight", short)
    straight_rows = (tmp_path / "straight" / "progress.csv").read_text().splitlines()
    rows = (short / "progress.csv").read_text().splitlines()  # + the short run's last row, if not logged anyway
    assert [r for r in rows if r not in straight_rows] in ([], [r for r in rows if r.startswith(f"{half},")])
    assert set(straight_rows) <= set(rows)
    assert json.loads((short / "config.json").read_text())["config"]["total_steps"] == 2 * half


def flags(fields: dict) -> list[str]:
    out = []
    for key, value in fields.items():
        flag = "--" + key.replace("_", "-")
        out += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    return out


def test_agent_learn_continues_the_run_in_python(tmp_path):
    common = dict(env="CartPole-v1", seed=4, **PPO_SMALL)
    straight = pgrad.train("ppo", total_steps=768, run_dir=str(tmp_path / "straight"), **common)
    agent = pgrad.train("ppo", total_steps=256, run_dir=str(tmp_path / "learned"), **common)
    assert agent.learn(256) is agent and agent.learn(256) is agent
    assert same_weights(tmp_path / "straight", tmp_path / "learned")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    assert np.array_equal(agent.act(obs), straight.act(obs))
    loaded = pgrad.load(tmp_path / "learned")
    loaded.learn(256)  # a loaded run continues too
    assert checkpoint.checkpoint_step(tmp_path / "learned") == 1024
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        loaded.learn(0)


def test_a_run_without_its_final_checkpoint_says_how_to_keep_one(tmp_path):
    result = cli("train", "ppo", "--total-steps", "256", "--run-dir", str(tmp_path / "r"), "--eval-episodes", "0")
    assert result.returncode == 0 and not (tmp_path / "r" / "checkpoint.safetensors").exists()
    with pytest.raises(checkpoint.CheckpointError, match="save_final_checkpoint=True"):
        pgrad.load(tmp_path / "r").learn(256)


def test_init_from_starts_a_new_run_from_the_saved_weights_and_normaliser(tmp_path):
    source = tmp_path / "source"
    pgrad.train("ppo", env="CartPole-v1", total_steps=512, seed=0, run_dir=str(source), normalize_obs=True, **PPO_SMALL)
    saved = pgrad.load(source)
    seen = {}

    class Look(pgrad.Callback):
        def on_training_start(self, run):
            seen["weights"] = {k: v.clone() for k, v in run.agent.policy.state_dict().items()}
            seen["mean"] = run.agent.normalizer.obs_rms.mean.copy()

    pgrad.train("ppo", env="CartPole-v1", total_steps=256, seed=9, run_dir=str(tmp_path / "tuned"), normalize_obs=True,
                init_from=str(source), callbacks=[Look()], **PPO_SMALL)  # fmt: skip
    assert all(torch.equal(v, seen["weights"][k]) for k, v in saved.policy.state_dict().items())
    assert np.array_equal(seen["mean"], saved.normalizer.obs_rms.mean)


def test_init_from_a_td3_run_starts_the_target_actor_at_the_loaded_actor(tmp_path):
    from pgrad.train import Trainer, init_from, resolve_config

    pgrad.train("td3", env="Pendulum-v1", total_steps=300, run_dir=str(tmp_path / "s"), hidden_sizes=(16, 16),
                learning_starts=100, eval_episodes=0)  # fmt: skip
    cfg, _, _ = resolve_config(
        "td3", "Pendulum-v1", overrides={"hidden_sizes": (16, 16), "run_dir": str(tmp_path / "t")}
    )
    trainer = Trainer("td3", cfg, tmp_path / "t")
    init_from(trainer, str(tmp_path / "s"))
    saved = pgrad.load(tmp_path / "s").policy.state_dict()
    for module in (trainer.loop.algo.actor, trainer.loop.algo.actor_target):
        assert all(torch.equal(v, saved[k]) for k, v in module.state_dict().items())
    trainer.env.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "Acrobot-v1"], "(fine-tuning needs the same spaces)"),
        (["--hidden-sizes", "32", "32"], "does not fit this run's (ppo's ActorCritic, hidden sizes [32, 32])"),
        (["--normalize-obs"], "trained with normalize_obs=False and this run has normalize_obs=True"),
    ],
)
def test_init_from_refuses_what_does_not_fit_in_one_line(args, message, tmp_path):
    pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(tmp_path / "s"), **PPO_SMALL)
    result = cli("train", "ppo", "--init-from", str(tmp_path / "s"), "--run-dir", str(tmp_path / "t"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "t").exists()


# -- devices ---------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ppo", "--device", "cuda:1"], "device='cuda:1' is invalid here: torch sees no CUDA device"),
        (["train", "ppo", "--device", "gpu"], "device='gpu' is invalid: must be auto, cpu, cuda, cuda:N or mps"),
        (["eval", "RUN", "--device", "cuda"], "device='cuda' is invalid here: torch sees no CUDA device"),
    ],
)
def test_devices_this_machine_lacks_are_one_line(args, message, tmp_path):
    if "RUN" in args:
        pgrad.train("ppo", total_steps=256, run_dir=str(tmp_path / "r"), **PPO_SMALL)
        args = [str(tmp_path / "r") if a == "RUN" else a for a in args]
    result = cli(*args, "--run-dir", str(tmp_path / "x")) if args[0] == "train" else cli(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mps_where_torch_has_none_is_one_line():
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match="torch has no MPS"):
        pgrad.load("unused", device="mps")
