"""Many seeds in one process (issue 19): the stacked update against each seed's own update, and
``pgrad train ppo --seeds`` (and ``sac``) as a user runs it."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from safetensors.torch import load_file

import pgrad
from pgrad.algos.ppo import PPO, PPOConfig, update_seeds
from pgrad.buffers import RolloutBuffer
from pgrad.checkpoint import checkpoint_step
from pgrad.seeds import parse_seeds, resume_seeds
from pgrad.spaces import action_storage
from pgrad.stack import StackedParameters
from pgrad.train import Interrupted


def filled_buffer(algo: PPO, env: gym.Env, seed: int) -> RolloutBuffer:
    """A rollout of random transitions, with the policy's own log-probabilities and values."""
    cfg = algo.cfg
    shape, dtype = action_storage(env.action_space)
    buf = RolloutBuffer(cfg.n_steps, cfg.n_envs, env.observation_space.shape, shape, dtype)
    g = torch.Generator().manual_seed(seed)
    buf.obs.normal_(generator=g)
    if isinstance(env.action_space, gym.spaces.Discrete):
        buf.actions.random_(0, int(env.action_space.n), generator=g)
    else:
        buf.actions.normal_(generator=g)
    buf.rewards.normal_(generator=g)
    buf.terminated.bernoulli_(0.05, generator=g)
    with torch.no_grad():
        dist, values = algo.policy(buf.obs.flatten(0, 1))
        buf.log_probs.copy_(dist.log_prob(buf.actions.flatten(0, 1)).view_as(buf.log_probs))
        buf.values.copy_(values.view_as(buf.values))
    buf.finish(torch.randn(cfg.n_envs, generator=g), {})
    return buf


