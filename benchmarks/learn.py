"""Full-budget learning runs: every threshold the issues state, with the shipped presets.

Each case is what a user types: the algorithm, the env, the step budget and a seed. Results go
to benchmarks/results/learning.json and benchmarks/learning.md (committed). `make learn`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from pathlib import Path

import torch

import pgrad

HERE = Path(__file__).parent

# (algo, env, total_steps, threshold on the deterministic 10-episode mean or None, seeds, extra fields)
CASES = [
    ("ppo", "CartPole-v1", 100_000, 475.0, (0, 1, 2), {}),
    ("ppo", "Pendulum-v1", 100_000, -300.0, (0, 1, 2), {}),  # the Zoo's entry: gSDE
    ("trpo", "CartPole-v1", 100_000, 475.0, (0, 1, 2), {}),
    ("trpo", "Pendulum-v1", 200_000, -300.0, (0, 1, 2), {}),  # the Zoo's entry (gSDE), twice its budget
    ("npg", "CartPole-v1", 150_000, 400.0, (0, 1, 2), {}),
    ("a2c", "CartPole-v1", 200_000, 475.0, (0, 1, 2), {}),
    ("reinforce", "CartPole-v1", 300_000, 400.0, (0, 1, 2), {}),
    ("ppo", "CartPole-v1", 150_000, 475.0, (0, 1, 2), {"loss": "kl_penalty"}),
    ("ppo", "CartPole-v1", 150_000, 475.0, (0, 1, 2), {"loss": "kl_dual"}),
    ("actor_critic", "CartPole-v1", 200_000, 150.0, (0, 1, 2), {}),
    ("a2c", "Pendulum-v1", 200_000, None, (0, 1, 2), {}),
    ("ppo", "Pendulum-v1", 150_000, None, (0, 1, 2), {"loss": "kl_penalty"}),
    ("sac", "Pendulum-v1", 20_000, -200.0, (0, 1, 2), {}),
    ("sac", "Pendulum-v1", 20_000, -200.0, (0, 1, 2), {"variant": "v1"}),
    ("td3", "Pendulum-v1", 20_000, -200.0, (0, 1, 2), {}),
    ("ddpg", "Pendulum-v1", 20_000, -250.0, (0, 1, 2), {}),
    ("sac-discrete", "CartPole-v1", 100_000, 400.0, (0, 1, 2), {}),
    ("ppo", "CartPoleNoVel-v1", 100_000, 400.0, (0, 1, 2), {}),  # the Zoo's ppo_lstm entry
    ("ppo", "MountainCarContinuous-v0", 20_000, None, (0, 1, 2), {}),  # the Zoo's gSDE entries
    ("trpo", "MountainCarContinuous-v0", 50_000, None, (0, 1, 2), {}),
    ("a2c", "MountainCarContinuous-v0", 100_000, None, (0, 1, 2), {}),
    ("sac", "MountainCarContinuous-v0", 50_000, None, (0, 1, 2), {}),
]


def case_key(algo: str, env: str, extra: dict) -> str:
    return " ".join([algo, env, *(f"{k}={v}" for k, v in extra.items())])


def run_one(job: tuple) -> dict:
    algo, env, steps, seed, extra = job
    torch.set_num_threads(1)
    start = time.perf_counter()
    tag = "-".join(str(v) for v in extra.values())
    agent = pgrad.train(
        algo,
        env=env,
        total_steps=steps,
        seed=seed,
        run_dir=f"runs/learn/{algo}-{env}{'-' + tag if tag else ''}-{seed}",
        overwrite=True,
        tensorboard=False,
        progress_bar=False,
        save_final_checkpoint=False,
        **extra,
    )
    wall = time.perf_counter() - start
    print(
        f"{case_key(algo, env, extra)} seed {seed}: {agent.evaluation.mean:.1f} ± {agent.evaluation.std:.1f} "
        f"({wall:.0f} s)",
        flush=True,
    )
    return {"seed": seed, "eval_mean": agent.evaluation.mean, "eval_std": agent.evaluation.std, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--only", default=None, help="comma-separated: run only cases whose key ('algo env [field=value]') contains one"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one torch thread)")
    args = parser.parse_args()
    out_json = HERE / "results" / "learning.json"
    wanted = args.only.split(",") if args.only else None
    cases = [c for c in CASES if not wanted or any(w in case_key(c[0], c[1], c[5]) for w in wanted)]
    jobs = [(algo, env, steps, seed, extra) for algo, env, steps, _, seeds, extra in cases for seed in seeds]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.map(run_one, jobs, chunksize=1)
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}  # merge at the end: runs may overlap
    for algo, env, steps, threshold, _seeds, extra in cases:
        case_rows = [r for job, r in zip(jobs, rows, strict=True) if job[:3] == (algo, env, steps) and job[4] == extra]
        results[case_key(algo, env, extra)] = {
            "algo": algo,
            "env": env,
            "extra": extra,
            "total_steps": steps,
            "threshold": threshold,
            "runs": case_rows,
        }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2))
    write_markdown(results)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{cpu}, {multiprocessing.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def write_markdown(results: dict) -> None:
    lines = [
        "# Learning results (`make learn`)",
        "",
        "Deterministic 10-episode evaluation at the end of training, shipped presets: each run is",
        "`pgrad train ALGO --env ENV --total-steps N --seed S` (plus the flag a row names, e.g. `--loss`).",
        "Two runs at a time, one torch thread each, so wall times include contention.",
        f"Machine: {machine()}.",
        "",
        "| algorithm | env | steps | threshold | eval per seed | passes | wall s (mean) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, case in results.items():
        evals = [r["eval_mean"] for r in case["runs"]]
        per_seed = ", ".join(f"s{r['seed']}: {r['eval_mean']:.1f}" for r in case["runs"])
        wall = sum(r["wall_s"] for r in case["runs"]) / len(case["runs"])
        if case["threshold"] is None:
            threshold, passes = "(reported)", "-"
        else:
            threshold = f"≥ {case['threshold']:g}"
            passes = f"{sum(e >= case['threshold'] for e in evals)}/{len(evals)}"
        name = key.split(" ", 1)[0] + "".join(f" {k}={v}" for k, v in case.get("extra", {}).items())
        lines.append(
            f"| {name} | {case['env']} | {case['total_steps']:,} | {threshold} | {per_seed} | {passes} | {wall:.0f} |"
        )
    (HERE / "learning.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
