"""The candidate search's wall time (issue #18): `search=quick` and `search=wide` on the default data,
on a real Airflow (LocalExecutor, SQLite) with MLCICD_SEARCH_PARALLELISM 1 and 2, and the speed-up.

The search's time is from plan_search's start to select_candidate's end, read from the task
instances the REST API reports; the whole run's time and the candidates' summed fit time are printed beside.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

PRESETS = ("quick", "wide")
PARALLELISM = (1, 2)


def _seconds(ti: dict[str, Any], key: str) -> float:
    return datetime.fromisoformat(ti[key]).timestamp()


def timed_searches(parallelism: int, free_port: Any) -> dict[str, dict[str, float]]:
    """One run per preset on a fresh Airflow whose train_candidate runs ``parallelism`` at a time."""
    from mlcicd.dev import server as devserver

    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-search-"))
    extra = {
        "MLCICD_STATE_DIR": str(root / "state"),
        "MLCICD_LOCAL_PORT": str(free_port()),
        "MLCICD_RETRAIN_SCHEDULE": "none",
        "MLCICD_MONITOR_SCHEDULE": "none",
        "MLCICD_SEARCH_PARALLELISM": str(parallelism),
        "MLCICD_GATE_MAX_DEGRADATION": "0.5",
    }
    server = devserver.start(root / "home", password="bench", extra_env=extra)
    env = {
        **server.env,
        "MLCICD_AIRFLOW_USERNAME": "admin",
        "MLCICD_AIRFLOW_PASSWORD": "bench",  # pragma: allowlist secret
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for i, preset in enumerate(PRESETS):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlcicd",
                    "trigger",
                    "--url",
                    server.url,
                    "--sha",
                    f"{parallelism}{i:039x}",
                    "--conf",
                    f"search={preset}",
                    "--conf",
                    "synthetic_seed=20261124",
                    "--conf",
                    "max_degradation=0.5",
                    "--wait",
                    "--unpause",
                    "--json",
                    "--accept-rejection",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            base = f"/api/v2/dags/ml_retrain/dagRuns/{summary['run_id']}"
            tis = server.get(f"{base}/taskInstances?limit=200")["task_instances"]
            by = {t["task_id"]: t for t in tis if t.get("map_index", -1) == -1}
            started = min(_seconds(t, "start_date") for t in tis if t["start_date"])
            ended = max(_seconds(t, "end_date") for t in tis if t["end_date"])
            rows = (summary.get("search") or {}).get("candidates") or []
            out[preset] = {
                "search": _seconds(by["select_candidate"], "end_date")
                - _seconds(by["plan_search"], "start_date"),
                "run": ended - started,
                "fits": sum(r["fit_seconds"] or 0 for r in rows),
                "candidates": len(rows),
                "outcome": summary["outcome"],
            }
            print(
                f"  parallelism {parallelism}, {preset}: {len(rows)} candidates, search {out[preset]['search']:.1f} s "
                f"(fits {out[preset]['fits']:.1f} s), whole run {out[preset]['run']:.1f} s, {summary['outcome']}",
                flush=True,
            )
    finally:
        devserver.stop(server)
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=server.env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return out


def section(free_port: Any) -> None:
    print(
        "\ncandidate search on a real Airflow (LocalExecutor with 2 slots, SQLite), default data (5,000 rows)"
    )
    results = {p: timed_searches(p, free_port) for p in PARALLELISM}
    for preset in PRESETS:
        one, two = results[1][preset]["search"], results[2][preset]["search"]
        print(f"  {preset}: search {one:.1f} s at parallelism 1, {two:.1f} s at 2: speed-up {one / two:.2f}x")
    print(
        f"  (median whole run: {statistics.median(r[p]['run'] for r in results.values() for p in PRESETS):.1f} s)"
    )