CASES = {
    "discrete, minibatches, target-KL stop": ("CartPole-v1", dict(n_steps=16, n_envs=4, batch_size=16, n_epochs=4,
                                                                   target_kl=0.002, ent_coef=0.01)),
    "Box, one minibatch, clipped values, linear schedules": ("Pendulum-v1", dict(
        n_steps=32, n_envs=2, batch_size=64, n_epochs=3, clip_range_vf=0.2, lr_schedule="linear",
        clip_range_schedule="linear", hidden_sizes=(32, 16))),
    "gSDE, separate value sizes, entropy bonus": ("Pendulum-v1", dict(
        n_steps=16, n_envs=2, batch_size=8, n_epochs=2, use_sde=True, vf_hidden_sizes=(24,), hidden_sizes=(16,),
        ent_coef=0.01)),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_stacked_update_equals_each_seeds_own_update(case):
    """S seeds updated as one stack end where each seed's own PPO.update takes it: parameters,
    Adam's state, the shuffling generator, every metric (float rounding apart: batched matrix
    products sum in another order)."""
    env_id, fields = CASES[case]
    env = gym.make(env_id)
    algos = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        algos.append(PPO(PPOConfig(env=env_id, seed=seed, **fields), env.observation_space, env.action_space,
                         torch.device("cpu")))  # fmt: skip
    bufs = [filled_buffer(algo, env, 10 + s) for s, algo in enumerate(algos)]
    singles = copy.deepcopy(algos)
    stack = StackedParameters([algo.policy for algo in algos])
    for rounds in range(2):  # twice: the second update starts from Adam's state of the first
        expected = [
            algo.update(buf, progress_remaining=1.0 - rounds / 4) for algo, buf in zip(singles, bufs, strict=True)
        ]
        got = update_seeds(algos, bufs, stack, 1.0 - rounds / 4, [True, True, True])
        for single, stacked, want, have in zip(singles, algos, expected, got, strict=True):
            assert have.keys() == want.keys()
            for key in want:
                assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key
            for (name, p), q in zip(single.policy.named_parameters(), stacked.policy.parameters(), strict=True):
                torch.testing.assert_close(q, p, rtol=1e-4, atol=2e-6, msg=name)
            assert torch.equal(single.generator.get_state(), stacked.generator.get_state())
            for p, q in zip(single.params, stacked.params, strict=True):
                torch.testing.assert_close(stacked.optimizer.state[q]["exp_avg_sq"], single.optimizer.state[p]["exp_avg_sq"],
                                           rtol=1e-3, atol=1e-9)  # fmt: skip
    if fields.get("target_kl"):  # the case is built so that some seeds stop early: the test sees it
        steps = [m["charts/gradient_steps"] for m in expected]
        assert min(steps) < fields["n_epochs"] * fields["n_steps"] * fields["n_envs"] // fields["batch_size"]


def seed_algos(algo_name: str, env_id: str, fields: dict) -> tuple[list, gym.Env]:
    """Seeds 0-2 of an algorithm (each network initialised under its seed), and the env of its spaces."""
    from pgrad.algos import get_algo

    entry, env = get_algo(algo_name), gym.make(env_id)
    algos = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        cfg = entry.config_class(env=env_id, seed=seed, **fields)
        algos.append(entry.algo_class(cfg, env.observation_space, env.action_space, torch.device("cpu")))
    return algos, env


def assert_each_seed_as_its_own(singles: list, algos: list, expected: list, got: list, rel: float) -> None:
    """Each stacked seed's metrics and parameters are its own single update's (float rounding apart)."""
    for single, stacked, want, have in zip(singles, algos, expected, got, strict=True):
        assert list(have) == list(want)
        for key in want:
            assert have[key] == pytest.approx(want[key], rel=rel, abs=1e-5), key
        for (name, p), q in zip(single.policy.named_parameters(), stacked.policy.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=2e-6, msg=name)


A2C_CASES = {
    "a2c, n-step returns, RMSprop": ("a2c", "CartPole-v1", dict(n_steps=5, n_envs=4, ent_coef=0.01)),
    "a2c, GAE, normalised advantages, linear lr": ("a2c", "Pendulum-v1", dict(
        n_steps=8, n_envs=2, gae_lambda=0.9, normalize_advantage=True, lr_schedule="linear", hidden_sizes=(16,))),
    "actor_critic, Adam": ("actor_critic", "CartPole-v1", dict(n_envs=4)),
}  # fmt: skip


@pytest.mark.parametrize("case", A2C_CASES)
def test_stacked_a2c_update_equals_each_seeds_own_update(case):
    """A2C and the one-step actor-critic stacked: each seed's parameters, optimizer state and
    metrics after three updates are its own update's (float rounding apart)."""
    from pgrad.algos.actor_critic import update_seeds as a2c_update_seeds

    algos, env = seed_algos(*A2C_CASES[case])
    bufs = [filled_buffer(algo, env, 20 + s) for s, algo in enumerate(algos)]
    singles = copy.deepcopy(algos)
    stack = StackedParameters([algo.policy for algo in algos])
    for rounds in range(3):
        progress = 1.0 - rounds / 4
        expected = [algo.update(buf, progress_remaining=progress) for algo, buf in zip(singles, bufs, strict=True)]
        got = a2c_update_seeds(algos, bufs, stack, progress, [True, True, True])
        assert_each_seed_as_its_own(singles, algos, expected, got, rel=1e-4)


def test_a_stopped_seed_takes_no_step_and_draws_nothing():
    env = gym.make("CartPole-v1")
    cfg = dict(env="CartPole-v1", n_steps=16, n_envs=2, batch_size=8, n_epochs=2)
    algos = [
        PPO(PPOConfig(seed=s, **cfg), env.observation_space, env.action_space, torch.device("cpu")) for s in (0, 1)
    ]
    bufs = [filled_buffer(algo, env, s) for s, algo in enumerate(algos)]
    before = [p.detach().clone() for p in algos[1].policy.parameters()]
    generator = algos[1].generator.get_state()
    stack = StackedParameters([algo.policy for algo in algos])
    metrics = update_seeds(algos, bufs, stack, 1.0, [True, False])
    assert metrics[1] is None and metrics[0]["charts/gradient_steps"] == 8
    assert all(torch.equal(p, q) for p, q in zip(algos[1].policy.parameters(), before, strict=True))
    assert torch.equal(algos[1].generator.get_state(), generator)


TRUST_REGION_CASES = {
    "trpo, discrete, critic minibatches": ("trpo", "CartPole-v1", dict(n_steps=32, n_envs=4, batch_size=32,
                                                                       n_critic_updates=3, cg_max_steps=8)),
    "trpo, Box (log-std), linear lr, CG to the tolerance": ("trpo", "Pendulum-v1", dict(
        n_steps=32, n_envs=2, batch_size=64, lr_schedule="linear", hidden_sizes=(32, 16), cg_tolerance=1e-3)),
    "npg, discrete, unnormalised advantages": ("npg", "CartPole-v1", dict(n_steps=16, n_envs=4, batch_size=16,
                                                                          normalize_advantage=False)),
}  # fmt: skip


@pytest.mark.parametrize("case", TRUST_REGION_CASES)
def test_stacked_trust_region_update_equals_each_seeds_own_update(case):
    """TRPO and NPG stacked: each seed's CG (its own scalars and stop), step scale, line search,
    critic fit and metrics after two updates are its own update's (float rounding apart)."""
    from pgrad.trust_region import update_seeds as trust_region_update_seeds

    fields = TRUST_REGION_CASES[case][2]
    algos, env = seed_algos(*TRUST_REGION_CASES[case])
    singles = copy.deepcopy(algos)
    stack = StackedParameters([algo.policy for algo in algos])
    for rounds in range(2):
        bufs = [filled_buffer(algo, env, 30 + 3 * rounds + s) for s, algo in enumerate(singles)]
        progress = 1.0 - rounds / 4
        expected = [algo.update(buf, progress_remaining=progress) for algo, buf in zip(singles, bufs, strict=True)]
        got = trust_region_update_seeds(algos, bufs, stack, progress, [True, True, True])
        assert_each_seed_as_its_own(singles, algos, expected, got, rel=1e-3)
        for single, stacked in zip(singles, algos, strict=True):
            assert torch.equal(single.generator.get_state(), stacked.generator.get_state())
    if "tolerance" in case:  # the case is built so that CG stops early for some seeds: the test sees it
        assert any(m["losses/cg_iterations"] < fields.get("cg_max_steps", 15) for m in expected)


def test_batched_conjugate_gradient_is_each_seeds_own():
    """Each seed's x, residual and iteration count as conjugate_gradient alone gives them, for
    explicit SPD matrices of different conditioning, one seed stopping at the tolerance early and
    one with b = 0."""
    from pgrad.trust_region import conjugate_gradient, conjugate_gradient_seeds

    g = torch.Generator().manual_seed(0)
    P = 12
    matrices = []
    for scale in (1.0, 30.0, 1.0):
        m = torch.randn(P, P, generator=g, dtype=torch.float64)
        matrices.append(m @ m.T / P + torch.eye(P, dtype=torch.float64) * (0.1 if scale > 1 else 1.0))
    A = torch.stack(matrices)  # [S, P, P]
    b = torch.randn(3, P, generator=g, dtype=torch.float64)
    b[2] = 0.0
    for tolerance in (1e-3, 1e-12):
        got = conjugate_gradient_seeds(lambda v: torch.einsum("spq,sq->sp", A, v), b, 10, tolerance)
        for s in range(3):
            want = conjugate_gradient(lambda v, s=s: A[s] @ v, b[s], 10, tolerance)
            torch.testing.assert_close(got[s].x, want.x, rtol=1e-10, atol=1e-12)
            assert got[s].iterations == want.iterations and got[s].residual == pytest.approx(want.residual, rel=1e-9)
        assert got[2].iterations == 0 and not got[2].x.any()
    assert len({r.iterations for r in got}) > 1  # the seeds stopped at different iterations


def test_a_stopped_trpo_seed_takes_no_step_and_draws_nothing():
    from pgrad.algos.trpo import TRPO, TRPOConfig
    from pgrad.trust_region import update_seeds as trust_region_update_seeds

    env = gym.make("CartPole-v1")
    algos = [TRPO(TRPOConfig(seed=s, n_steps=16, n_envs=2, batch_size=8), env.observation_space, env.action_space,
                  torch.device("cpu")) for s in (0, 1)]  # fmt: skip
    bufs = [filled_buffer(algo, env, s) for s, algo in enumerate(algos)]
    before = [p.detach().clone() for p in algos[1].policy.parameters()]
    generator = algos[1].generator.get_state()
    metrics = trust_region_update_seeds(algos, bufs, StackedParameters([a.policy for a in algos]), 1.0, [True, False])
    assert metrics[1] is None and metrics[0]["losses/line_search_accepted"] == 1.0
    assert all(torch.equal(p, q) for p, q in zip(algos[1].policy.parameters(), before, strict=True))
    assert torch.equal(algos[1].generator.get_state(), generator)


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_trust_region_algorithms_train_stacked(tmp_path, algo):
    agents = pgrad.train(algo, env="CartPole-v1", seeds=[0, 1], total_steps=512, n_steps=64, n_envs=2,
                         batch_size=32, eval_episodes=2, run_dir=str(tmp_path / algo))  # fmt: skip
    assert len(agents) == 2 and all(a.evaluation is not None for a in agents)
    for seed in (0, 1):
        assert (tmp_path / algo / f"seed-{seed}" / "model.safetensors").is_file()


def test_stacking_refuses_networks_it_cannot_stack():
    from pgrad.networks import ActorCritic

    with pytest.raises(ValueError, match="differs from seed 0"):
        StackedParameters([ActorCritic(4, 2, True, (8,)), ActorCritic(4, 2, True, (16,))])


# -- as a user runs it ------------------------------------------------------------------------------

SMALL = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, eval_episodes=2)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)  # fmt: skip


