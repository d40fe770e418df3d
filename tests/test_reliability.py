"""Never lose a run, never surprise the user: exact resume, atomic checkpoints, safe loading, clear errors."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import pgrad
from pgrad import checkpoint
from pgrad.algos.base import NonFiniteError
from pgrad.checkpoint import CheckpointError

PGRAD = [sys.executable, "-m", "pgrad.cli"]
QUIET = ["--seed", "0", "--overwrite", "--no-progress-bar", "--eval-episodes", "0", "--no-tensorboard"]


def train_cmd(algo, env, steps, every, run_dir, *extra):
    return [
        *PGRAD,
        "train",
        algo,
        "--env",
        env,
        "--total-steps",
        str(steps),
        "--checkpoint-every",
        str(every),
        "--run-dir",
        str(run_dir),
        *QUIET,
        *extra,
    ]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() - start < timeout
        time.sleep(0.02)


@pytest.mark.parametrize(
    "algo, env, steps, every, extra",
    [
        ("ppo", "CartPole-v1", 12_288, 2048, []),
        ("sac", "Pendulum-v1", 1_200, 400, ["--learning-starts", "200"]),  # replay buffer in the checkpoint
    ],
)
def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(algo, env, steps, every, extra, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(train_cmd(algo, env, steps, every, full, *extra), check=True, capture_output=True)
    proc = subprocess.Popen(train_cmd(algo, env, steps, every, killed, *extra), stderr=subprocess.DEVNULL)
    wait_for(killed / "checkpoint.safetensors", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "eval.json").exists()  # it really died mid-run
    result = subprocess.run([*PGRAD, "train", "--resume", str(killed)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "progress.csv").read_text() == (killed / "progress.csv").read_text()
    # a run with --checkpoint-every keeps its final state (`--resume RUN --total-steps N` extends it)
    assert checkpoint.checkpoint_step(killed) == checkpoint.checkpoint_step(full) == steps


def test_sigint_checkpoints_and_exits_130_with_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd("ppo", "CartPole-v1", 2_000_000, 0, run_dir), stderr=subprocess.PIPE, text=True)
    wait_for(run_dir / "progress.csv", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"pgrad train --resume {run_dir}" in stderr and "SIGINT" in stderr
    assert (run_dir / "checkpoint.safetensors").is_file() and (run_dir / "model.safetensors").is_file()
    checkpoint.load_checkpoint(run_dir)  # loadable


def test_crash_between_temp_write_and_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(3)}, {"global_step": 1})

    def crash(*args, **kwargs):
        raise OSError("simulated power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        checkpoint.save_checkpoint(tmp_path, {"w": torch.zeros(3)}, {"global_step": 2})
    monkeypatch.undo()
    tensors, state = checkpoint.load_checkpoint(tmp_path)
    assert state["global_step"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no temp file left behind


def test_nan_reward_stops_with_a_named_error_and_the_last_checkpoint_loads(tmp_path):
    run_dir = tmp_path / "nan"
    with pytest.raises(NonFiniteError, match=r"non-finite losses/.* at step \d+; the last good checkpoint"):
        pgrad.train(
            "ppo",
            env="pgrad-test/NaNReward-v0",
            total_steps=4096,
            seed=0,
            run_dir=str(run_dir),
            n_steps=256,
            batch_size=64,
            checkpoint_every=256,
            tensorboard=False,
        )
    tensors, state = checkpoint.load_checkpoint(run_dir)
    assert state["global_step"] <= 1536 and all(
        torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()
    )
    assert all(torch.isfinite(v).all() for v in pgrad.load(run_dir).policy.state_dict().values())


def test_cli_reports_nan_with_exit_1_and_keeps_the_checkpoint(tmp_path):
    launcher = "import sys, conftest; from pgrad.cli import main; sys.exit(main(sys.argv[1:]))"  # registers test envs
    run_dir = tmp_path / "r"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            launcher,
            "train",
            "ppo",
            "--env",
            "pgrad-test/NaNReward-v0",
            "--total-steps",
            "4096",
            "--n-steps",
            "256",
            "--batch-size",
            "64",
            "--checkpoint-every",
            "256",
            "--run-dir",
            str(run_dir),
            *QUIET,
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parent)},
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "non-finite losses/" in last and "the last good checkpoint (step" in last and str(run_dir) in last
    checkpoint.load_checkpoint(run_dir)


def test_crafted_pickle_in_place_of_a_checkpoint_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "checkpoint.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load_checkpoint(tmp_path)
    assert not marker.exists()


def test_resume_errors_are_clear(tmp_path):
    from pgrad.train import resume

    with pytest.raises(CheckpointError, match="not a pgrad run directory"):
        resume(tmp_path)
    for name, keep in (("done", False), ("kept", True)):
        pgrad.train("ppo", env="CartPole-v1", total_steps=512, run_dir=str(tmp_path / name), eval_episodes=0,
                    tensorboard=False, save_final_checkpoint=keep)  # fmt: skip
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume(tmp_path / "done")
    with pytest.raises(CheckpointError, match="finished at step 512: extend it with --total-steps N"):
        resume(tmp_path / "kept")
    with pytest.raises(ValueError, match="total_steps=256 is invalid: the run's checkpoint is at step 512"):
        resume(tmp_path / "kept", total_steps=256)


# ---- bad input: exact error class, and a message that names the offending value -------------------------

API_CASES = [
    ({"algo": "ppx"}, ValueError, "'ppx'"),
    ({"algo": "dqn"}, ValueError, "'dqn'"),
    ({"env": "CartPole-v9"}, ValueError, "'CartPole-v9'"),
    ({"env": "Pendulum"}, ValueError, "'Pendulum'"),
    ({"learning_rate": 0.0}, ValueError, "learning_rate=0.0"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate=nan"),
    ({"gamma": -0.1}, ValueError, "gamma=-0.1"),
    ({"gae_lambda": 2.0}, ValueError, "gae_lambda=2.0"),
    ({"n_envs": 0}, ValueError, "n_envs=0"),
    ({"n_steps": -5}, ValueError, "n_steps=-5"),
    ({"batch_size": 100_000}, ValueError, "batch_size=100000"),
    ({"n_epochs": 0}, ValueError, "n_epochs=0"),
    ({"clip_range": 1.5}, ValueError, "clip_range=1.5"),
    ({"total_steps": 0}, ValueError, "total_steps=0"),
    ({"seed": -1}, ValueError, "seed=-1"),
    ({"device": "tpu"}, ValueError, "device='tpu'"),
    ({"vectorization": "threads"}, ValueError, "vectorization='threads'"),
    ({"hidden_sizes": (64, 0)}, ValueError, "hidden_sizes=(64, 0)"),
    ({"activation": "gelu"}, ValueError, "activation='gelu'"),
    ({"loss": "kl"}, ValueError, "loss='kl'"),
    ({"lr_schedule": "cosine"}, ValueError, "lr_schedule='cosine'"),
    ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm=-1.0"),
    ({"torch_threads": 0}, ValueError, "torch_threads=0"),
    ({"log_interval": 0}, ValueError, "log_interval=0"),
    ({"clip_rnage": 0.1}, ValueError, "'clip_rnage'"),
    ({"algo": "sac", "env": "CartPole-v1"}, ValueError, "Discrete(2)"),
    ({"algo": "sac-discrete", "env": "Pendulum-v1"}, ValueError, "Box("),
    ({"algo": "td3", "noise": "pink"}, ValueError, "noise='pink'"),
    ({"algo": "sac", "variant": "v3"}, ValueError, "variant='v3'"),
    ({"algo": "reinforce", "baseline": "median"}, ValueError, "baseline='median'"),
    ({"algo": "trpo", "target_kl": 0.0}, ValueError, "target_kl=0.0"),
    ({"normalize_obs": "no"}, ValueError, "normalize_obs='no'"),
]


@pytest.mark.parametrize("overrides, error, fragment", API_CASES, ids=[str(c[0]) for c in API_CASES])
def test_api_bad_input(overrides, error, fragment, tmp_path):
    kwargs = {
        "algo": "ppo",
        "env": "CartPole-v1",
        "total_steps": 256,
        "run_dir": str(tmp_path / "r"),
        "eval_episodes": 0,
        "tensorboard": False,
    }
    if overrides.get("algo") in ("sac", "td3", "sac-discrete") and "env" not in overrides:
        kwargs["env"] = "Pendulum-v1"
    kwargs |= overrides
    with pytest.raises(error) as info:
        pgrad.train(**kwargs)
    assert type(info.value) is error
    assert fragment in str(info.value), str(info.value)


CLI_CASES = [
    (["train", "ppx"], "'ppx'"),
    (["train", "ppo", "--env", "CartPole-v9"], "'CartPole-v9'"),
    (["train", "ppo", "--gamma", "1.5"], "gamma=1.5"),
    (["train", "ppo", "--n-epochs", "ten"], "'ten'"),
    (["train", "ppo", "--batch-size", "99999"], "batch_size=99999"),
    (["train", "ppo", "--device", "tpu"], "'tpu'"),
    (["train", "ppo", "--preset", "zoo"], "preset='zoo'"),
    (["train", "sac", "--env", "CartPole-v1"], "sac-discrete"),
    (["train", "ppo", "--bogus-flag", "1"], "--bogus-flag"),
    (["train", "--resume", "/nonexistent/run"], "/nonexistent/run"),
    (["eval", "/nonexistent/run"], "/nonexistent/run"),
    (["eval", "runs/x", "--episodes", "0"], "--episodes 0"),
    (["plot", "/nonexistent/run"], "/nonexistent/run"),
    (["train"], "needs an algorithm"),
]


@pytest.mark.parametrize("args, fragment", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input_one_line_exit_2(args, fragment):
    result = subprocess.run([*PGRAD, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr, result.stderr


INVALID = {
    "learning_rate": st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))),
    "gamma": st.one_of(st.floats(min_value=1.0001, allow_infinity=False), st.floats(max_value=-0.0001)),
    "n_envs": st.integers(max_value=0),
    "n_steps": st.integers(max_value=0),
    "n_epochs": st.integers(max_value=0),
    "clip_range": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0)),
    "ent_coef": st.floats(max_value=-1e-9),
    "total_steps": st.integers(max_value=0),
    "activation": st.text(max_size=8).filter(lambda s: s not in ("tanh", "relu", "elu")),
    "hidden_sizes": st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(tuple),
    "batch_size": st.integers(min_value=257, max_value=10**9),
    "gae_lambda": st.floats(min_value=1.0001, allow_nan=False),
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(INVALID)).flatmap(lambda name: st.tuples(st.just(name), INVALID[name])))
def test_random_invalid_configs_raise_value_error_and_nothing_else(case):
    from pgrad.algos.ppo import PPOConfig

    name, value = case
    fields = {"n_steps": 32, "n_envs": 8, "batch_size": 256} | {name: value}
    with pytest.raises(ValueError) as info:
        PPOConfig(**fields)
    assert type(info.value) is ValueError and name in str(info.value)


def test_box2d_run_resumes_with_new_episodes(tmp_path):
    """Box2D's state lives in its world's native bodies and contacts, not ours to copy: a resume
    starts new episodes (MuJoCo's MjData is copied: tests/test_resume.py)."""
    import json

    from pgrad.algos.sac import SACConfig
    from pgrad.config import from_jsonable
    from pgrad.train import Trainer, resume

    run_dir = tmp_path / "m"
    pgrad.train(
        "sac",
        env="LunarLanderContinuous-v3",
        total_steps=300,
        seed=0,
        run_dir=str(run_dir),
        learning_starts=100,
        hidden_sizes=(32, 32),
        eval_episodes=0,
        tensorboard=False,
        log_interval=10,
    )
    cfg = from_jsonable(SACConfig, json.loads((run_dir / "config.json").read_text())["config"])
    trainer = Trainer("sac", cfg, run_dir)  # a checkpoint at step 0 of the same run
    assert not trainer.env.exact_state
    trainer.loop.obs = trainer.env.reset()
    trainer.save_checkpoint(0)
    assert "sim.env0.layer0._elapsed_steps" not in checkpoint.load_checkpoint(run_dir)[1]
    resume(run_dir)
    assert checkpoint.checkpoint_step(run_dir) == 300 and (run_dir / "model.safetensors").is_file()


def test_non_finite_parameter_is_named():
    from pgrad.algos.base import check_finite
    from pgrad.networks import ActorCritic

    net = ActorCritic(3, 2, discrete=True)
    check_finite({"losses/policy_loss": 0.1}, 10, list(net.named_parameters()))
    with torch.no_grad():
        net.value_net[0].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"non-finite parameter\(s\) value_net.0.weight at step 10"):
        check_finite({"losses/policy_loss": 0.1}, 10, list(net.named_parameters()))


