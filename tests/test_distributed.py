"""Ray rollout workers, A3C and sweeps on a local Ray runtime with 2 CPUs.

All tests here share one Ray runtime and run in one xdist worker (``--dist loadgroup``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pgrad
from pgrad.cli import main as cli_main
from pgrad.distributed import WorkerPool, env_slices, init_ray, plan_sweep
from pgrad.distributions import Categorical, DiagGaussian, EnvGenerators
from pgrad.train import resolve_config

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_runtime():
    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_env_generators_do_not_depend_on_the_split():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    mean = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    whole, parts = EnvGenerators(5, range(6)), [EnvGenerators(5, range(0, 2)), EnvGenerators(5, range(2, 6))]
    for _ in range(3):
        a = Categorical(logits).sample(whole)
        b = torch.cat([Categorical(logits[:2]).sample(parts[0]), Categorical(logits[2:]).sample(parts[1])])
        assert torch.equal(a, b)
        x = DiagGaussian(mean, torch.zeros(2)).sample(whole)
        y = torch.cat(
            [DiagGaussian(m, torch.zeros(2)).sample(p) for m, p in ((mean[:2], parts[0]), (mean[2:], parts[1]))]
        )
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="a batch of 3 states for 6 environments"):
        Categorical(logits[:3]).sample(whole)


def test_env_slices_and_config_validation():
    assert env_slices(8, 2) == [range(0, 4), range(4, 8)]
    with pytest.raises(ValueError, match="workers=3 is invalid: must divide n_envs=8"):
        pgrad.train("ppo", env="CartPole-v1", n_envs=8, workers=3, total_steps=100)
    with pytest.raises(ValueError, match="workers=-1"):
        pgrad.train("ppo", env="CartPole-v1", workers=-1, total_steps=100)
    # A3C's own defaults are a valid config (its 2 workers once met 1 env: `--preset none`, or an env
    # without a preset, failed whatever --n-envs said, as the CLI parses flags onto the defaults)
    config, _, preset = resolve_config("a3c", "Pendulum-v1", "none")
    assert preset is None and config.n_envs % config.workers == 0


SHORT = dict(env="CartPole-v1", seed=3, n_envs=4, tensorboard=False, eval_episodes=2)


def test_workers_sample_tuple_observations_as_one_process_does(ray_runtime, tmp_path):
    """Blackjack's observations are a Tuple of three Discretes: packed int64 rows travel from the
    workers, and the run equals the single-process one; A3C's workers encode them as well."""
    fields = dict(env="Blackjack-v1", seed=1, n_envs=4, tensorboard=False, eval_episodes=2, total_steps=2048,
                  n_steps=128, batch_size=128)  # fmt: skip
    single = pgrad.train("ppo", run_dir=str(tmp_path / "single"), **fields)
    split = pgrad.train("ppo", run_dir=str(tmp_path / "split"), workers=2, **fields)
    assert all(torch.equal(v, split.policy.state_dict()[k]) for k, v in single.policy.state_dict().items())
    assert (tmp_path / "single" / "progress.csv").read_text() == (tmp_path / "split" / "progress.csv").read_text()
    a3c = pgrad.train("a3c", env="Blackjack-v1", n_envs=4, total_steps=2000, run_dir=str(tmp_path / "a3c"),
                      tensorboard=False, eval_episodes=2)  # fmt: skip
    assert a3c.layout.packed and len(a3c.evaluation.returns) == 2


@pytest.mark.parametrize(
    "algo,fields",
    [
        ("ppo", dict(total_steps=8192, n_steps=256, batch_size=256)),
        ("ppo", dict(total_steps=2048, n_steps=128, batch_size=128, rnn="lstm", rnn_hidden_size=16)),  # states too
        ("a2c", dict(total_steps=4000, n_steps=5)),
        ("trpo", dict(total_steps=4096, n_steps=256, batch_size=256)),
        ("reinforce", dict(total_steps=6000, episodes_per_update=8, baseline="value")),
    ],
)
def test_distributed_sampling_equals_single_process(ray_runtime, tmp_path, algo, fields):
    single = pgrad.train(algo, run_dir=str(tmp_path / "single"), **SHORT, **fields)
    split = pgrad.train(algo, run_dir=str(tmp_path / "split"), workers=2, **SHORT, **fields)
    a, b = single.policy.state_dict(), split.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "single" / "progress.csv").read_text() == (tmp_path / "split" / "progress.csv").read_text()
    assert single.evaluation.returns == split.evaluation.returns


