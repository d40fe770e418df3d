"""The benchmark harness end to end at a tiny budget: it must keep running as the library changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"
SBX_PYTHON = BENCH.parent / ".venv-sbx" / "bin" / "python"  # made by make bench (JAX's stack, its own venv)


def bench(case: str, steps: int, out: Path, sbx: bool = False) -> dict:
    """``bench.py`` on one case at a tiny budget, seed 0: its JSON result."""
    run = subprocess.run(
        [sys.executable, str(BENCH / "bench.py"), "--cases", case, "--seeds", "0", "--steps", str(steps)]
        + ["--out", str(out)]
        + ([] if sbx else ["--no-sbx"]),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads((out / f"{case}.json").read_text())


@pytest.mark.slow
def test_bench_runs_both_libraries_and_writes_results(tmp_path):
    data = bench("ppo-cartpole", 512, tmp_path)
    assert {r["lib"] for r in data["runs"]} == {"pgrad", "sb3"} and data["steps"] == 512
    pgrad_run = next(r for r in data["runs"] if r["lib"] == "pgrad")
    assert pgrad_run["phase_s"]["update"] > 0 and pgrad_run["phase_s"]["collect"] > 0
    assert 0 < data["summary"]["pgrad_update_share"] < 1 and data["summary"]["ratio"] > 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| ppo-cartpole | 512 | 1 |" in table


@pytest.mark.slow
@pytest.mark.skipif(not SBX_PYTHON.is_file(), reason="no SBX venv (make bench builds it)")
def test_bench_runs_sbx_beside_sb3_and_counts_its_compilation(tmp_path):
    data = bench("sac-pendulum", 300, tmp_path, sbx=True)
    assert [r["lib"] for r in data["runs"]] == ["pgrad", "sb3", "sbx"]
    sbx = data["runs"][2]
    assert sbx["steps"] == 300 and 0 < sbx["compile_s"] < sbx["wall_s"]
    summary = data["summary"]
    assert summary["ratio_sbx"] == pytest.approx(summary["pgrad_sps"] / summary["sbx_sps"])
    assert summary["ratio"] == pytest.approx(summary["pgrad_sps"] / summary["sb3_sps"])
    row = next(line for line in (tmp_path / "RESULTS.md").read_text().splitlines() if line.startswith("| sac-pendulum"))
    assert f"**{summary['ratio_sbx']:.2f}×**" in row and row.endswith(" |")


@pytest.mark.slow
def test_bench_atari_case_runs_both_libraries_on_pixels_and_reports_memory(tmp_path):
    data = bench("ppo-atari", 2048, tmp_path)
    assert {r["lib"] for r in data["runs"]} == {"pgrad", "sb3"} and data["steps"] == 2048
    summary = data["summary"]
    assert summary["pgrad_peak_rss_mb"] > 0 and summary["sb3_peak_rss_mb"] > 0
    # 128 × 8 observations of 4×84×84, uint8 in pgrad's rollout buffer (SB3 2.x stores the space's dtype too)
    assert summary["pgrad_buffer_obs_mb"] == pytest.approx(128 * 8 * 28_224 / 2**20)
    assert summary["sb3_buffer_obs_mb"] > 0
    assert "| ppo-atari | 2,048 | 1 |" in (tmp_path / "RESULTS.md").read_text()


def test_op_profile_reports_shares_that_add_up():
    sys.path.insert(0, str(BENCH))
    try:
        import op_profile
    finally:
        sys.path.remove(str(BENCH))
    result = op_profile.profile("a2c-cartpole", repeats=3)
    assert result["update_ms"] > 0 and result["ops_per_update"] > 10
    assert 0 < sum(result["shares"].values()) <= 1
    assert all(0 < row["share"] <= 1 for row in result["top"])


def test_learn_mujoco_trains_reads_finished_runs_back_and_merges_results(tmp_path):
    """`make learn-mujoco` as a smoke test at a tiny budget: a run, then a second invocation that reads
    the finished run back (not trained again) beside a new seed, both merged into one results file,
    table and figure."""
    import json

    script = [sys.executable, str(BENCH / "learn_mujoco.py"), "--only", "ppo Hopper", "--steps", "1024",
              "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    first = subprocess.run([*script, "--seeds", "0"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    done = tmp_path / "runs" / "ppo-Hopper-v5-1024-s0"
    results = json.loads((tmp_path / "out" / "results" / "mujoco.json").read_text())
    row = results["ppo Hopper-v5 1024"]["runs"][0]
    assert row["eval_mean"] == json.loads((done / "eval.json").read_text())["mean_return"] and row["episodes"] == 10
    assert [step for step, _ in row["curve"]] == [512, 1024]  # an evaluation every twentieth, at updates
    model = (done / "model.safetensors").stat().st_mtime_ns
    second = subprocess.run([*script, "--seeds", "0,1"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "seed 0: finished in" in second.stdout and (done / "model.safetensors").stat().st_mtime_ns == model
    results = json.loads((tmp_path / "out" / "results" / "mujoco.json").read_text())
    assert [r["seed"] for r in results["ppo Hopper-v5 1024"]["runs"]] == [0, 1]
    # SB3 on seed 0 with the same preset, as the column beside pgrad's
    peer = subprocess.run([*script, "--seeds", "0", "--peer", "sb3"], capture_output=True, text=True, timeout=300)
    assert peer.returncode == 0 and "SB3 ppo Hopper-v5 1,024 seed 0" in peer.stdout, peer.stderr[-2000:]
    sb3 = json.loads((tmp_path / "out" / "results" / "mujoco.json").read_text())["ppo Hopper-v5 1024"]["sb3_runs"]
    assert [r["seed"] for r in sb3] == [0] and sb3[0]["library"].startswith("sb3 ")
    table = (tmp_path / "out" / "mujoco.md").read_text()
    assert "| Hopper-v5 | ppo | 1,024 | 2 |" in table and "2,410 ± 10 (Zoo, 1M)" in table
    assert f"| s0: {sb3[0]['eval_mean']:,.0f} |" in table
    assert (tmp_path / "out" / "mujoco" / "ppo-Hopper-v5-1024.png").stat().st_size > 1000


def test_seeds_benchmark_trains_both_ways_and_records_returns(tmp_path):
    """benchmarks/seeds.py at a tiny budget: one by one and stacked, the same seeds' evaluations."""
    import json

    done = subprocess.run([sys.executable, str(BENCH / "seeds.py"), "--seeds", "0-1", "--steps", "512",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "seeds" / "ppo-cartpole-2x512.json").read_text())
    assert set(record["results"]) == {"one-by-one", "stacked"} and record["seeds"] == [0, 1]
    assert all(len(r["returns"]) == 2 and r["sps"] > 0 for r in record["results"].values())
    assert "| stacked |" in done.stdout and "cores (" in record["machine"]  # the CPU and its extensions named
