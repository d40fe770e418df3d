"""``pgrad export``: the exported policy is ``agent.act(obs, deterministic=True)``, normalisation and
action map included, run by onnxruntime (and TorchScript) on random observations, and it runs
where pgrad is not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad

ort = pytest.importorskip("onnxruntime")  # the export extra (installed by `make test`)


class SpacesEnv(gym.Env):
    """An env of any observation and action space: random observations, reward 1 for action 0."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(np.all(np.asarray(action) == 0)), False, self.t >= 16, {}


def spaces_env(obs, act):
    return lambda: SpacesEnv(obs, act)


BOX4 = spaces.Box(-5.0, 5.0, (4,), np.float32)
CASES = {
    "ppo-discrete-normalised": ("ppo", "CartPole-v1", {"normalize_obs": True}),
    "ppo-box-clip": ("ppo", "Pendulum-v1", {"normalize_obs": True}),
    "ppo-gsde": ("ppo", "Pendulum-v1", {"use_sde": True}),
    "td3-box-rescale": ("td3", "Pendulum-v1", {"learning_starts": 64, "hidden_sizes": (32, 32)}),
    "sac-tanh": ("sac", "Pendulum-v1", {"learning_starts": 64, "hidden_sizes": (32, 32), "normalize_obs": True}),
    "sac-discrete": ("sac-discrete", "CartPole-v1", {"learning_starts": 64, "hidden_sizes": (32, 32)}),
    "ppo-multidiscrete": ("ppo", spaces_env(BOX4, spaces.MultiDiscrete([3, 4], start=[1, -2])), {}),
    "a2c-multibinary": ("a2c", spaces_env(BOX4, spaces.MultiBinary(3)), {}),
    "ppo-discrete-obs-with-start": ("ppo", spaces_env(spaces.Discrete(5, start=2), spaces.Discrete(3, start=-1)), {}),
    "ppo-image": ("ppo", spaces_env(spaces.Box(0, 255, (3, 10, 10), np.uint8), spaces.Discrete(2)), {}),
}


def observations(agent, n: int = 64) -> np.ndarray:
    space = agent.observation_space
    if isinstance(space, spaces.Box) and space.dtype == np.float32:
        return np.random.default_rng(0).normal(0, 3, (n, *space.shape)).astype(np.float32)  # beyond the clip too
    space.seed(0)
    return np.stack([np.asarray(space.sample()) for _ in range(n)])


@pytest.mark.parametrize("case", CASES)
def test_exported_policy_is_agent_act_deterministic(case, tmp_path):
    algo, env, fields = CASES[case]
    small = {"n_steps": 64, "batch_size": 32} if algo == "ppo" else {}
    steps = 256 if algo in ("ppo", "a2c") else 128
    agent = pgrad.train(algo, env=env, total_steps=steps, seed=1, run_dir=str(tmp_path / "run"), eval_episodes=0,
                        check_env=False, preset="none", **small, **fields)  # fmt: skip
    from pgrad.export import export

    obs = observations(agent)
    expected = agent.act(obs, deterministic=True)
    export(agent, tmp_path / "policy.onnx")
    (action,) = ort.InferenceSession(str(tmp_path / "policy.onnx")).run(None, {"obs": obs})
    assert action.dtype == expected.dtype and action.shape == expected.shape
    np.testing.assert_allclose(action, expected, atol=1e-5, rtol=0)
    one = ort.InferenceSession(str(tmp_path / "policy.onnx")).run(None, {"obs": obs[:1]})[0]  # any batch size
    np.testing.assert_allclose(one, expected[:1], atol=1e-5, rtol=0)
    export(agent, tmp_path / "policy.pt", "torchscript")
    scripted = torch.jit.load(str(tmp_path / "policy.pt"))
    np.testing.assert_allclose(scripted(torch.as_tensor(obs)).numpy(), expected, atol=1e-5, rtol=0)


def test_cli_export_runs_without_pgrad(tmp_path):
    """The README's five lines: onnxruntime alone, in a process that never imports pgrad."""
    run = tmp_path / "run"
    pgrad.train("ppo", env="Pendulum-v1", total_steps=256, run_dir=str(run), normalize_obs=True, eval_episodes=0,
                preset="none", n_steps=64, batch_size=32)  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "pgrad.cli", "export", str(run), "-o", str(tmp_path / "p.onnx")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 'p.onnx'}") and result.stderr == ""
    script = textwrap.dedent(f"""
        import sys, gymnasium as gym, numpy as np, onnxruntime as ort
        policy = ort.InferenceSession({str(tmp_path / "p.onnx")!r})
        env = gym.make("Pendulum-v1")
        obs, _ = env.reset(seed=0)
        action = policy.run(None, {{"obs": obs[None]}})[0][0]
        obs, reward, terminated, truncated, _ = env.step(action)
        assert "pgrad" not in sys.modules and action.shape == (1,) and -2 <= action[0] <= 2
        np.save({str(tmp_path / "obs.npy")!r}, obs[None]); np.save({str(tmp_path / "a.npy")!r}, policy.run(None, {{"obs": obs[None]}})[0])
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    agent = pgrad.load(run)
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), agent.act(np.load(tmp_path / "obs.npy")), atol=1e-5)


def test_export_refuses_what_it_cannot_write_in_one_line(tmp_path):
    env = spaces_env(spaces.Dict({"a": BOX4, "b": spaces.Discrete(3)}), spaces.Discrete(2))
    pgrad.train("ppo", env=env, total_steps=128, run_dir=str(tmp_path / "dict"), eval_episodes=0, check_env=False,
                preset="none", n_steps=64, batch_size=32)  # fmt: skip
    for args, message in (
        ([str(tmp_path / "dict"), "-o", str(tmp_path / "d.onnx")], "takes agents of one observation array"),
        ([str(tmp_path / "nothing"), "-o", str(tmp_path / "d.onnx")], "is not a directory with a saved pgrad agent"),
        ([str(tmp_path / "dict"), "-o", str(tmp_path / "no" / "d.onnx")], "does not exist"),
    ):
        result = subprocess.run([sys.executable, "-m", "pgrad.cli", "export", *args], capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
