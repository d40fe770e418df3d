"""Bring your own environment: a gymnasium.Env of the user's own, with constructor arguments, no
render_mode, no render_fps and no render(), trained through a factory, an instance, a registered id
with env_kwargs and the CLI's module:Id, with wrappers, and evaluated in a new process.

This module is importable as ``test_user_env`` (tests/ on the path): importing it registers
``Reach-v0``, as a user's package would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from safetensors.torch import load_file

import pgrad

TESTS = str(Path(__file__).parent)
ENV = os.environ | {"PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
QUICK = {"total_steps": 512, "eval_episodes": 2, "tensorboard": False, "preset": "none"}


class Reach(gym.Env):
    """Walk from a random start to the goal on a line: reward −distance/size a step, +1 and the end
    on arrival, truncated after ``max_steps``. Discrete (left, stay, right) or continuous steps."""

    def __init__(self, size: float = 4.0, goal: float = 1.0, continuous: bool = False, max_steps: int = 40):
        self.size, self.goal, self.max_steps = size, goal, max_steps
        self.observation_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(3)
        self.continuous = continuous
        self.position, self.steps = 0.0, 0

    def _obs(self):
        return np.array([self.position / self.size, (self.goal - self.position) / self.size], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.steps = float(self.np_random.uniform(-self.size, self.size)), 0
        return self._obs(), {}

    def step(self, action):
        move = float(np.clip(action, -1, 1)[0]) if self.continuous else float(action) - 1.0
        self.position = float(np.clip(self.position + move, -self.size, self.size))
        self.steps += 1
        arrived = abs(self.position - self.goal) < 0.5
        reward = 1.0 if arrived else -abs(self.position - self.goal) / self.size
        return self._obs(), reward, arrived, self.steps >= self.max_steps, {}


gym.register("Reach-v0", entry_point=Reach, kwargs={"size": 4.0})


class ScaleObservation(gym.ObservationWrapper):
    """A user's own wrapper with an argument."""

    def __init__(self, env, factor: float = 1.0):
        super().__init__(env)
        self.factor = factor
        self.observation_space = spaces.Box(-2.0 * factor, 2.0 * factor, (2,), np.float32)

    def observation(self, observation):
        return (observation * self.factor).astype(np.float32)


def halve_reward(env):
    return gym.wrappers.TransformReward(env, lambda r: 0.5 * r)


WRAPPERS = [(gym.wrappers.TimeLimit, {"max_episode_steps": 25}), halve_reward, (ScaleObservation, {"factor": 0.5})]


def pgrad_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, env=ENV, timeout=300
    )


