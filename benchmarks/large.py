"""Large batches (issue #16): the gate's comparison at 500,000 holdout rows, and whole runs at 2 and 10
million rows, each stage's time, rows and peak memory. Budgets: `evaluate_candidate` under 10 s and the
run under 120 s at 2,000,000 rows against a champion; at 10,000,000 rows the run completes with a peak
under 8 GB.

Runs `mlcicd run` (`dag.test()`, one process: its peak is the run's) on a state folder of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVALUATE_BUDGET_S, RUN_BUDGET_S, PEAK_BUDGET_GB = 10.0, 120.0, 8.0


def comparison_times(rows: int = 500_000) -> None:
    import numpy as np

    from mlcicd.evaluation import Scores, cell_bootstrap, delong, paired_bootstrap

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, rows)
    a = np.clip(y * 0.3 + rng.normal(0.35, 0.25, rows), 0, 1)
    b = np.clip(y * 0.28 + rng.normal(0.36, 0.25, rows), 0, 1)
    cand, champ = Scores((a > 0.5).astype(int), a), Scores((b > 0.5).astype(int), b)
    print(f"\nthe gate's comparison on a {rows:,}-row holdout (one run each)")
    timed = {}
    for label, call in (
        ("ROC AUC, DeLong", lambda: delong(y, cand, champ, champion_version="1")),
        (
            "ROC AUC, row bootstrap (before), 1,000 resamples",
            lambda: paired_bootstrap(y, cand, champ, metric_name="roc_auc", champion_version="1"),
        ),
        (
            "f1, cell bootstrap, 1,000 resamples",
            lambda: cell_bootstrap(y, cand, champ, metric_name="f1", champion_version="1"),
        ),
        (
            "f1, row bootstrap (before), 1,000 resamples",
            lambda: paired_bootstrap(y, cand, champ, metric_name="f1", champion_version="1"),
        ),
    ):
        started = time.perf_counter()
        c = call()
        timed[label] = time.perf_counter() - started
        print(f"  {label:<50} {timed[label]:8.2f} s   CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]")
    print(
        f"  ROC AUC: {timed['ROC AUC, row bootstrap (before), 1,000 resamples'] / timed['ROC AUC, DeLong']:.0f}x faster; "
        f"f1: {timed['f1, row bootstrap (before), 1,000 resamples'] / timed['f1, cell bootstrap, 1,000 resamples']:.0f}x"
    )


def run(env: dict[str, str], *conf: str) -> dict[str, Any]:
    args = [sys.executable, "-m", "mlcicd", "run", "--json"] + [a for c in conf for a in ("--conf", c)]
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    wall = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"mlcicd run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(lines[-1])
    summary["wall"] = wall
    return summary


def show(label: str, s: dict[str, Any]) -> float:
    stages = s.get("stages") or {}
    peak = max((v.get("peak_memory_mb") or 0) for v in stages.values()) / 1024 if stages else float("nan")
    print(
        f"\n{label}: {s['outcome']} in {s['seconds']:.1f} s (process {s['wall']:.1f} s), peak {peak:.2f} GB"
    )
    for name, v in sorted(stages.items(), key=lambda kv: kv[1].get("started_at", 0)):
        rows = f"{v['rows']:>12,} rows" if v.get("rows") is not None else " " * 17
        print(
            f"  {name:<20} {v.get('seconds', float('nan')):7.1f} s {rows}  peak {(v.get('peak_memory_mb') or 0) / 1024:5.2f} GB"
        )
    return peak


def file_runs(env: dict[str, str], root: Path) -> None:
    """The same 10,000,000 rows from a CSV and from a Parquet file, through ingest's file reader."""
    from mlcicd import synthetic

    folder = root / "batches"
    folder.mkdir()
    df = synthetic.generate(10_000_000, seed=4)
    paths = {"csv": folder / "churn_10m.csv", "parquet": folder / "churn_10m.parquet"}
    df.to_csv(paths["csv"], index=False)
    df.to_parquet(paths["parquet"], index=False)
    del df
    env = {**env, "MLCICD_DATA_ROOTS": str(folder)}
    for kind, path in paths.items():
        size = path.stat().st_size / 1e6
        s = run(env, f"dataset_uri={path}", "max_degradation=0.5")
        peak = show(f"10,000,000 rows from a {size:,.0f} MB {kind.upper()} file", s)
        print(
            f"  peak {peak:.2f} GB (budget {PEAK_BUDGET_GB:.0f} GB: {'within' if peak <= PEAK_BUDGET_GB else 'OVER'})"
        )


def section() -> None:
    comparison_times()
    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-large-"))
    from mlcicd.ports import free_port

    env = {
        **os.environ,
        "MLCICD_STATE_DIR": str(root / "state"),
        "MLCICD_LOCAL_PORT": str(free_port("127.0.0.1")),
        "MLCICD_GATE_MAX_DEGRADATION": "0.5",
    }
    try:
        for var in ("MLFLOW_TRACKING_URI", "MLCICD_TRACKING_URI"):
            env.pop(var, None)
        two = ("synthetic_rows=2000000", "max_degradation=0.5")
        show("2,000,000 rows, first run (no champion)", run(env, "synthetic_seed=1", *two))
        second = run(env, "synthetic_seed=2", *two)
        show("2,000,000 rows against the champion", second)
        evaluate = (second.get("stages") or {}).get("evaluate_candidate", {}).get("seconds", float("nan"))
        print(
            f"  evaluate_candidate {evaluate:.1f} s (budget {EVALUATE_BUDGET_S:.0f} s: "
            f"{'within' if evaluate <= EVALUATE_BUDGET_S else 'OVER'}); run {second['seconds']:.1f} s "
            f"(budget {RUN_BUDGET_S:.0f} s: {'within' if second['seconds'] <= RUN_BUDGET_S else 'OVER'})"
        )
        ten = run(env, "synthetic_rows=10000000", "synthetic_seed=3", "max_degradation=0.5")
        peak = show("10,000,000 rows against the champion", ten)
        print(
            f"  peak {peak:.2f} GB (budget {PEAK_BUDGET_GB:.0f} GB: {'within' if peak <= PEAK_BUDGET_GB else 'OVER'})"
        )
        file_runs(env, root)
    finally:
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "include"))
    section()