def test_gsde_noise_on_workers_equals_single_process(ray_runtime, tmp_path):
    """Each env's ε comes from its own stream: the split changes nothing."""
    fields = dict(env="Pendulum-v1", preset="none", seed=2, n_envs=4, tensorboard=False, eval_episodes=2,
                  total_steps=2048, n_steps=128, batch_size=128, use_sde=True, sde_sample_freq=8)  # fmt: skip
    single = pgrad.train("ppo", run_dir=str(tmp_path / "single"), **fields)
    split = pgrad.train("ppo", run_dir=str(tmp_path / "split"), workers=2, **fields)
    assert all(torch.equal(v, split.policy.state_dict()[k]) for k, v in single.policy.state_dict().items())
    assert (tmp_path / "single" / "progress.csv").read_text() == (tmp_path / "split" / "progress.csv").read_text()


@pytest.mark.parametrize(
    "algo,fields,phase",
    [
        ("ppo", dict(total_steps=6144, n_steps=128, batch_size=256), "rollout"),
        # REINFORCE's second phase: the replacement must replay the first (whole episodes) to get there
        ("reinforce", dict(total_steps=6000, episodes_per_update=8), "pad_to"),
    ],
)
def test_a_killed_worker_is_replaced_and_its_data_recollected(ray_runtime, tmp_path, monkeypatch, algo, fields, phase):
    reference = pgrad.train(algo, run_dir=str(tmp_path / "ref"), **SHORT, **fields)
    updates, pools, original = [], [], WorkerPool.gather

    def gather_killing_a_worker(self, method, *args):
        if method == phase:
            updates.append(1)
            if len(updates) == 3:
                ray_runtime.kill(self.workers[0])  # the actor's process dies between two calls
                pools.append(self)
        return original(self, method, *args)

    monkeypatch.setattr(WorkerPool, "gather", gather_killing_a_worker)
    run = pgrad.train(algo, run_dir=str(tmp_path / "killed"), workers=2, **SHORT, **fields)
    assert pools and pools[0].restarts == 1
    # the replacement got the dead worker's state, so the data it re-collected are the same
    a, b = reference.policy.state_dict(), run.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distributed_rejects_normalization_clearly(ray_runtime, tmp_path):
    with pytest.raises(ValueError, match="workers=2 with normalize_obs/normalize_reward is not supported"):
        pgrad.train("ppo", env="CartPole-v1", n_envs=2, workers=2, normalize_obs=True, total_steps=256,
                    n_steps=64, batch_size=64, run_dir=str(tmp_path / "r"))  # fmt: skip


@pytest.mark.slow
def test_a3c_learns_cartpole_within_300k_steps(ray_runtime, tmp_path):
    agent = pgrad.train("a3c", env="CartPole-v1", total_steps=300_000, seed=0, run_dir=str(tmp_path / "a3c"),
                        tensorboard=False)  # fmt: skip
    assert agent.evaluation.mean >= 400, agent.evaluation.returns
    header, *rows = (tmp_path / "a3c" / "progress.csv").read_text().splitlines()
    staleness = [float(r.split(",")[header.split(",").index("charts/staleness")]) for r in rows]
    assert 0 < np.mean(staleness) < 2  # asynchronous: gradients arrive about one update late with 2 workers


def test_sweep_writes_every_trial_and_a_summary(ray_runtime, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "ppo", "--env", "CartPole-v1", "--total-steps", "1024", "--seeds", "0,1",
            "--grid", "learning_rate=3e-4,1e-3", "--set", "n_envs=2", "--set", "n_steps=128",
            "--set", "batch_size=64", "--set", "eval_episodes=1", "--set", "tensorboard=false",
            "--sweep-dir", str(sweep)]  # fmt: skip
    assert cli_main(argv) == 0
    record = json.loads((sweep / "sweep.json").read_text())
    assert len(record["trials"]) == 4
    for t in record["trials"]:
        assert (Path(t["run_dir"]) / "progress.csv").is_file() and Path(t["run_dir"]).parent == sweep
        assert "error" not in t and t["eval_mean"] is not None
    assert {tuple(r["params"].items()) for r in record["summary"]} == {
        (("learning_rate", 3e-4),),
        (("learning_rate", 1e-3),),
    }
    assert all(r["seeds"] == 2 for r in record["summary"])
    assert "learning_rate=0.001" in (sweep / "summary.md").read_text()
    assert cli_main(["plot", str(sweep), "-o", str(tmp_path / "sweep.png")]) == 0
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_validates_every_config_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown ppo config field 'learning_rat'"):
        plan_sweep("ppo", "CartPole-v1", [0], {"learning_rat": [1e-3]}, {}, tmp_path)
    with pytest.raises(ValueError, match="clip_range"):
        plan_sweep("ppo", "CartPole-v1", [0], {"clip_range": [0.2, -1.0]}, {}, tmp_path)
    assert cli_main(["sweep", "ppo", "--grid", "learning_rate"]) == 2