def test_cli_trains_each_seed_into_an_ordinary_run(tmp_path):
    runs = tmp_path / "runs"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    done = cli("train", "ppo", "--env", "CartPole-v1", "--seeds", "3-4", "--total-steps", "1024", "--run-dir", str(runs),
               *flags)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 seeds in one process" in done.stdout and "over seeds" in done.stdout
    assert json.loads((runs / "seeds.json").read_text())["runs"] == ["seed-3", "seed-4"]
    for seed in (3, 4):
        run = runs / f"seed-{seed}"
        assert json.loads((run / "config.json").read_text())["config"]["seed"] == seed
        for name in ("model.safetensors", "progress.csv", "eval.json", "curve.png"):
            assert (run / name).is_file(), name
        steps = [int(line.split(",")[0]) for line in (run / "progress.csv").read_text().splitlines()[1:]]
        assert steps[-1] == 1024
    evaluated = cli("eval", str(runs / "seed-4"), "--episodes", "2")
    assert evaluated.returncode == 0 and "mean return" in evaluated.stdout, evaluated.stderr
    plotted = cli("plot", str(runs), "-o", str(tmp_path / "curves.png"))
    assert plotted.returncode == 0 and (tmp_path / "curves.png").is_file(), plotted.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["ppo", "--seeds", "3"], "two or more distinct seeds"),
        (["ppo", "--seeds", "0-x"], "'0-x' is invalid"),
        (["ppo", "--seeds", "0,0"], "two or more distinct seeds"),
        (["a3c", "--seeds", "0,1"], "--seeds is invalid for a3c"),
        (["ppo", "--seeds", "0,1", "--seed", "2"], "--seeds replaces --seed"),
        (["ppo", "--seeds", "0,1", "--loss", "kl_penalty"], "loss='kl_penalty' is invalid"),
        (["ppo", "--seeds", "0,1", "--rnn", "lstm"], "rnn='lstm' is invalid"),
        (["sac", "--env", "Pendulum-v1", "--seeds", "0,1", "--variant", "v1"], "variant='v1' is invalid"),
        (["sac", "--env", "Pendulum-v1", "--seeds", "0,1", "--use-sde"], "use_sde=True is invalid"),
        (
            ["sac", "--env", "Pendulum-v1", "--seeds", "0,1", "--network", "simba", "--normalize-obs"],
            "cannot be stacked",
        ),
        (["sac", "--env", "Pendulum-v1", "--seeds", "0,1", "--critic-layer-norm"], "cannot be stacked over seeds"),
        (["td3", "--env", "Pendulum-v1", "--seeds", "0,1", "--train-freq-unit", "episode"], "train_freq_unit="),
        (["reinforce", "--seeds", "0,1"], "--seeds is invalid for reinforce"),
    ],
)
def test_cli_refuses_what_it_cannot_stack_in_one_line(tmp_path, args, message):
    done = cli("train", *args, "--total-steps", "256", "--run-dir", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_failed_start_leaves_no_debris(tmp_path):
    """The second seed's directory is taken: the first seed's, made by this start, goes again; the
    user's files stay as they were."""
    taken = tmp_path / "r" / "seed-1"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="seed-1' already exists"):
        pgrad.train("ppo", env="CartPole-v1", seeds=[0, 1], total_steps=256, run_dir=str(tmp_path / "r"), **SMALL)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["seed-1"]
    assert [p.name for p in taken.iterdir() if p.name != ".pgrad.lock"] == ["notes.txt"]  # as a single run leaves it


