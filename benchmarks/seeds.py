"""Many seeds in one process (issue 19): ``pgrad train ppo --seeds`` (or a2c, trpo, sac, td3, ddpg) against
the same seeds trained one after another, each way in a fresh process pinned to one core with one
torch thread.

    python benchmarks/seeds.py                                   # ppo-cartpole, seeds 0-15
    python benchmarks/seeds.py --case ppo-pendulum --seeds 0-7 --steps 50000
    python benchmarks/seeds.py --case sac-pendulum --seeds 0-7 --steps 3000 --peer sb3
    python benchmarks/seeds.py --peer sb3                        # and SB3 on the same seeds, one by one

Reports the wall time of all seeds' training (evaluations excluded: the final 10-episode
evaluation of each seed is run and timed apart), the aggregate env steps per second, the peak
resident memory, and each seed's final deterministic evaluation both ways (the stacked seeds must
learn as the single runs do: the same distribution of returns). Writes
benchmarks/seeds/<case>-<seeds>x<steps>.json, prints the rows and regenerates RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
from bench import CASES, commit, machine  # noqa: E402


def worker(job: dict) -> dict:
    """One way of training the case's seeds, in this (fresh, pinned) process."""
    import tempfile

    import torch

    import pgrad

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    case = CASES[job["case"]]
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in case["hp"].items()}
    common = dict(env=case["env"], total_steps=job["steps"], preset="none", eval_episodes=0, **hp)
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        if job["mode"] == "stacked":
            agents = pgrad.train(case["algo"], seeds=job["seeds"], run_dir=f"{runs}/stacked", **common)
        else:
            agents = [pgrad.train(case["algo"], seed=s, run_dir=f"{runs}/seed-{s}", **common) for s in job["seeds"]]
        train_s = time.perf_counter() - start
        returns = [pgrad.evaluate(agent, 10, seed).mean for agent, seed in zip(agents, job["seeds"], strict=True)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = job["steps"] * len(job["seeds"])
    return {"mode": job["mode"], "train_s": train_s, "sps": steps / train_s, "peak_mb": peak_mb, "returns": returns}


def peer_one_by_one(job: dict) -> dict:
    """SB3 on the same seeds one after another, each in bench.py's pinned worker (its training time
    summed; the evaluation is bench's, on the same episode seeds)."""
    runs = [bench.run_job({"case": job["case"], "lib": "sb3", "seed": s, "threads": 1, "steps": job["steps"]})
            for s in job["seeds"]]  # fmt: skip
    train_s = sum(r["wall_s"] for r in runs)
    return {"mode": "sb3 one-by-one", "train_s": train_s, "sps": sum(r["steps"] for r in runs) / train_s,
            "peak_mb": max(r["peak_rss_mb"] for r in runs), "returns": [r["eval_mean"] for r in runs]}  # fmt: skip


def run_job(job: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{job['mode']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case",
        default="ppo-cartpole",
        choices=[n for n, c in CASES.items() if c["algo"] in ("ppo", "a2c", "trpo", "sac", "td3", "ddpg")],
    )
    parser.add_argument("--seeds", default="0-15", help="a range 0-15 or a list 0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="per seed (default: the case's)")
    parser.add_argument("--peer", choices=("sb3",), help="also the peer on the same seeds, one after another")
    parser.add_argument("--out", default=str(HERE), help="where seeds/*.json go (RESULTS.md is regenerated only here)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from pgrad.seeds import parse_seeds

    seeds = parse_seeds(args.seeds)
    steps = args.steps or CASES[args.case]["steps"]
    job = {"case": args.case, "seeds": seeds, "steps": steps}
    results = {mode: run_job(job | {"mode": mode}) for mode in ("one-by-one", "stacked")}
    if args.peer:
        results["sb3 one-by-one"] = peer_one_by_one(job)
    one, stacked = results["one-by-one"], results["stacked"]
    record = {
        "case": args.case,
        "machine": machine(),
        "commit": commit(),
        "seeds": seeds,
        "steps_per_seed": steps,
        "results": results,
        "speedup": stacked["sps"] / one["sps"],
    }
    out = Path(args.out) / "seeds"  # beside results/, whose JSON files are bench.py's cases
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.case}-{len(seeds)}x{steps}.json").write_text(json.dumps(record, indent=2))

    def dist(r: dict) -> str:
        return f"{statistics.fmean(r['returns']):.1f} ± {statistics.stdev(r['returns']):.1f}"

    print(f"machine: {record['machine']}")
    print(
        "| case | seeds × steps | way | training s | aggregate SPS | peak MB | eval (deterministic, 10 episodes): mean ± std over seeds |"
    )
    for mode, r in results.items():
        print(f"| {args.case} | {len(seeds)} × {steps:,} | {mode} | {r['train_s']:.0f} | {r['sps']:,.0f} "
              f"| {r['peak_mb']:.0f} | {dist(r)} |")  # fmt: skip
    print(f"stacked / one by one: {record['speedup']:.2f}×")
    if Path(args.out).resolve() == HERE:
        bench.write_markdown()  # RESULTS.md's section on many seeds reads benchmarks/seeds/*.json


if __name__ == "__main__":
    main()
