"""SPS of SAC, TD3 and PPO on one device for pgrad (one seed and ``--seeds N``), SB3 and, where it
imports, SBX: the table ``benchmarks/gpu.sh`` prints (issue 19, the GPU path).

    python benchmarks/gpu_table.py --device cuda                 # what gpu.sh runs on a CUDA machine
    python benchmarks/gpu_table.py --device cpu --scale 0.05     # the same, tiny, on a CPU (its test)

Every run is a fresh process (``bench.py``'s worker for SB3 and SBX; ``pgrad.train`` in a worker of
this script for pgrad) with the case's hyperparameters from ``bench.py``; SPS = env steps per second
of training (pgrad: its run's own clock, ``timing.csv``; SB3, SBX: their ``learn``), evaluation and
setup excluded. Writes ``--out`` (JSON) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import CASES, machine  # noqa: E402

# (case in bench.py, steps per run at scale 1): sized so that the whole table fits in ~6 minutes on a GPU
RUNS = [("sac-pendulum", 5_000), ("td3-pendulum", 15_000), ("ppo-cartpole", 50_000)]  # TD3: 10k random steps first


def pgrad_worker(job: dict) -> dict:
    """One pgrad training in this fresh process: one seed, or ``job["seeds"]`` stacked."""
    import torch

    import pgrad

    torch.set_num_threads(1)
    case = CASES[job["case"]]
    hp = {k: tuple(v) if isinstance(v, list) else v for k, v in case["hp"].items()}
    common = dict(env=case["env"], total_steps=job["steps"], preset="none", eval_episodes=0, device=job["device"],
                  tensorboard=False, progress_bar=False, verbose=0, **hp)  # fmt: skip
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        if job["seeds"] > 1:
            pgrad.train(case["algo"], seeds=range(job["seeds"]), run_dir=f"{runs}/stacked", **common)
            run = Path(runs) / "stacked" / "seed-0"
        else:
            pgrad.train(case["algo"], seed=0, run_dir=f"{runs}/single", **common)
            run = Path(runs) / "single"
        seconds = time.perf_counter() - start  # (a run too short to log a row: the wall clock around it)
        with open(run / "timing.csv", newline="") as f:  # the run's own training clock (setup and saving left out)
            rows = list(csv.DictReader(f))
        seconds = float(rows[-1]["time_elapsed"]) if rows else seconds
    return {"sps": job["steps"] * job["seeds"] / seconds, "seconds": seconds}


def run(cmd: list[str]) -> dict | str:
    """The last JSON line a worker prints, or why it gave none (one line)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["no output"]
        return f"failed: {lines[-1][:120]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seeds", type=int, default=16, help="the stacked run's seeds")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps (a smoke test)")
    parser.add_argument("--sbx-python", default=None, help="a Python with sbx-rl installed (none: no SBX column)")
    parser.add_argument("--out", default=None, help="a JSON file for the rows")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(pgrad_worker(json.loads(args.worker))))
        return
    bench = str(HERE / "bench.py")
    rows = []
    for case, steps in RUNS:
        steps = max(int(steps * args.scale), 200)
        row: dict = {"case": case, "steps": steps}
        for label, seeds in (("pgrad", 1), (f"pgrad --seeds {args.seeds}", args.seeds)):
            job = {"case": case, "steps": steps, "seeds": seeds, "device": args.device}
            row[label] = run([sys.executable, __file__, "--worker", json.dumps(job)])
        peers = [("SB3", sys.executable, "sb3")] + ([("SBX", args.sbx_python, "sbx")] if args.sbx_python else [])
        for label, python, lib in peers:
            job = {"case": case, "lib": lib, "seed": 0, "threads": 1, "steps": steps, "device": args.device}
            result = run([python, bench, "--worker", json.dumps(job)])
            row[label] = result if isinstance(result, str) else {"sps": result["steps"] / result["wall_s"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ["pgrad", f"pgrad --seeds {args.seeds}", "SB3"] + (["SBX"] if args.sbx_python else [])

    def cell(value: dict | str) -> str:
        return value if isinstance(value, str) else f"{value['sps']:,.0f}"

    print(f"\nDevice: {args.device}; machine: {machine()}; SPS = env steps per second of training (all seeds')\n")
    print("| case | steps per seed | " + " | ".join(columns) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print(f"| {row['case']} | {row['steps']:,} | " + " | ".join(cell(row[c]) for c in columns) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