def test_stacks_other_architectures():
    """A SimBa policy (residual blocks, LayerNorm) and a Box action space stack as plain MLPs do."""
    agents = pgrad.train("ppo", env="Pendulum-v1", seeds=[0, 1], total_steps=256, network="simba",
                         hidden_sizes=(16,), normalize_obs=True, save_final_checkpoint=False, **SMALL)  # fmt: skip
    assert len(agents) == 2 and all(a.evaluation is not None for a in agents)


def test_parse_seeds():
    assert parse_seeds("0-3,8") == [0, 1, 2, 3, 8]
    assert parse_seeds(" 5 , 2 ") == [5, 2]
    with pytest.raises(ValueError):
        parse_seeds("3-1")
    with pytest.raises(ValueError, match="seeds=5 is invalid"):
        pgrad.train("ppo", seeds=5)


class SignalAt(pgrad.Callback):
    """SIGTERM to this process once training reaches ``step`` (as a user's Ctrl-C would)."""

    def __init__(self, step: int):
        self.step, self.sent = step, False

    def on_update(self, step, metrics):  # called by every seed's run: one signal, as from a user
        if step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def files(run: Path) -> dict[str, object]:
    """What a run ends with: its weights (the tensors) and its logged rows and evaluation (the bytes)."""
    weights = {k: v.numpy().tobytes() for k, v in load_file(run / "model.safetensors").items()}
    return {"weights": weights} | {name: (run / name).read_bytes() for name in ("progress.csv", "eval.json")}


