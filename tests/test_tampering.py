"""Files that were tampered with or corrupted: loading refuses them with one line naming the file,
never runs code, never sets what the run did not declare, never loads a broken agent silently.

A crafted checkpoint is written with pgrad's own writer, so its checksum is valid: these are the
files a hostile user makes, not only a flipped bit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pgrad
from pgrad import checkpoint
from pgrad.checkpoint import CheckpointError
from pgrad.train import resume


class StopAt(Exception):
    pass


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    """A SAC run directory stopped with a checkpoint at step 300 (numpy generators in it)."""
    run_dir = tmp_path_factory.mktemp("tamper") / "sac"
    with pytest.raises(StopAt):
        _train_until_checkpoint(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def mujoco_run(tmp_path_factory):
    """A SAC run on Hopper-v5 stopped with a checkpoint at step 300 (its MjData in it)."""
    run_dir = tmp_path_factory.mktemp("tamper") / "hopper"
    with pytest.raises(StopAt):
        _train_until_checkpoint(run_dir, "Hopper-v5")
    return run_dir


def _train_until_checkpoint(run_dir, env="Pendulum-v1"):
    from pgrad.train import Trainer, resolve_config

    cfg, _, _ = resolve_config("sac", env, "none", {"total_steps": 600, "seed": 0, "run_dir": str(run_dir),
                               "learning_starts": 200, "checkpoint_every": 300, "hidden_sizes": (16, 16),
                               "batch_size": 16, "eval_episodes": 0, "tensorboard": False})  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": "sac", "config": pgrad.config.to_jsonable(cfg)}))
    trainer = Trainer("sac", cfg, run_dir)

    def poll(step):
        trainer.poll(step)
        if trainer.checkpoint_step is not None:
            raise StopAt

    trainer.loop.run(lambda step, metrics: None, poll=poll)


def tampered(run_dir, tmp_path, change):
    """A copy of ``run_dir`` whose checkpoint ``change(tensors, state)`` edited (re-checksummed)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    tensors, state = checkpoint.load_checkpoint(copy)
    change(tensors, state)
    checkpoint.save_checkpoint(copy, tensors, state)
    return copy


def test_the_untouched_checkpoint_resumes(sac_run, tmp_path):
    copy = tampered(sac_run, tmp_path, lambda tensors, state: None)
    resume(copy)
    assert (copy / "model.safetensors").is_file()


def test_a_checkpoint_never_chooses_a_function_to_call(sac_run, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(np.random, "test", lambda *a, **k: called.append(1), raising=False)

    def change(tensors, state):
        state["run.loop.rng"]["numpy_generator"]["bit_generator"] = "test"

    with pytest.raises(CheckpointError, match="bit generator 'test' is not one of PCG64"):
        resume(tampered(sac_run, tmp_path, change))
    assert not called


def test_a_checkpoint_cannot_set_attributes_the_envs_do_not_have(sac_run, tmp_path):
    def change(tensors, state):
        state["sim.env0.layer0.injected"] = 1

    with pytest.raises(CheckpointError, match="attributes this run's envs do not have.*injected"):
        resume(tampered(sac_run, tmp_path, change))


def test_a_checkpoint_cannot_replace_an_env_attribute_by_another_kind(sac_run, tmp_path):
    def change(tensors, state):
        key = next(k for k in state if k.startswith("sim.") and k.endswith("_elapsed_steps"))
        state[key] = {"sequence": [1, 2]}

    with pytest.raises(CheckpointError, match="not a number or array|not a plain value"):
        resume(tampered(sac_run, tmp_path, change))


def _other_model_data() -> np.ndarray:
    import gymnasium as gym

    from pgrad.envs import native_state

    env = gym.make("InvertedPendulum-v5")
    env.reset(seed=0)
    return native_state(env.unwrapped.data)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda saved: saved[: len(saved) // 2], "cannot be read by mujoco"),
        (lambda saved: saved[:0], "cannot be read by mujoco"),
        (lambda saved: np.concatenate([saved[:100], saved[100:101] ^ 0xFF, saved[101:]]), "Invalid model"),
        (lambda saved: _other_model_data(), r"of another model \(nq 2 vs 6"),
        (lambda saved: saved[:8].astype(np.float32), "uint8"),
    ],
    ids=["truncated", "empty", "a byte of its model flipped", "another model", "another dtype"],
)
def test_a_mujoco_state_that_is_not_this_models_data_is_refused(mujoco_run, tmp_path, make, fragment):
    """MuJoCo parses the saved bytes itself; pgrad checks their model's sizes before copying them in."""

    def change(tensors, state):
        key = next(k for k in tensors if k.startswith("sim.env0.") and k.endswith(".data"))
        bad = make(tensors[key].numpy())
        tensors[key] = torch.from_numpy(np.ascontiguousarray(bad))
        state[key] = {"ndarray": str(bad.dtype), "shape": list(bad.shape)}

    assert resume(tampered(mujoco_run, tmp_path / "ok", lambda tensors, state: None)) is not None
    with pytest.raises(CheckpointError, match=fragment):
        resume(tampered(mujoco_run, tmp_path, change))


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("global_step", 10**6, "global_step=1000000 is not a step before total_steps=600"),
        ("global_step", -3, "global_step=-3"),
        ("run.loop.global_step", "300", "not a int"),
        ("run.trainer.updates", -1, "counter updates=-1"),
        ("run.loop.buffer.size", 10**7, "replay buffer size=10000000"),
    ],
)
def test_counters_a_run_cannot_have_reached_are_refused(sac_run, tmp_path, key, value, fragment):
    def change(tensors, state):
        state[key] = value

    with pytest.raises(CheckpointError, match=fragment):
        resume(tampered(sac_run, tmp_path, change))


