"""Bad input and hostile conditions as a user meets them: one line naming the value and what is
allowed, exit status 2, no traceback, no debris, and never a lost run (disk full, read-only,
two writers, a stop request during warm-up, stale files of an overwritten run)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad import checkpoint

PGRAD = [sys.executable, "-m", "pgrad.cli"]
SMALL = ["--total-steps", "512", "--n-steps", "256", "--batch-size", "64", "--preset", "none", "--no-progress-bar"]


def pgrad_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PGRAD, *args], capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    pgrad.train("ppo", env="CartPole-v1", total_steps=512, run_dir=str(run_dir), preset="none", n_steps=256,
                batch_size=64, eval_episodes=0, tensorboard=False)  # fmt: skip
    return run_dir


TRAIN_CASES = [
    (["train", "ppo", "--torch-threads", "100000"], "torch_threads=100000 is invalid: must be an integer in [1, 1024]"),
    (["train", "ppo", "--hidden-sizes", "2000000000"], "networks (hidden_sizes)"),
    (["train", "sac", "--env", "Pendulum-v1", "--buffer-size", "1000000000000"], "replay buffer (buffer_size)"),
    (
        ["train", "ppo", "--env", "CartPole-v1", "--images", "sideways"],
        "invalid choice 'sideways' for argument '--images'",
    ),
    (
        ["train", "ppo", "--env", "CartPole-v1", "--preprocess", "atari"],
        "preprocess='atari' is invalid for CartPole-v1",
    ),
    (["train", "ppo", "--env", "CartPole-v1", "--frame-stack", "0"], "frame_stack=0 is invalid"),
    (["train", "ppo", "--n-envs", "1000000"], "n_envs=1000000 is invalid: must be an integer in [1, 4096]"),
    (["train", "ppo", "--n-envs", "8", "--workers", "2", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers"),
    (["train", "ppo", "--n-envs", "8", "--workers", "2", "--ray-address", "nowhere"], "'HOST:PORT'"),
    (["train", "ddpg", "--env", "CartPole-v1"], "needs a continuous (Box) action space"),
    (["train", "trpo", "--mixed-precision", "bf16"], "mixed_precision='bf16' is invalid: must be 'off' for trpo"),
    (["train", "a3c", "--mixed-precision", "bf16"], "mixed_precision='bf16' is invalid: must be 'off' for a3c"),
    (["train", "sac", "--mixed-precision", "fp16"], "invalid choice 'fp16' for argument '--mixed-precision'"),
]
if importlib.util.find_spec("jax") is None:
    TRAIN_CASES.append((["train", "ppo", "--env", "phys2d/CartPole-v1"], "needs the Python package 'jax'"))


@pytest.mark.parametrize("args, fragment", TRAIN_CASES, ids=[" ".join(c[0][1:]) for c in TRAIN_CASES])
def test_train_refuses_with_one_line_and_leaves_no_run_directory(args, fragment, tmp_path):
    run_dir = tmp_path / "run"
    assert_one_line(pgrad_cli(*args, "--run-dir", str(run_dir), "--total-steps", "256"), fragment)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "run_dir, fragment",
    [("/etc/passwd", "exists and is not a directory"), ("/proc/x", "cannot be created"), ("", "run_dir=''")],
)
def test_run_dirs_that_cannot_be_used(run_dir, fragment):
    assert_one_line(pgrad_cli("train", "ppo", f"--run-dir={run_dir}", "--total-steps", "256"), fragment)


def test_a_run_dir_with_markup_characters_is_a_plain_path(tmp_path):
    run_dir = tmp_path / "runs" / "[/x]"
    wide = os.environ | {"COLUMNS": "400"}  # the summary table shows the whole path
    result = pgrad_cli("train", "ppo", "--run-dir", str(run_dir), *SMALL[:-1], "--eval-episodes", "1", env=wide)
    assert result.returncode == 0, result.stderr
    assert "[/x]" in result.stdout and (run_dir / "eval.json").is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--env", "Pendulum-v1"], "the agent of 'CartPole-v1' takes Box(4,)"),
        (["--video", "/nonexistent/x.mp4"], "the directory '/nonexistent' does not exist"),
        (["--video", "x.avi"], "a path ending in .mp4 or .gif"),
        (["--seed", "-2000000"], "--seed -2000000 is invalid"),
    ],
)
def test_eval_refuses_before_running_any_episode(cartpole_run, args, fragment):
    assert_one_line(pgrad_cli("eval", str(cartpole_run), *args), fragment)


@pytest.mark.parametrize(
    "args, fragment",
    [(["--metric", "bogus"], "--metric 'bogus' is invalid: the runs log charts/"), (["-o", "/nonexistent/c.png"], "'/nonexistent' does not exist")],
)  # fmt: skip
def test_plot_refuses_unknown_metrics_and_destinations(cartpole_run, args, fragment):
    assert_one_line(pgrad_cli("plot", str(cartpole_run), *args), fragment)


def test_video_frames_are_streamed_not_kept(cartpole_run, tmp_path, monkeypatch):
    """Each frame reaches the encoder before the next step: memory does not grow with episodes."""
    from pgrad import evaluation

    appended, lag = [], []
    real_open = evaluation.open_video

    def spy(video, env):
        writer = real_open(video, env)
        real_append = writer.append_data
        writer.append_data = lambda frame: (appended.append(1), real_append(frame))
        return writer

    agent = pgrad.load(cartpole_run)
    real_act = agent.act
    steps = []

    def act(obs, deterministic=True):
        steps.append(1)
        lag.append(len(steps) - len(appended))  # frames rendered but not yet written: 0 when streamed
        return real_act(obs, deterministic)

    monkeypatch.setattr(evaluation, "open_video", spy)
    agent.act = act
    video = tmp_path / "v.mp4"
    result = pgrad.evaluate(agent, episodes=2, video=str(video))
    assert sum(result.lengths) == len(appended) and set(lag) == {0}
    assert video.stat().st_size > 1000


def test_headless_mujoco_video_is_one_clear_line(tmp_path):
    run_dir = tmp_path / "m"
    pgrad.train("sac", env="InvertedPendulum-v5", total_steps=200, learning_starts=100, hidden_sizes=(8, 8),
                batch_size=8, run_dir=str(run_dir), eval_episodes=0, tensorboard=False)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    result = pgrad_cli("eval", str(run_dir), "--episodes", "1", "--video", str(tmp_path / "m.mp4"), env=env)
    if result.returncode == 0:  # a machine with a working headless GL renders it
        assert (tmp_path / "m.mp4").stat().st_size > 0
    else:
        assert_one_line(result, "cannot render a video here")
        assert not (tmp_path / "m.mp4").exists()


# ---- the Python API --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"env": 123}, "env=123"), ({"env": None}, "env=None"), ({"seed": "0"}, "seed='0'"),
     ({"seed": np.int64(-1)}, "seed=-1"), ({"learning_rate": np.float32("nan")}, "learning_rate=nan")],
)  # fmt: skip
def test_train_api_raises_value_error_naming_the_value(kwargs, fragment, tmp_path):
    args = {"algo": "ppo", "env": "CartPole-v1", "total_steps": 64, "run_dir": str(tmp_path / "r")} | kwargs
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        pgrad.train(**args)
    assert not (tmp_path / "r").exists()


def test_numpy_scalars_are_valid_input(tmp_path):
    agent = pgrad.train("ppo", env="CartPole-v1", total_steps=np.int64(256), seed=np.int64(3), learning_rate=np.float32(1e-3),
                        n_steps=np.int32(128), batch_size=64, preset="none", run_dir=str(tmp_path / "r"),
                        eval_episodes=np.int64(1), tensorboard=False)  # fmt: skip
    assert agent.config["seed"] == 3 and type(agent.config["seed"]) is int
    assert pgrad.evaluate(agent, episodes=np.int64(1), seed=np.int32(2)).lengths


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda a: pgrad.load(None), "directory=None"),
        (lambda a: pgrad.evaluate(a, episodes=1.5), "episodes=1.5"),
        (lambda a: pgrad.evaluate(a, episodes="3"), "episodes='3'"),
        (lambda a: pgrad.evaluate(a, episodes=float("nan")), "episodes=nan"),
        (lambda a: pgrad.evaluate(a, deterministic="no"), "deterministic='no'"),
        (lambda a: a.act({}), "not an array of numbers"),
        (lambda a: a.act("abc"), "not an array of numbers"),
        (lambda a: a.act([0.0, float("nan"), 0.0, 0.0]), "NaN or inf"),
        (lambda a: a.act(np.full((2, 4), np.inf)), "NaN or inf"),
        (lambda a: a.act([0.0, 0.0]), "shape (2,) does not fit the agent's (4,)"),
        (lambda a: a.act([0.0] * 4, deterministic="no"), "deterministic='no'"),
    ],
)
def test_agent_api_raises_value_error_naming_the_value(cartpole_run, call, fragment):
    agent = pgrad.load(cartpole_run)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        call(agent)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA loads there")
def test_loading_onto_a_missing_device_is_a_clear_error(cartpole_run):
    with pytest.raises(ValueError, match="device='cuda' is invalid here: torch sees no CUDA device"):
        pgrad.load(cartpole_run, device="cuda")
    with pytest.raises(ValueError, match="device='tpu'"):
        pgrad.load(cartpole_run, device="tpu")


class SpaceEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX3 = spaces.Box(-1.0, 1.0, (3,), np.float32)
SPACES = {  # (observation space, action space, algorithm, what the one line says)
    "text-obs": (spaces.Text(5), spaces.Discrete(2), "ppo", "pgrad takes Box, Discrete, MultiDiscrete, MultiBinary"),
    "text-in-dict": (
        spaces.Dict({"a": BOX3, "t": spaces.Text(5)}),
        spaces.Discrete(2),
        "ppo",
        " at t is not supported",
    ),
    "tuple-action": (
        BOX3,
        spaces.Tuple([spaces.Discrete(2)]),
        "ppo",
        "pgrad takes Discrete, MultiDiscrete, MultiBinary and Box actions",
    ),
    "infinite-box-action": (BOX3, spaces.Box(-np.inf, np.inf, (2,), np.float32), "ppo", "has infinite bounds"),
    "sac-multidiscrete": (BOX3, spaces.MultiDiscrete([2, 3]), "sac", "for MultiDiscrete and MultiBinary ones ppo"),
    "td3-multibinary": (BOX3, spaces.MultiBinary(3), "td3", "needs a continuous (Box) action space"),
    "sac-discrete-box": (
        BOX3,
        spaces.Box(-1.0, 1.0, (2,), np.float32),
        "sac-discrete",
        "needs a Discrete action space",
    ),
    "sac-discrete-multidiscrete": (
        BOX3,
        spaces.MultiDiscrete([2, 2]),
        "sac-discrete",
        "ppo, a2c, trpo, npg or reinforce for MultiDiscrete",
    ),
}


@pytest.mark.parametrize("name", SPACES)
def test_unsupported_spaces_are_refused_up_front(name, tmp_path):
    obs_space, action_space, algo, fragment = SPACES[name]
    env_id = f"pgrad-test/Space-{name}-v0"
    gym.register(env_id, entry_point=lambda: SpaceEnv(obs_space, action_space))
    with pytest.raises(ValueError, match=re.escape(fragment)):
        sizes = {"n_steps": 64, "batch_size": 64} if algo == "ppo" else {}
        pgrad.train(algo, env=env_id, total_steps=64, run_dir=str(tmp_path / "r"), check_env=False, **sizes)
    assert not (tmp_path / "r").exists()


# ---- the run directory: one writer, nothing stale, nothing lost --------------------------------------------


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "ended early"
        assert time.monotonic() - start < timeout
        time.sleep(0.05)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "r"
    long_run = ["train", "ppo", "--env", "CartPole-v1", "--total-steps", "5000000", "--checkpoint-every", "2048",
                "--run-dir", str(run_dir), "--no-progress-bar", "--eval-episodes", "0"]  # fmt: skip
    proc = subprocess.Popen([*PGRAD, *long_run], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(run_dir / "checkpoint.safetensors", proc)
        assert_one_line(pgrad_cli("train", "--resume", str(run_dir)), f"another pgrad process (pid {proc.pid})")
        assert_one_line(pgrad_cli(*long_run, "--overwrite"), f"(pid {proc.pid})")
        assert proc.poll() is None  # the running run is untouched
    finally:
        proc.kill()
        proc.wait()
    checkpoint.load_checkpoint(run_dir)  # the killed run's checkpoint survived both attempts


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path):
    run_dir = tmp_path / "r"
    pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(run_dir), preset="none", n_steps=128,
                batch_size=64, eval_episodes=1, tensorboard=True)  # fmt: skip
    (run_dir / ".progress.csv.x1y2.tmp").write_text("an interrupted write")
    (run_dir / "notes.txt").write_text("the user's own file")
    old_events = {p.name for p in run_dir.glob("events.out.tfevents.*")}
    assert old_events and (run_dir / "eval.json").is_file()
    pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(run_dir), preset="none", n_steps=128,
                batch_size=64, eval_episodes=0, tensorboard=False, overwrite=True)  # fmt: skip
    names = {p.name for p in run_dir.iterdir()}
    assert not (names & old_events) and "eval.json" not in names and ".progress.csv.x1y2.tmp" not in names
    assert "notes.txt" in names and "model.safetensors" in names


def test_a_failed_overwrite_keeps_the_old_run(tmp_path):
    run_dir = tmp_path / "r"
    pgrad.train("ppo", env="CartPole-v1", total_steps=256, run_dir=str(run_dir), preset="none", n_steps=128,
                batch_size=64, eval_episodes=1, tensorboard=False)  # fmt: skip
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="needs a continuous"):
        pgrad.train("ddpg", env="CartPole-v1", total_steps=256, run_dir=str(run_dir), overwrite=True)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_sigterm_during_off_policy_warm_up_stops_within_seconds_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [*PGRAD, "train", "sac", "--env", "Pendulum-v1", "--total-steps", "2000000", "--learning-starts", "1000000",
         "--run-dir", str(run_dir), "--no-progress-bar", "--eval-episodes", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(run_dir / "config.json", proc)  # written just before the loop starts
    time.sleep(1.0)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - start < 3.0, stderr
    assert "SIGTERM" in stderr and f"pgrad train --resume {run_dir}" in stderr
    _, state = checkpoint.load_checkpoint(run_dir)
    assert 0 < state["global_step"] < 1_000_000  # inside the warm-up


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs (root only): a real ENOSPC / EROFS, not a simulated one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_and_read_only_are_one_line_and_lose_nothing(small_disk):
    run_dir = small_disk / "r"
    args = ["train", "ppo", "--env", "CartPole-v1", "--run-dir", str(run_dir), "--total-steps", "30000", "--n-steps",
            "256", "--batch-size", "64", "--preset", "none", "--checkpoint-every", "512", "--eval-episodes", "0",
            "--no-progress-bar"]  # fmt: skip
    assert_one_line(pgrad_cli(*args), "No space left on device")
    tensors, state = checkpoint.load_checkpoint(run_dir)  # the last checkpoint is whole
    assert state["global_step"] >= 512
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert_one_line(pgrad_cli("train", "--resume", str(run_dir)), "Read-only file system")
    subprocess.run(["mount", "-o", "remount,rw,size=8m", str(small_disk)], check=True)
    result = pgrad_cli("train", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "model.safetensors").is_file()