def cut_and_resumed_ends_as_whole(tmp_path: Path, algo: str, step: int, common: dict, whole: list) -> None:
    """A SIGTERM at ``step`` stops every seed there with a checkpoint; ``--resume`` of the parent ends
    as the uninterrupted run in ``tmp_path / "whole"`` ended (``whole``: its agents), byte for byte."""
    with pytest.raises(Interrupted, match=f"stopped at step {step:,} with a checkpoint in each seed's run"):
        pgrad.train(algo, run_dir=str(tmp_path / "cut"), callbacks=[SignalAt(step)], **common)
    assert [checkpoint_step(tmp_path / "cut" / f"seed-{seed}") for seed in (0, 1)] == [step, step]
    resumed = resume_seeds(tmp_path / "cut")
    assert [a.evaluation.returns for a in resumed] == [a.evaluation.returns for a in whole]
    for seed in (0, 1):
        assert files(tmp_path / "cut" / f"seed-{seed}") == files(tmp_path / "whole" / f"seed-{seed}")


def test_stacked_run_is_reproducible_and_resumes_bitwise(tmp_path):
    """Same seeds, same results; a SIGTERM stops every seed at one step with a checkpoint, and
    ``--resume`` of the parent ends where the uninterrupted run ends, byte for byte."""
    common = dict(env="CartPole-v1", seeds=[0, 1], total_steps=1536, checkpoint_every=256, **SMALL)
    whole = pgrad.train("ppo", run_dir=str(tmp_path / "whole"), **common)
    again = pgrad.train("ppo", run_dir=str(tmp_path / "again"), **common)
    assert [a.evaluation.returns for a in whole] == [a.evaluation.returns for a in again]
    for seed in (0, 1):
        assert files(tmp_path / "whole" / f"seed-{seed}") == files(tmp_path / "again" / f"seed-{seed}")
    assert files(tmp_path / "whole" / "seed-0")["progress.csv"] != files(tmp_path / "whole" / "seed-1")["progress.csv"]

    cut_and_resumed_ends_as_whole(tmp_path, "ppo", 768, common, whole)