def eval_in_new_process(run_dir: Path, *extra: str) -> dict:
    result = pgrad_cli("eval", str(run_dir), "--episodes", "3", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


ALGOS = [("ppo", False), ("sac", True)]


def settings(algo: str) -> dict:
    if algo == "sac":
        return {"learning_starts": 100, "batch_size": 32, "hidden_sizes": (16, 16)} | QUICK
    return {"n_steps": 128, "batch_size": 64} | QUICK


@pytest.mark.parametrize("algo, continuous", ALGOS)
def test_a_factory_with_kwargs_trains_and_a_new_process_evaluates_it(algo, continuous, tmp_path):
    agent = pgrad.train(algo, env=Reach, env_kwargs={"size": 3.0, "continuous": continuous}, run_dir=str(tmp_path / "r"),
                        **settings(algo))  # fmt: skip
    record = json.loads((tmp_path / "r" / "config.json").read_text())["env_spec"]
    assert record == {"name": "test_user_env:Reach", "recordable": True, "factory": "test_user_env:Reach",
                      "kwargs": {"size": 3.0, "continuous": continuous}, "wrappers": []}  # fmt: skip
    assert json.loads((tmp_path / "r" / "agent.json").read_text())["env_spec"] == record
    in_process = pgrad.evaluate(agent, episodes=3)
    assert eval_in_new_process(tmp_path / "r")["returns"] == in_process.returns


@pytest.mark.parametrize("algo, continuous", ALGOS)
def test_an_instance_trains_with_one_env_and_eval_says_how_to_evaluate_it(algo, continuous, tmp_path):
    agent = pgrad.train(algo, env=Reach(size=3.0, continuous=continuous), run_dir=str(tmp_path / "r"), **settings(algo))
    assert agent.evaluation is not None and len(agent.evaluation.returns) == 2
    result = pgrad_cli("eval", str(tmp_path / "r"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pgrad eval RUN --env module:Factory" in result.stderr and "pgrad.evaluate(agent, env=...)" in result.stderr
    factory = "test_user_env:ReachContinuous" if continuous else "test_user_env:Reach"
    assert eval_in_new_process(tmp_path / "r", "--env", factory)["returns"]
    with pytest.raises(ValueError, match="an env instance .* trains with n_envs=1"):
        pgrad.train(algo, env=Reach(continuous=continuous), n_envs=2, run_dir=str(tmp_path / "x"), **settings(algo))
    assert not (tmp_path / "x").exists()


def ReachContinuous(**kwargs):  # noqa: N802  (a factory, named as the env it makes)
    return Reach(continuous=True, **kwargs)


@pytest.mark.parametrize("algo, continuous", ALGOS)
def test_a_registered_id_with_env_kwargs(algo, continuous, tmp_path):
    agent = pgrad.train(algo, env="Reach-v0", env_kwargs={"goal": -1.0, "continuous": continuous},
                        run_dir=str(tmp_path / "r"), **settings(algo))  # fmt: skip
    assert agent.env_spec.make().unwrapped.goal == -1.0
    record = json.loads((tmp_path / "r" / "config.json").read_text())["env_spec"]
    assert record["id"] == "Reach-v0" and record["kwargs"] == {"goal": -1.0, "continuous": continuous}
    assert record["module"] == "test_user_env"  # a new process imports it, and so knows Reach-v0
    shorter = pgrad.evaluate(agent, episodes=2, wrappers=[(gym.wrappers.TimeLimit, {"max_episode_steps": 3})])
    assert max(shorter.lengths) <= 3  # evaluate takes kwargs and wrappers as train does
    assert eval_in_new_process(tmp_path / "r")["returns"] == pgrad.evaluate(agent, episodes=3).returns


@pytest.mark.parametrize("algo, continuous", ALGOS)
def test_the_cli_imports_module_ids_and_takes_kwargs_and_wrappers(algo, continuous, tmp_path):
    run_dir = tmp_path / "r"
    extra = (
        ["--learning-starts", "100", "--batch-size", "32"]
        if algo == "sac"
        else ["--n-steps", "128", "--batch-size", "64"]
    )
    result = pgrad_cli("train", algo, "--env", "test_user_env:Reach-v0", "--env-kwargs", "goal=-2.0",
                       f"continuous={continuous}", "--wrapper", "gymnasium.wrappers:TimeLimit:max_episode_steps=20",
                       "--wrapper", "test_user_env:ScaleObservation:factor=0.5", "--total-steps", "512", *extra,
                       "--run-dir", str(run_dir), "--no-progress-bar", "--eval-episodes", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "config.json").read_text())["env_spec"]
    assert record["id"] == "test_user_env:Reach-v0" and record["kwargs"] == {"goal": -2.0, "continuous": continuous}
    assert [w["path"] for w in record["wrappers"]] == [
        "gymnasium.wrappers.common:TimeLimit",
        "test_user_env:ScaleObservation",
    ]
    assert all(length <= 20 for length in eval_in_new_process(run_dir)["lengths"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--env", "no_such_module:Reach-v0"], "cannot import 'no_such_module'"),
        (["--env", "test_user_env:NoSuch-v0"], "registered no env 'NoSuch-v0'"),
        (["--env", "Reach-v0", "--env-kwargs", "size"], "env kwarg 'size' is invalid: write key=value"),
        (["--env", "Reach-v0", "--env-kwargs", "{bad json"], "is not valid JSON"),
        (["--env", "Reach-v0", "--wrapper", "gymnasium.wrappers:NoSuchWrapper"], "has no 'NoSuchWrapper'"),
        (["--env", "Reach-v0", "--wrapper", "TimeLimit"], "write module:Name"),
        (["--env", "test_user_env:Reach", "--env-kwargs", "sizee=3"], "failed with kwargs {'sizee': 3}"),
    ],
)
def test_cli_env_errors_are_one_line(args, fragment, tmp_path):
    result = pgrad_cli("train", "ppo", *args, "--run-dir", str(tmp_path / "r"), "--total-steps", "256")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


def test_a_lambda_trains_saves_and_resumes_with_the_env_given_again(tmp_path):
    run_dir = tmp_path / "r"
    agent = pgrad.train("ppo", env=lambda: Reach(size=2.0), run_dir=str(run_dir), n_steps=128, batch_size=64, **QUICK)
    assert json.loads((run_dir / "config.json").read_text())["env_spec"]["recordable"] is False
    loaded = pgrad.load(run_dir)
    with pytest.raises(ValueError, match="has no import path"):
        pgrad.evaluate(loaded)
    assert pgrad.evaluate(loaded, env=lambda: Reach(size=2.0), episodes=2).returns == agent.evaluation.returns


def run_with(tmp_path, name, **extra):
    pgrad.train("ppo", env=Reach, env_kwargs={"size": 3.0}, wrappers=WRAPPERS, run_dir=str(tmp_path / name),
                seed=1, n_envs=4, n_steps=32, batch_size=64, n_epochs=2, **QUICK, **extra)  # fmt: skip
    return tmp_path / name


@pytest.mark.parametrize(
    "mode", [{"vectorization": "async"}, pytest.param({"workers": 2}, marks=pytest.mark.xdist_group("ray"))]
)
def test_a_wrapper_chain_gives_the_same_run_in_every_execution_mode(mode, tmp_path, monkeypatch):
    sync = run_with(tmp_path, "sync")
    if "workers" in mode:  # Ray's workers import the user's module, as an installed package would be
        from pgrad.distributed import import_ray

        import_ray().shutdown()
        monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    try:
        other = run_with(tmp_path, "other", **mode)
    finally:
        if "workers" in mode:
            import_ray().shutdown()
    a, b = load_file(sync / "model.safetensors"), load_file(other / "model.safetensors")
    assert all(bool((a[k] == b[k]).all()) for k in a)
    assert (sync / "progress.csv").read_text() == (other / "progress.csv").read_text()
    lengths = json.loads((sync / "eval.json").read_text())["lengths"]
    assert all(n <= 25 for n in lengths)  # the TimeLimit wrapper is there


@pytest.mark.xdist_group("ray")
def test_a_sweep_builds_the_same_env_in_every_trial(tmp_path, monkeypatch):
    from pgrad.distributed import import_ray

    import_ray().shutdown()
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # Ray's tasks import the user's module
    try:
        record = pgrad.sweep("ppo", env=Reach, env_kwargs={"size": 3.0}, wrappers=WRAPPERS, seeds=[0, 1],
                             grid={"learning_rate": [1e-3]}, sweep_dir=str(tmp_path / "s"), total_steps=512, n_steps=128,
                             batch_size=64, eval_episodes=2, tensorboard=False)  # fmt: skip
    finally:
        import_ray().shutdown()
    assert [t.get("error") for t in record["trials"]] == [None, None]
    assert record["env_spec"]["factory"] == "test_user_env:Reach" and len(record["env_spec"]["wrappers"]) == 3
    for trial in record["trials"]:
        assert json.loads((Path(trial["run_dir"]) / "config.json").read_text())["env_spec"] == record["env_spec"]


def test_async_with_a_factory_that_cannot_be_pickled_says_so(monkeypatch):
    """Where subprocesses start by spawn (macOS, Windows) the factory travels pickled."""
    import functools
    import threading

    from pgrad.envs import make_vec_env

    monkeypatch.setattr(gym.vector, "AsyncVectorEnv", functools.partial(gym.vector.AsyncVectorEnv, context="spawn"))
    lock = threading.Lock()
    with pytest.raises(
        ValueError, match="vectorization='async' runs each env in a subprocess and needs a picklable factory"
    ):
        make_vec_env(lambda: lock and Reach(), n_envs=2, vectorization="async")


class BrokenReset(Reach):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs()  # gymnasium's API: (obs, info)


class OutOfSpace(Reach):
    def _obs(self):
        return np.array([5.0, 5.0], np.float32)  # outside Box(-2, 2)


@pytest.mark.parametrize("env_class, fragment", [(BrokenReset, "reset"), (OutOfSpace, "observation")])
def test_an_env_that_breaks_the_api_is_named_with_the_check_that_failed(env_class, fragment, tmp_path):
    with pytest.raises(
        ValueError, match=rf"env 'test_user_env:{env_class.__name__}' fails gymnasium's env checker: .*{fragment}"
    ):
        pgrad.train("ppo", env=env_class, run_dir=str(tmp_path / "r"), **QUICK)
    assert not (tmp_path / "r").exists()


def test_video_of_an_env_without_render_mode_is_one_line(tmp_path):
    pgrad.train("ppo", env=Reach, run_dir=str(tmp_path / "r"), n_steps=128, batch_size=64, **QUICK)
    result = pgrad_cli("eval", str(tmp_path / "r"), "--video", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "takes no render_mode" in result.stderr and not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize(
    "factory",
    ["os; touch /tmp/x:Reach", "os:system", "subprocess:run", "builtins:eval", "numpy:pi", "test_user_env:ENV"],
)
def test_a_recorded_import_path_is_a_plain_dotted_name_of_a_factory(factory, tmp_path):
    pgrad.train("ppo", env=Reach, run_dir=str(tmp_path / "r"), n_steps=128, batch_size=64, **QUICK)
    meta = json.loads((tmp_path / "r" / "agent.json").read_text())
    meta["env_spec"]["factory"] = factory
    (tmp_path / "r" / "agent.json").write_text(json.dumps(meta))
    meta["env_spec"]["kwargs"] = {"command": f"touch {tmp_path / 'pwned'}", "args": ["touch", str(tmp_path / "pwned")]}
    (tmp_path / "r" / "agent.json").write_text(json.dumps(meta))
    agent = pgrad.load(tmp_path / "r")  # loading imports nothing
    with pytest.raises(ValueError, match="'module:Name'|is not a class or a Python function"):
        pgrad.evaluate(agent, episodes=1)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_ppo_learns_a_users_env_clearly_better_than_random(tmp_path):
    agent = pgrad.train("ppo", env=Reach, env_kwargs={"size": 6.0}, run_dir=str(tmp_path / "r"), total_steps=20_000,
                        n_envs=4, n_steps=128, batch_size=128, n_epochs=4, learning_rate=3e-3, preset="none",
                        eval_episodes=20, tensorboard=False, seed=0)  # fmt: skip
    env, rng, random_returns = gym.make("Reach-v0", size=6.0), np.random.default_rng(0), []
    for episode in range(20):
        env.reset(seed=1_000_000 + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
            total, done = total + reward, terminated or truncated
        random_returns.append(total)
    # random walking mostly never arrives (≈ −20); the trained policy walks straight to the goal
    assert agent.evaluation.mean > np.mean(random_returns) + 10, (agent.evaluation.mean, np.mean(random_returns))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (
            {"wrappers": [123]},
            "wrapper 123 is invalid: a callable env -> env, a (callable, kwargs) pair or 'module:Name'",
        ),
        ({"env_kwargs": {1: 2}}, "env_kwargs={1: 2} is invalid: a dict with string keys"),
        ({"check_env": "no"}, "check_env='no' is invalid: must be True or False"),
        ({"env": Reach(), "env_kwargs": {"size": 2}}, "env_kwargs cannot be applied to an env instance"),
        ({"env": gym.spaces.Discrete(2)}, "is invalid: a registered gymnasium id"),
    ],
)
def test_api_env_arguments_are_checked(kwargs, fragment, tmp_path):
    args = {"env": Reach, "run_dir": str(tmp_path / "r"), **QUICK} | kwargs
    with pytest.raises(ValueError, match=re.escape(fragment)):
        pgrad.train("ppo", **args)
    assert not (tmp_path / "r").exists()


def test_eval_with_an_env_that_cannot_be_found_is_one_line(tmp_path):
    pgrad.train("ppo", env=Reach, run_dir=str(tmp_path / "r"), n_steps=128, batch_size=64, **QUICK)
    for env, fragment in [("no_such_module:Foo-v0", "cannot import 'no_such_module'"), ("Reach-v9", "unknown env id")]:
        result = pgrad_cli("eval", str(tmp_path / "r"), "--env", env)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert fragment in result.stderr, result.stderr
