"""Kill/resume of every algorithm, as a user meets it: the CLI in a subprocess, SIGKILLed at exact
moments (inside a checkpoint write, inside the resume's own rewrite of progress.csv, right after a
checkpoint), resumed each time, and compared with the uninterrupted run file for file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

FAULTS = [sys.executable, str(Path(__file__).parent / "faults.py")]
QUIET = ["--seed", "3", "--no-progress-bar", "--eval-episodes", "0", "--no-tensorboard"]
OFF_POLICY = ["--total-steps", "1000", "--checkpoint-every", "200", "--hidden-sizes", "32", "32", "--batch-size", "32"]
# learning_starts 300 > the first checkpoint (200): that one is written during the warm-up
WARM = ["--learning-starts", "300", "--log-interval", "10"]
ON_POLICY = ["--preset", "none", "--n-envs", "2", "--hidden-sizes", "16", "16"]

CASES = {
    "ppo": ["ppo", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "2560", "--n-steps", "128",
            "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "512"],
    "a2c": ["a2c", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "1000", "--n-steps", "5",
            "--checkpoint-every", "200"],  # log_interval 20 > the first checkpoint: resumes before any row
    "actor_critic": ["actor_critic", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "500",
                     "--checkpoint-every", "100"],
    "reinforce": ["reinforce", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "1500",
                  "--episodes-per-update", "4", "--checkpoint-every", "300"],
    "npg": ["npg", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "2560", "--n-steps", "128",
            "--batch-size", "64", "--checkpoint-every", "512"],
    "trpo": ["trpo", "--env", "Pendulum-v1", *ON_POLICY, "--total-steps", "2560", "--n-steps", "128",
             "--batch-size", "64", "--checkpoint-every", "512"],
    "ddpg-ou": ["ddpg", "--env", "Pendulum-v1", *OFF_POLICY, *WARM, "--noise", "ou"],
    "td3": ["td3", "--env", "Pendulum-v1", *OFF_POLICY, *WARM],
    "sac-v1": ["sac", "--env", "Pendulum-v1", *OFF_POLICY, *WARM, "--variant", "v1"],
    "sac-v2": ["sac", "--env", "Pendulum-v1", *OFF_POLICY, *WARM, "--normalize-obs", "--normalize-reward",
               "--policy-delay", "2", "--use-sde", "--sde-sample-freq", "7"],  # gSDE's held ε mid-way
    "sac-discrete": ["sac-discrete", "--env", "CartPole-v1", *OFF_POLICY, *WARM],
    # BatchRenorm's running statistics and batch count, past its warm-up (renormalising) by the end
    "crossq": ["crossq", "--env", "Pendulum-v1", *OFF_POLICY, *WARM, "--critic-hidden-sizes", "32", "32",
               "--renorm-warmup-steps", "300", "--n-steps", "2"],
    # a recurrent policy's states, carried across rollouts and checkpoints (and a checkpoint mid-episode)
    "ppo-lstm": ["ppo", "--env", "CartPoleNoVel-v1", *ON_POLICY, "--total-steps", "1536", "--n-steps", "64",
                 "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "256", "--rnn", "lstm",
                 "--rnn-hidden-size", "16"],
    "a2c-gru": ["a2c", "--env", "CartPoleNoVel-v1", *ON_POLICY, "--total-steps", "1000", "--n-steps", "5",
                "--checkpoint-every", "200", "--rnn", "gru", "--rnn-hidden-size", "16", "--rnn-layers", "2"],
    # gSDE's ε drawn every 4 steps from the env streams (a checkpoint between draws' blocks)
    "ppo-gsde": ["ppo", "--env", "Pendulum-v1", *ON_POLICY, "--total-steps", "2560", "--n-steps", "128",
                 "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "512", "--use-sde",
                 "--sde-sample-freq", "4"],
    "ppo-user-env": ["ppo", "--env", "test_user_env:Reach", "--env-kwargs", "size=3.0", "--wrapper",
                     "test_user_env:ScaleObservation:factor=0.5", *ON_POLICY, "--total-steps", "2560", "--n-steps",
                     "128", "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "512"],  # rebuilt from its record
    "ppo-async": ["ppo", "--env", "CartPole-v1", *ON_POLICY, "--total-steps", "2560", "--n-steps", "128",
                  "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "512", "--vectorization", "async"],
    # a Dict of a uint8 image and a vector (packed rows, the vector key normalised), a CNN
    "ppo-pixels-dict": ["ppo", "--env", "test_spaces:LitQuadrant", "--env-kwargs", "dict_obs=True", *ON_POLICY,
                        "--total-steps", "1024", "--n-steps", "64", "--batch-size", "64", "--n-epochs", "2",
                        "--checkpoint-every", "256", "--normalize-obs"],
    # MuJoCo's MjData: Hopper's episodes end early (a checkpoint mid-episode, resets between), normalised
    "ppo-mujoco": ["ppo", "--env", "Hopper-v5", *ON_POLICY, "--total-steps", "1024", "--n-steps", "64",
                   "--batch-size", "64", "--n-epochs", "2", "--checkpoint-every", "256", "--normalize-obs",
                   "--normalize-reward"],
    # Ant reads the previous step's body positions and contact forces: the whole MjData must come back
    "sac-mujoco": ["sac", "--env", "Ant-v5", *OFF_POLICY, *WARM, "--n-envs", "2"],
    # an Atari game without sticky actions (RL Zoo's NoFrameskip-v4): the emulator, the frame stack and
    # the max-pool buffers, lives ending episodes
    "ppo-atari": ["ppo", "--env", "BreakoutNoFrameskip-v4", "--n-envs", "2", "--n-steps", "64", "--batch-size", "64",
                  "--n-epochs", "1", "--total-steps", "768", "--checkpoint-every", "192"],
    # images in a compact replay buffer (each observation once, episode ends on the side)
    "sac-discrete-pixels": ["sac-discrete", "--env", "test_spaces:LitQuadrant", *OFF_POLICY, *WARM,
                            "--optimize-memory-usage"],
}  # fmt: skip
FAST = {
    "ppo",
    "a2c",
    "td3",
    "sac-v2",
    "ppo-async",
    "ppo-lstm",
    "ppo-user-env",
    "ppo-pixels-dict",
    "ppo-mujoco",
}  # the others are marked slow (still in make test)


def pgrad(fault: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FAULTS, fault, *args], capture_output=True, text=True, timeout=300)


def assert_same_run(full: Path, resumed: Path) -> None:
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert (full / "progress.csv").read_text() == (resumed / "progress.csv").read_text()


@pytest.mark.parametrize(
    "case", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow) for c in CASES]
)  # fmt: skip
def test_killed_at_every_kind_of_moment_then_resumed_is_bitwise_the_uninterrupted_run(case, tmp_path):
    args = [*CASES[case], *QUIET]
    full, run = tmp_path / "full", tmp_path / "run"
    assert pgrad("-", "train", *args, "--run-dir", str(full)).returncode == 0
    # 1. inside the second checkpoint's write: its temp file is written, the rename not done
    assert pgrad("before:checkpoint.safetensors:2", "train", *args, "--run-dir", str(run)).returncode == -9
    # 2. inside the resume's own atomic rewrite of progress.csv
    assert pgrad("before:progress.csv:1", "train", "--resume", str(run)).returncode == -9
    # 3. right after the first checkpoint the resumed run writes
    assert pgrad("after:checkpoint.safetensors:1", "train", "--resume", str(run)).returncode == -9
    done = pgrad("-", "train", "--resume", str(run))
    assert done.returncode == 0, done.stderr
    assert_same_run(full, run)
    assert not list(run.glob(".*.tmp"))
