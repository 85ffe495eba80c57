"""Model projects (issue #30): what they cost the DAG processor and a model repository's CI.

- the parse cost of ``dags/ml_retrain.py`` and ``dags/ml_monitor.py`` with 0, 1 and 3 projects in
  ``MLCICD_PROJECTS`` (fresh interpreters, median), against the parse budget;
- ``python -m mlcicd check`` on each example project (wall time of the command, median).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARSE_BUDGET_S = 0.15  # as bench.py's: each DAG file, over `from airflow.sdk import dag, task`


def third_project(folder: Path) -> Path:
    """A project `mlcicd init` writes, on its own port: the third of three on one installation."""
    subprocess.run(
        [sys.executable, "-m", "mlcicd", "init", str(folder), "--model", "third"],
        check=True,
        capture_output=True,
    )
    text = (folder / "mlcicd.toml").read_text()
    (folder / "mlcicd.toml").write_text(text + "\n[deploy]\nport = 5102\n")
    return folder


def parse_with(path: Path, projects: list[Path], repeats: int, probe: str) -> float:
    env = {**os.environ, "MLCICD_PROJECTS": ",".join(map(str, projects))}
    extra = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True, env=env
        )
        extra.append(float(out.stdout.strip().splitlines()[-1].split()[1]))  # after any warning Airflow logs
    return statistics.median(extra)


def section(probe: str, repeats: int) -> None:
    print(
        f"\nmodel projects: DAG parse cost with 0, 1 and 3 projects (median of {repeats} fresh interpreters)"
    )
    with tempfile.TemporaryDirectory(prefix="mlcicd-bench-projects-") as tmp:
        sets = {
            0: [],
            1: [ROOT / "examples" / "churn"],
            3: [
                ROOT / "examples" / "churn",
                ROOT / "examples" / "cancer",
                third_project(Path(tmp) / "third"),
            ],
        }
        for name in ("ml_retrain.py", "ml_monitor.py", "ml_projects.py"):
            costs = {
                n: parse_with(ROOT / "dags" / name, folders, repeats, probe) for n, folders in sets.items()
            }
            shown = ", ".join(f"{n} project(s) +{c * 1000:.0f} ms" for n, c in costs.items())
            print(f"  {name:<16} {shown}")
            if name != "ml_projects.py":  # the built-in DAG and one per project: per DAG, and the file
                per_dag = costs[3] / 4
                print(
                    f"  {'':<16} with 3 projects: {per_dag * 1000:.0f} ms per DAG, "
                    f"{'within' if per_dag <= PARSE_BUDGET_S else 'OVER'} the budget of "
                    f"{PARSE_BUDGET_S * 1000:.0f} ms; the file {'within' if costs[3] <= PARSE_BUDGET_S else 'OVER'} it"
                )
    print("\nmlcicd check on the example projects (wall time of the command, median of 3)")
    for example in ("churn", "cancer"):
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mlcicd", "check", str(ROOT / "examples" / example), "--json"],
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(f"  {example}: check failed ({done.returncode}):\n{done.stdout[-1000:]}")
                return
        result = json.loads(done.stdout.strip().splitlines()[-1])
        steps = ", ".join(f"{s['name']} {s['seconds']:.1f} s" for s in result["steps"])
        print(f"  examples/{example}: {statistics.median(walls):.1f} s; last run's steps: {steps}")
