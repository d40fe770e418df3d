"""Full-budget learning runs: every threshold the issues state, with the shipped presets.

Each case is what a user types: the algorithm, the env, the step budget and a seed. Results go
to benchmarks/results/learning.json and benchmarks/learning.md (committed). `make learn`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import pgrad

HERE = Path(__file__).parent

# (algo, env, total_steps, threshold on the deterministic 10-episode mean, seeds)
CASES = [
    ("ppo", "CartPole-v1", 100_000, 475.0, (0, 1, 2)),
    ("ppo", "Pendulum-v1", 150_000, -300.0, (0, 1, 2)),
    ("trpo", "CartPole-v1", 100_000, 475.0, (0, 1, 2)),
    ("trpo", "Pendulum-v1", 200_000, -300.0, (0, 1, 2)),
    ("npg", "CartPole-v1", 150_000, 400.0, (0, 1, 2)),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None, help="run only cases whose 'algo env' contains this")
    args = parser.parse_args()
    out_json = HERE / "results" / "learning.json"
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    for algo, env, steps, threshold, seeds in CASES:
        key = f"{algo} {env}"
        if args.only and args.only not in key:
            continue
        rows = []
        for seed in seeds:
            start = time.perf_counter()
            agent = pgrad.train(
                algo,
                env=env,
                total_steps=steps,
                seed=seed,
                run_dir=f"runs/learn/{algo}-{env}-{seed}",
                overwrite=True,
                tensorboard=False,
            )
            wall = time.perf_counter() - start
            rows.append(
                {"seed": seed, "eval_mean": agent.evaluation.mean, "eval_std": agent.evaluation.std, "wall_s": wall}
            )
            print(
                f"{key} seed {seed}: {agent.evaluation.mean:.1f} ± {agent.evaluation.std:.1f} ({wall:.0f} s)",
                flush=True,
            )
        results[key] = {"algo": algo, "env": env, "total_steps": steps, "threshold": threshold, "runs": rows}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))
    write_markdown(results)


def write_markdown(results: dict) -> None:
    lines = [
        "# Learning results (`make learn`)",
        "",
        "Deterministic 10-episode evaluation at the end of training, shipped presets, nothing else set.",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads available, "
        f"torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "| algorithm | env | steps | threshold | eval per seed | passes | wall s (mean) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in results.values():
        evals = [r["eval_mean"] for r in case["runs"]]
        per_seed = ", ".join(f"s{r['seed']}: {r['eval_mean']:.1f}" for r in case["runs"])
        passes = sum(e >= case["threshold"] for e in evals)
        wall = sum(r["wall_s"] for r in case["runs"]) / len(case["runs"])
        lines.append(
            f"| {case['algo']} | {case['env']} | {case['total_steps']:,} | ≥ {case['threshold']:g} | {per_seed} "
            f"| {passes}/{len(evals)} | {wall:.0f} |"
        )
    (HERE / "learning.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