def test_a_missing_key_is_an_error_not_a_default(sac_run, tmp_path):
    def change(tensors, state):
        del state["run.loop.vector_step"]

    with pytest.raises(CheckpointError, match="run.loop.vector_step is missing"):
        resume(tampered(sac_run, tmp_path, change))


def test_a_tensor_of_another_shape_is_refused(sac_run, tmp_path):
    def change(tensors, state):
        key = next(k for k in tensors if k.startswith("run.loop.algo.temperature.log_alpha"))
        tensors[key] = torch.zeros(3)

    with pytest.raises(CheckpointError, match="shape"):
        resume(tampered(sac_run, tmp_path, change))


def test_nan_weights_and_flipped_bits_are_detected_with_the_file_named(sac_run, tmp_path):
    def change(tensors, state):
        key = next(k for k in tensors if k.endswith("weight"))
        tensors[key][0, 0] = float("nan")

    copy = tampered(sac_run, tmp_path, change)
    with pytest.raises(CheckpointError, match=r"checkpoint.safetensors: tensor .* holds NaN"):
        resume(copy)
    data = bytearray((sac_run / "model.safetensors").read_bytes())
    data[-5] ^= 0x10  # one bit of the last weight
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors fails its checksum"):
        pgrad.load(copy)


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        (("normalizer", "clip_obs"), -1, "clip_obs=-1"),
        (("normalizer", "clip_obs"), float("nan"), "NaN"),
        (("normalizer", "gamma"), 3, "gamma=3"),
        (("normalizer", "normalize_obs"), "yes", "normalize_obs='yes'"),
        (("action_mode",), "teleport", "action_mode='teleport'"),
        (("policy_spec", "hidden_sizes"), [2_000_000_000], "do not fit its policy_spec"),
        (("action_space", "n"), 0, "n=0"),
        (("policy_class",), "os.system", "KeyError"),
    ],
)
def test_agent_json_fields_are_validated(sac_run, tmp_path, path, value, fragment):
    import shutil

    copy = tmp_path / "agent"
    shutil.copytree(sac_run, copy)
    meta = json.loads((copy / "agent.json").read_text())
    if path == ("action_space", "n"):
        meta["action_space"] = {"type": "Discrete", "n": 0}
    else:
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    (copy / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=fragment):
        pgrad.load(copy)
    result = subprocess.run([sys.executable, "-m", "pgrad.cli", "eval", str(copy)], capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