@pytest.mark.parametrize("algo", ["a2c", "actor_critic"])
def test_a2c_family_trains_stacked(tmp_path, algo):
    agents = pgrad.train(algo, env="CartPole-v1", seeds=[0, 1], total_steps=400, n_envs=2, eval_episodes=2,
                         run_dir=str(tmp_path / algo))  # fmt: skip
    assert [a.config["seed"] for a in agents] == [0, 1]
    for seed in (0, 1):
        rows = (tmp_path / algo / f"seed-{seed}" / "progress.csv").read_text().splitlines()
        assert rows[-1].split(",")[0] == "400"  # each seed logged its last update


# -- SAC: every seed's update in one stacked pass --------------------------------------------------

SAC_CASES = {
    "learned α": {},
    "policy delay 2, fixed α": dict(policy_delay=2, ent_coef=0.1),
    "n-step discounts, 2-d actions": dict(n_steps=3),
}


def replay_batch(g: torch.Generator, B: int, obs_dim: int, act_dim: int, nstep: bool) -> dict[str, torch.Tensor]:
    batch = dict(obs=torch.randn(B, obs_dim, generator=g), actions=torch.rand(B, act_dim, generator=g) * 2 - 1,
                 next_obs=torch.randn(B, obs_dim, generator=g), rewards=torch.randn(B, generator=g),
                 terminated=(torch.rand(B, generator=g) < 0.2).float())  # fmt: skip
    if nstep:
        batch["discount"] = 0.99 ** torch.randint(1, 4, (B,), generator=g).float()
    return batch


def stacked_matches_singles(singles, update_seeds, stacks_of, steps, networks, make_batch) -> list:
    """Copies of ``singles`` through the stacked ``update_seeds``, ``singles`` through their own
    ``update``, on the same batches (``make_batch()`` per seed and step): every step's metrics and,
    at the end, the weights of ``networks`` agree. Returns the stacked copies."""
    stacked = [copy.deepcopy(algo) for algo in singles]
    stacks = stacks_of(stacked)
    for step in range(steps):
        batches = [make_batch() for _ in singles]
        own = [algo.update(batch) for algo, batch in zip(singles, batches, strict=True)]
        together = update_seeds(stacked, batches, stacks)
        for mine, theirs in zip(own, together, strict=True):
            assert mine.keys() == theirs.keys()
            for k in mine:
                assert theirs[k] == pytest.approx(mine[k], rel=1e-5, abs=1e-6), (step, k)
    for mine, theirs in zip(singles, stacked, strict=True):
        for net in networks:
            for p, q in zip(getattr(mine, net).parameters(), getattr(theirs, net).parameters(), strict=True):
                torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    return stacked


@pytest.mark.parametrize("case", SAC_CASES)
def test_stacked_sac_update_equals_each_seeds_own_update(case):
    """Three seeds, six gradient steps (the first ones through torch's own Adam step, the later ones
    through the fused kernel), each seed's own batches: the stacked update gives every seed the
    metrics, weights, target weights, α and generator state its own ``SAC.update`` gives it."""
    from pgrad.algos.sac import SAC, SACConfig, SACStacks
    from pgrad.algos.sac import update_seeds as sac_update_seeds

    kw = SAC_CASES[case]
    act_dim = 2 if "n_steps" in kw else 1
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (act_dim,))
    singles = [SAC(SACConfig(env="Pendulum-v1", hidden_sizes=(32, 16), seed=s, **kw), obs_space, act_space,
                   torch.device("cpu")) for s in (0, 1, 2)]  # fmt: skip
    g = torch.Generator().manual_seed(7)
    stacked = stacked_matches_singles(singles, sac_update_seeds, SACStacks.of, 6, ("actor", "critic", "critic_target"),
                                      lambda: replay_batch(g, 16, 3, act_dim, "n_steps" in kw))  # fmt: skip
    for mine, theirs in zip(singles, stacked, strict=True):
        torch.testing.assert_close(theirs.temperature.log_alpha, mine.temperature.log_alpha, rtol=1e-5, atol=1e-7)
        assert torch.equal(theirs.generator.get_state(), mine.generator.get_state())
        assert theirs.updates == mine.updates


