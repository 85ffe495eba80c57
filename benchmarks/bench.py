"""Benchmarks with budgets: DAG parse cost and the end-to-end run time. Prints figures.

    make bench            # or: .state/venv/bin/python benchmarks/bench.py [--runs 3] [--parses 9]

Budgets (issue #2): each DAG file parses in at most 0.15 s more than `from airflow.sdk import dag,
task` alone; `make run` on the default data takes under 60 s on 2 cores once set up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARSE_BUDGET_S = 0.15
RUN_BUDGET_S = 60.0

PARSE_PROBE = r"""
import importlib.util, sys, time
t0 = time.perf_counter()
from airflow.sdk import dag, task
t1 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def parse_costs(path: Path, repeats: int) -> tuple[list[float], list[float]]:
    sdk, extra = [], []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", PARSE_PROBE, str(path)], capture_output=True, text=True, check=True
        )
        a, b = map(float, out.stdout.split())
        sdk.append(a)
        extra.append(b)
    return sdk, extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_runs(n: int) -> list[dict]:
    state = Path(tempfile.mkdtemp(prefix="mlcicd-bench-"))
    env = {**os.environ, "MLCICD_STATE_DIR": str(state), "MLCICD_LOCAL_PORT": str(free_port())}
    for key in [
        k for k in env if k.startswith("AIRFLOW") or k in ("MLFLOW_TRACKING_URI", "MLCICD_TRACKING_URI")
    ]:
        env.pop(key)
    # Set-up (venv aside): the Airflow metadata DB, as `make run` does on its first call.
    subprocess.run(
        [sys.executable, "-c", "from mlcicd import cli, settings; s = settings.load(); cli.prepare_environment(s); cli.ensure_airflow_db(s)"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    results = []
    try:
        for i in range(n):
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "mlcicd", "run", "--json", "--conf", f"synthetic_seed={100 + i}"],
                env=env, capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            wall = time.perf_counter() - t
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            results.append({"wall": wall, "outcome": summary["outcome"], "stages": summary["stages"]})
            print(f"  run {i + 1}: {wall:5.1f} s wall, outcome {summary['outcome']}", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parses", type=int, default=9, help="fresh interpreters per DAG file")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    print(f"\nDAG parse cost (median of {args.parses} fresh interpreters)")
    for path in sorted((ROOT / "dags").glob("*.py")):
        sdk, extra = parse_costs(path, args.parses)
        med = statistics.median(extra)
        verdict = "within" if med <= PARSE_BUDGET_S else "OVER"
        print(
            f"  {path.name}: +{med * 1000:.0f} ms over `from airflow.sdk import dag, task` "
            f"({statistics.median(sdk) * 1000:.0f} ms); budget {PARSE_BUDGET_S * 1000:.0f} ms: {verdict}"
        )

    print(f"\nmake run after set-up (python -m mlcicd run, fresh MLflow store, {args.runs} runs)")
    runs = timed_runs(args.runs)
    walls = [r["wall"] for r in runs]
    med = statistics.median(walls)
    print(f"  median {med:.1f} s (min {min(walls):.1f}, max {max(walls):.1f}); budget {RUN_BUDGET_S:.0f} s: "
          f"{'within' if med <= RUN_BUDGET_S else 'OVER'}")  # fmt: skip
    stages = sorted({s for r in runs for s in r["stages"]})
    print("  median seconds by stage:")
    for stage in stages:
        values = [r["stages"][stage]["seconds"] for r in runs if stage in r["stages"]]
        print(f"    {stage:<20} {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