def test_overwriting_a_run_drops_its_old_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    checkpoint.save_checkpoint(run_dir, {"w": torch.ones(1)}, {"global_step": 7})
    with pytest.raises(FileExistsError):
        pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(run_dir))
    assert (run_dir / "checkpoint.safetensors").exists()  # untouched without --overwrite
    pgrad.train(
        "ppo",
        env="CartPole-v1",
        total_steps=256,
        run_dir=str(run_dir),
        overwrite=True,
        eval_episodes=0,
        tensorboard=False,
        preset="none",
        n_steps=256,
        batch_size=64,
        save_final_checkpoint=False,
    )
    assert not (run_dir / "checkpoint.safetensors").exists()


def test_version_mismatched_checkpoint_is_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"w": torch.ones(1)},
        str(tmp_path / "checkpoint.safetensors"),
        metadata={"format": "pgrad-checkpoint", "format_version": "99", "state": "{}"},
    )
    with pytest.raises(CheckpointError, match="format_version '99'; this pgrad reads version 1"):
        checkpoint.load_checkpoint(tmp_path)
    save_file({"w": torch.ones(1)}, str(tmp_path / "checkpoint.safetensors"), metadata={"format": "other"})
    with pytest.raises(CheckpointError, match="not a pgrad checkpoint"):
        checkpoint.load_checkpoint(tmp_path)