def test_a_stopped_sac_seed_takes_no_step_and_draws_nothing():
    """Seed 0 stopped: it keeps its weights, α and generator; seed 1 goes on as its own update does,
    its policy delay counted by its own updates."""
    from pgrad.algos.sac import SAC, SACConfig, SACStacks
    from pgrad.algos.sac import update_seeds as sac_update_seeds

    obs_space, act_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,))
    algos = [SAC(SACConfig(env="Pendulum-v1", hidden_sizes=(16,), seed=s, policy_delay=2), obs_space, act_space,
                 torch.device("cpu")) for s in (0, 1)]  # fmt: skip
    alone = copy.deepcopy(algos[1])
    stacks = SACStacks.of(algos)
    nets = [algos[0].actor, algos[0].critic, algos[0].critic_target]
    before = [p.detach().clone() for net in nets for p in net.parameters()]
    alpha, generator = algos[0].temperature.log_alpha.detach().clone(), algos[0].generator.get_state()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = replay_batch(g, 8, 3, 1, False)
        metrics = sac_update_seeds(algos, [None, batch], stacks)
        assert metrics[0] is None and metrics[1] == pytest.approx(alone.update(batch), rel=1e-5, abs=1e-6)
    assert all(torch.equal(p, q) for p, q in zip((p for net in nets for p in net.parameters()), before, strict=True))
    assert torch.equal(algos[0].temperature.log_alpha, alpha) and torch.equal(algos[0].generator.get_state(), generator)
    assert algos[0].updates == 0 and algos[1].updates == 3
    torch.testing.assert_close(algos[1].temperature.log_alpha, alone.temperature.log_alpha)


SAC_SMALL = dict(env="Pendulum-v1", total_steps=600, learning_starts=200, hidden_sizes=(32, 32), batch_size=32,
                 eval_episodes=2, eval_every=300, checkpoint_every=200)  # fmt: skip


@pytest.mark.slow  # ~30-60 s on 2 cores: `make test-all` (the PPO case above is in `make test`)
def test_stacked_sac_run_is_reproducible_and_resumes_bitwise(tmp_path):
    """Each seed's run directory is an ordinary SAC run; the same seeds give the same results, and a
    SIGTERM mid-run (replay buffers in the checkpoints) resumes to the uninterrupted run's bytes."""
    common = dict(seeds=[0, 1], save_replay_buffer=True, **SAC_SMALL)
    whole = pgrad.train("sac", run_dir=str(tmp_path / "whole"), **common)
    again = pgrad.train("sac", run_dir=str(tmp_path / "again"), **common)
    assert [a.evaluation.returns for a in whole] == [a.evaluation.returns for a in again]
    for seed in (0, 1):
        assert files(tmp_path / "whole" / f"seed-{seed}") == files(tmp_path / "again" / f"seed-{seed}")
        rows = (tmp_path / "whole" / f"seed-{seed}" / "progress.csv").read_text().splitlines()
        assert rows[-1].split(",")[0] == "600" and "losses/alpha" in rows[0]
    assert whole[0].evaluation.returns != whole[1].evaluation.returns

    cut_and_resumed_ends_as_whole(tmp_path, "sac", 400, common, whole)


