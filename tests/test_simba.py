"""SimBa networks (``network="simba"``): the blocks against their equations, every algorithm family
training with them and a saved agent acting the same in a new process, and what is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pgrad
from pgrad.networks import ResidualBlock, mlp, plain_mlp

PGRAD = [sys.executable, "-m", "pgrad.cli"]


@pytest.mark.parametrize("build", [plain_mlp, lambda *a: mlp(*a, out_gain=0.01, network="simba")])
def test_simba_is_its_equations(build):
    """h₀ = W_in x; h_{l+1} = h_l + W₂ relu(W₁ LN(h_l)); y = W_out LN(h_L): written out with the
    module's own parameters."""
    torch.manual_seed(0)
    net = build(5, (8, 8, 8), 3, "relu", *([0.0, 0.0, None, "simba"] if build is plain_mlp else []))
    layers = list(net)
    assert len(layers) == 1 + 3 + 1 + 1 and all(isinstance(b, ResidualBlock) for b in layers[1:4])
    x = torch.randn(4, 5)
    h = F.linear(x, layers[0].weight, layers[0].bias)
    for block in layers[1:4]:
        inner = F.layer_norm(h, (8,), block.norm.weight, block.norm.bias)
        inner = F.relu(F.linear(inner, block.up.weight, block.up.bias))
        assert block.up.out_features == 32  # the inverted bottleneck: 4 × the width
        h = h + F.linear(inner, block.down.weight, block.down.bias)
    h = F.layer_norm(h, (8,), layers[4].weight, layers[4].bias)
    expected = F.linear(h, layers[5].weight, layers[5].bias)
    assert torch.allclose(net(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    "algo, env, fields",
    [
        ("ppo", "CartPole-v1", dict(total_steps=512, n_steps=128, batch_size=64, hidden_sizes=(16, 16))),
        ("trpo", "Pendulum-v1", dict(total_steps=512, n_steps=128, batch_size=64, hidden_sizes=(16,), use_sde=True)),
        ("sac", "Pendulum-v1", dict(total_steps=300, learning_starts=100, batch_size=32, hidden_sizes=(16,),
                                    critic_hidden_sizes=(32, 32))),
        ("sac", "Pendulum-v1", dict(total_steps=300, learning_starts=100, batch_size=32, hidden_sizes=(16,),
                                    variant="v1")),
        ("td3", "Pendulum-v1", dict(total_steps=300, learning_starts=100, batch_size=32, hidden_sizes=(16,))),
        ("sac-discrete", "CartPole-v1", dict(total_steps=300, learning_starts=100, batch_size=32, hidden_sizes=(16,))),
    ],
)  # fmt: skip
def test_every_family_trains_with_simba_and_a_saved_agent_acts_the_same(algo, env, fields, tmp_path):
    agent = pgrad.train(algo, env=env, preset="none", network="simba", normalize_obs=True, run_dir=str(tmp_path / "r"),
                        eval_episodes=1, tensorboard=False, **fields)  # fmt: skip
    policy_blocks = [m for m in agent.policy.modules() if isinstance(m, ResidualBlock)]
    assert len(policy_blocks) == len(fields["hidden_sizes"]) * (2 if algo in ("ppo", "trpo") else 1)  # π (and V)
    obs = np.stack([agent.observation_space.sample() for _ in range(5)])
    # the new process with this one's thread count: a kernel's reduction order may follow it (SAC's SimBa
    # actor acts 1 ulp apart with 2 threads against 1 on an AMD Zen 3), which is not what this checks
    script = ("import pgrad, numpy as np, sys, torch; torch.set_num_threads(int(sys.argv[4])); a = pgrad.load(sys.argv[1]); "
              "np.save(sys.argv[2], np.asarray(a.act(np.load(sys.argv[3]))))")  # fmt: skip
    np.save(tmp_path / "obs.npy", obs)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r"), str(tmp_path / "act.npy"),
                           str(tmp_path / "obs.npy"), str(torch.get_num_threads())], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "act.npy"), np.asarray(agent.act(obs)))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["ppo", "--env", "CartPole-v1", "--network", "simba"], "normalize_obs=False is invalid"),
        (["ppo", "--env", "CartPole-v1", "--network", "simba", "--normalize-obs", "--hidden-sizes", "64", "32"],
         "must be one width repeated"),
        (["sac", "--env", "Pendulum-v1", "--network", "simba", "--normalize-obs", "--critic-layer-norm"],
         "critic_layer_norm"),
        (["crossq", "--env", "Pendulum-v1", "--network", "simba", "--normalize-obs"], "network='simba' is invalid"),
        (["ppo", "--env", "CartPole-v1", "--network", "resnet"], "network"),
    ],
)  # fmt: skip
def test_what_simba_cannot_do_is_one_line(args, fragment, tmp_path):
    result = subprocess.run([*PGRAD, "train", *args, "--preset", "none", "--total-steps", "64", "--run-dir",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


def test_pgrad_list_names_the_algorithms_each_option_is_for():
    wide = {**os.environ, "COLUMNS": "200"}  # one line per table row
    result = subprocess.run([*PGRAD, "list"], capture_output=True, text=True, timeout=120, env=wide)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[3] for line in result.stdout.splitlines()
            if line.startswith("│ --")}  # fmt: skip
    assert set(rows["--rnn lstm|gru"].replace(",", " ").split()) == {"actor_critic", "a2c", "a3c", "ppo"}
    assert set(rows["--use-sde"].replace(",", " ").split()) == {"actor_critic", "a2c", "a3c", "ppo", "npg", "trpo",
                                                                "sac"}  # fmt: skip
    simba = set(rows["--network simba"].replace(",", " ").split())
    assert "crossq" not in simba and {"ppo", "sac", "td3", "ddpg", "sac-discrete", "reinforce"} <= simba
