"""PPO on CartPole-v1: steps/second sampling in-process (workers=0) vs 1 and 2 Ray rollout workers.

Same seed, config and budget for all three, so the runs are identical sample for sample (tested in
tests/test_distributed.py); only the wall clock differs. Each is run ``--repeats`` times, alternating,
in this one process (one Ray runtime with this machine's cores). Writes
benchmarks/results/distributed.json; bench.py's RESULTS.md includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=65_536)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "distributed.json"))
    args = parser.parse_args()
    import pgrad
    from pgrad.distributed import init_ray
    from pgrad.evaluation import evaluate

    ray = init_ray()
    torch.set_num_threads(1)
    workers = [int(w) for w in args.workers.split(",")]
    sps: dict[int, list[float]] = {w: [] for w in workers}
    evals: dict[int, list[float]] = {w: [] for w in workers}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for w in workers:
                start = time.perf_counter()
                agent = pgrad.train(
                    "ppo", env="CartPole-v1", total_steps=args.steps, seed=0, n_envs=args.n_envs, workers=w,
                    run_dir=f"{tmp}/w{w}-{r}", tensorboard=False, eval_episodes=0, save_final_checkpoint=False,
                )  # fmt: skip
                sps[w].append(args.steps / (time.perf_counter() - start))  # training, Ray actors' start included
                evals[w].append(evaluate(agent, 10, 0).mean)
                print(f"workers={w} repeat {r}: {sps[w][-1]:,.0f} steps/s, eval {evals[w][-1]:.1f}", flush=True)
    ray.shutdown()
    base = statistics.fmean(sps[0]) if 0 in sps else None
    rows = [
        {"workers": w, "sps": statistics.fmean(v), "sps_runs": v, "eval": evals[w],
         "ratio_to_in_process": statistics.fmean(v) / base if base else None}
        for w, v in sps.items()
    ]  # fmt: skip
    record = {
        "case": "ppo-cartpole-distributed",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "steps": args.steps,
        "n_envs": args.n_envs,
        "repeats": args.repeats,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    for row in rows:
        print(f"workers={row['workers']}: {row['sps']:,.0f} steps/s ({row['ratio_to_in_process']:.2f}x in-process)")
    from bench import write_markdown  # noqa: E402  (benchmarks/ is the script's directory)

    write_markdown()


if __name__ == "__main__":
    main()
