"""Where pgrad's time goes, op by op: torch.profiler over the updates of the benchmark cases.

    python benchmarks/op_profile.py                # every case below
    python benchmarks/op_profile.py ppo-cartpole   # one

For each case: one thread, the benchmark's hyperparameters and network sizes, random data of the
right shapes (the cost of an update does not depend on the values), a warm-up, then
``torch.profiler`` over a few updates. Prints the top operators and how much of the time is
matrix products, elementwise activations and the optimizer (step and zero_grad), and writes
benchmarks/results/profile.json. This is what the speed work in benchmarks/RESULTS.md was based on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench import CASES, RESULTS, machine  # noqa: E402

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "activations": ("aten::tanh", "aten::tanh_backward", "aten::clamp_min", "aten::threshold_backward"),
}


def in_optimizer(op: str) -> bool:
    """The optimizer's step and zero_grad: their Python (profiled as ``Optimizer.*``) and kernels."""
    return op.startswith(("Optimizer.", "aten::_fused_adam", "aten::_foreach_"))


def build(name: str):
    """The case's config, a single env (for its spaces) and the algorithm, on CPU."""
    from pgrad.algos import get_algo

    case = CASES[name]
    entry = get_algo(case["algo"])
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in case["hp"].items()}
    cfg = entry.config_class(env=case["env"], **hp)
    env = gym.make(case["env"])
    return cfg, env, entry.algo_class(cfg, env.observation_space, env.action_space, torch.device("cpu"))


def on_policy_update(name: str):
    """One update of the case's algorithm on a full rollout buffer of random transitions."""
    from pgrad.buffers import RolloutBuffer
    from pgrad.spaces import action_storage

    cfg, env, algo = build(name)
    discrete = hasattr(env.action_space, "n")
    shape, dtype = action_storage(env.action_space)
    buf = RolloutBuffer(cfg.n_steps, cfg.n_envs, env.observation_space.shape, shape, dtype)
    g = torch.Generator().manual_seed(0)
    buf.obs.normal_(generator=g)
    if discrete:
        buf.actions.random_(0, env.action_space.n, generator=g)
    else:
        buf.actions.normal_(generator=g)
    buf.rewards.normal_(generator=g)
    with torch.no_grad():
        dist, values = algo.policy(buf.obs.flatten(0, 1))
        buf.log_probs.copy_(dist.log_prob(buf.actions.flatten(0, 1)).view_as(buf.log_probs))
        buf.values.copy_(values.view_as(buf.values))
    buf.finish(torch.zeros(cfg.n_envs), {})
    return lambda: algo.update(buf, 1.0)


def off_policy_update(name: str):
    """One gradient step of the case's algorithm on a random batch of the replay batch size."""
    cfg, env, algo = build(name)
    g, B = torch.Generator().manual_seed(0), cfg.batch_size
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    batch = {
        "obs": torch.randn(B, obs_dim, generator=g),
        "actions": torch.rand(B, act_dim, generator=g) * 2 - 1,
        "rewards": torch.randn(B, generator=g),
        "next_obs": torch.randn(B, obs_dim, generator=g),
        "terminated": torch.zeros(B),
    }
    return lambda: algo.update(batch)


def profile(name: str, repeats: int) -> dict:
    from torch.profiler import profile as torch_profile

    make = on_policy_update if CASES[name]["algo"] in ("ppo", "a2c", "trpo") else off_policy_update
    update = make(name)
    for _ in range(3):
        update()
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    per_update_ms = (time.perf_counter() - start) / repeats * 1e3
    with QuietStderr(), torch_profile() as prof:
        for _ in range(repeats):
            update()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    shares = {
        group: sum(e.self_cpu_time_total for e in events if e.key in ops) / total for group, ops in GROUPS.items()
    }
    shares["optimizer"] = sum(e.self_cpu_time_total for e in events if in_optimizer(e.key)) / total
    return {
        "case": name,
        "update_ms": per_update_ms,
        "ops_per_update": sum(e.count for e in events) / repeats,
        "shares": shares,
        "top": [
            {"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_update": e.count / repeats} for e in top
        ],
    }


class QuietStderr:
    """The profiler's own start/stop lines go to stderr; keep the report readable."""

    def __enter__(self):
        import os

        self._stderr = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        import os

        os.dup2(self._stderr, 2)
        os.close(self._stderr)


def main() -> None:
    torch.set_num_threads(1)
    names = sys.argv[1:] or ["ppo-cartpole", "a2c-cartpole", "trpo-cartpole", "sac-pendulum", "td3-pendulum"]
    report = {"machine": machine(), "cases": []}
    for name in names:
        result = profile(name, repeats=3 if CASES[name]["algo"] in ("ppo", "trpo") else 50)
        report["cases"].append(result)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in result["shares"].items())
        print(f"\n{name}: {result['update_ms']:.2f} ms per update, {result['ops_per_update']:.0f} ops; {shares}")
        for row in result["top"]:
            print(f"  {row['share']:6.1%}  {row['calls_per_update']:7.1f}×  {row['op']}")
    (RESULTS / "profile.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
