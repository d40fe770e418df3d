"""What a checkpoint holds is declared, not guessed: every random generator a run can reach is saved
and restored, and an attribute that is neither state nor declared wiring stops the checkpoint."""

from __future__ import annotations

import gc
import random

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algos import ALGORITHMS
from pgrad.state import StateError, capture, restore
from pgrad.train import Trainer, resolve_config

ENVS = {"sac": "Pendulum-v1", "td3": "Pendulum-v1", "ddpg": "Pendulum-v1", "crossq": "Pendulum-v1"}
CASES = [(name, {}) for name in ALGORITHMS if name != "a3c"] + [("ddpg", {"noise": "ou"}), ("sac", {"variant": "v1"})]


def generators(root) -> list:
    """Every torch, numpy and Python generator reachable from ``root`` through any reference
    (gc.get_referents: independent of pgrad's own walk), stopping at gymnasium's envs and spaces,
    whose state the env part of a checkpoint covers (tested in test_resume)."""
    found, seen, stack = [], set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, gym.Env, gym.vector.VectorEnv, gym.Space)):
            continue
        seen.add(id(obj))
        if isinstance(obj, (torch.Generator, np.random.Generator, random.Random)):
            found.append(obj)
            continue
        stack.extend(gc.get_referents(obj))
    return found


def draw(g) -> float:
    if isinstance(g, torch.Generator):
        return float(torch.rand((), generator=g))
    return float(g.random())


@pytest.mark.parametrize(
    "algo, extra", CASES, ids=[f"{a}{'-' + '-'.join(map(str, e.values())) if e else ''}" for a, e in CASES]
)
def test_every_reachable_generator_is_restored(algo, extra, tmp_path):
    cfg, _, _ = resolve_config(algo, ENVS.get(algo, "CartPole-v1"), "none",
                               {"total_steps": 1000, "run_dir": str(tmp_path), **extra})  # fmt: skip
    trainer = Trainer(algo, cfg, tmp_path)
    state = {"loop": trainer.loop, "trainer": trainer.counters}
    found = generators(state)
    assert found, "the walk found no generator at all: it is broken"
    tensors, meta = {}, {}
    capture(state, "run", tensors, meta)
    expected = [draw(g) for g in found]  # the next number each would give after the checkpoint
    for g in found:  # move every generator on, as the rest of a run would
        for _ in range(3):
            draw(g)
    restore(state, "run", tensors, meta)
    # a generator the checkpoint does not hold keeps its advanced state and draws another number
    assert [draw(g) for g in found] == expected


class NoisyCallable:
    """Like the exploration noise that was once skipped: callable, with a generator inside."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def __call__(self):
        return self.rng.standard_normal()


def test_state_in_a_callable_member_is_saved(tmp_path):
    cfg, _, _ = resolve_config("td3", "Pendulum-v1", "none", {"total_steps": 1000, "run_dir": str(tmp_path)})
    trainer = Trainer("td3", cfg, tmp_path)
    trainer.loop.algo.extra_noise = NoisyCallable()
    tensors, meta = {}, {}
    capture({"loop": trainer.loop}, "run", tensors, meta)
    assert "run.loop.algo.extra_noise.rng" in meta and "run.loop.algo.noise.rng" in meta


@pytest.mark.parametrize(
    "member",
    [lambda x: x, [torch.nn.Linear(2, 2)], {1: "not a str key"}, object.__new__(object), range(3)],
    ids=["lambda", "list of modules", "int-keyed dict", "bare object", "range"],
)
def test_an_undeclared_member_the_walk_cannot_save_stops_the_checkpoint(member, tmp_path):
    cfg, _, _ = resolve_config("ppo", "CartPole-v1", "none", {"total_steps": 1000, "run_dir": str(tmp_path)})
    trainer = Trainer("ppo", cfg, tmp_path)
    trainer.loop.algo.unknown = member
    with pytest.raises(
        StateError, match="run.loop.algo.unknown .* is neither checkpointable state nor declared wiring"
    ):
        capture({"loop": trainer.loop}, "run", {}, {})
    type(trainer.loop.algo).not_state = (*type(trainer.loop.algo).not_state, "unknown")
    try:
        capture({"loop": trainer.loop}, "run", {}, {})  # declared wiring: fine
    finally:
        type(trainer.loop.algo).not_state = tuple(n for n in type(trainer.loop.algo).not_state if n != "unknown")