def test_a_stacked_sac_seed_learns_as_its_single_run(tmp_path):
    """Seed 1 of a stacked run and seed 1 alone act, sample and draw alike: the same warm-up (their
    first evaluation, before any update, is equal), and their first logged update agrees until
    float rounding (one batched product against one product per seed) parts them."""
    config = SAC_SMALL | dict(learning_starts=300)
    pgrad.train("sac", seeds=[0, 1], run_dir=str(tmp_path / "stacked"), **config)
    pgrad.train("sac", seed=1, run_dir=str(tmp_path / "single"), verbose=0, **config)
    runs = (tmp_path / "stacked" / "seed-1", tmp_path / "single")
    evals = [(run / "eval.csv").read_text().splitlines()[1] for run in runs]
    assert evals[0].split(",")[0] == "300" and evals[0] == evals[1]
    tables = [(run / "progress.csv").read_text().splitlines() for run in runs]
    first = [dict(zip(table[0].split(","), table[1].split(","), strict=True)) for table in tables]
    assert first[0].keys() == first[1].keys()
    for key in (k for k in first[0] if k.startswith("losses/")):
        assert float(first[0][key]) == pytest.approx(float(first[1][key]), rel=1e-4, abs=1e-6), key


# -- TD3 and DDPG ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
@pytest.mark.parametrize("nstep", [False, True])
def test_stacked_deterministic_update_equals_each_seeds_own_update(algo, nstep):
    """TD3 (twin critics, smoothing noise from each seed's generator, delayed actor and targets) and
    DDPG: three seeds, five gradient steps, the stacked update against each seed's own ``update``."""
    from pgrad.algos.ddpg import DDPG, DDPGConfig, DeterministicStacks
    from pgrad.algos.ddpg import update_seeds as deterministic_update_seeds
    from pgrad.algos.td3 import TD3, TD3Config

    cls, config = (TD3, TD3Config) if algo == "td3" else (DDPG, DDPGConfig)
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,))
    singles = [cls(config(env="Pendulum-v1", hidden_sizes=(32, 16), seed=s), obs_space, act_space,
                   torch.device("cpu")) for s in (0, 1, 2)]  # fmt: skip
    g = torch.Generator().manual_seed(3)
    stacked = stacked_matches_singles(singles, deterministic_update_seeds, DeterministicStacks.of, 5,
                                      ("actor", "actor_target", "critic", "critic_target"),
                                      lambda: replay_batch(g, 16, 3, 2, nstep))  # fmt: skip
    for mine, theirs in zip(singles, stacked, strict=True):
        if algo == "td3":
            assert torch.equal(theirs.generator.get_state(), mine.generator.get_state())
            assert theirs.updates == mine.updates


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_td3_and_ddpg_train_stacked(tmp_path, algo):
    agents = pgrad.train(algo, seeds=[0, 1], run_dir=str(tmp_path / algo), **SAC_SMALL)
    assert [a.config["seed"] for a in agents] == [0, 1] and all(a.evaluation is not None for a in agents)
    for seed in (0, 1):
        rows = (tmp_path / algo / f"seed-{seed}" / "progress.csv").read_text().splitlines()
        assert rows[-1].split(",")[0] == "600" and "losses/actor_loss" in rows[0]


class StopFirstSeedAt(pgrad.Callback):
    """``False`` from the first report at ``step`` or later: seed 0's (the seeds report in order), once."""

    def __init__(self, step: int):
        self.step, self.stopped = step, False

    def on_update(self, step, metrics):
        if step >= self.step and not self.stopped:
            self.stopped = True
            return False
        return None


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_when_seed_0_stops_the_others_run_to_their_budget(tmp_path, algo):
    config = dict(env="CartPole-v1", total_steps=1024, **SMALL) if algo == "ppo" else dict(SAC_SMALL)
    agents = pgrad.train(algo, seeds=[0, 1], run_dir=str(tmp_path / "r"), callbacks=[StopFirstSeedAt(256)], **config)
    last = [checkpoint_step(tmp_path / "r" / f"seed-{s}") for s in (0, 1)]  # each run's final checkpoint
    assert 256 <= last[0] < config["total_steps"] and last[1] == config["total_steps"]
    assert all(a.evaluation is not None for a in agents)
