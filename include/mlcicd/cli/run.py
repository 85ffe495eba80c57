"""``mlcicd run``: run ``ml_retrain`` once through ``dag.test()`` on the embedded default.

Exit status: 0 the run succeeded (the model was promoted, or cleanly rejected by the gate); 1 the
run failed for another reason; 2 bad usage or params (nothing ran); 3 the batch was rejected
(unreadable, unusable, or failed validation); 4 deployment failed and was rolled back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlcicd import record
from mlcicd import summary as run_summary
from mlcicd.cli.env import (
    ensure_airflow_db,
    load_dag,
    parse_conf,
    prepare_environment,
    use_project,
    validate_conf,
)
from mlcicd.cli.report import render
from mlcicd.errors import UsageError
from mlcicd.names import RETRAIN_DAG, ExitCode, Outcome
from mlcicd.names import exit_code as outcome_exit_code
from mlcicd.settings import Settings, load


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run ml_retrain once end to end on the embedded default")
    run.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a DAG param (repeatable)"
    )
    run.add_argument(
        "--project", metavar="DIR", help="a model project's folder (mlcicd.toml): run its retrain DAG"
    )
    run.add_argument("--json", action="store_true", help="print one JSON summary object")
    run.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    settings = load()
    log_path = settings.state_dir / "logs" / f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"
    try:
        conf = parse_conf(args.conf)
        dag_id = use_project(args.project).retrain_dag_id if args.project else RETRAIN_DAG
        if not args.json:
            print(
                f"{dag_id}: running on the embedded default (state in {settings.state_dir}); task logs in {log_path}"
            )
        summary = run_pipeline(conf, log_path=log_path, dag_id=dag_id)
    except UsageError as exc:
        if args.json:
            print(
                json.dumps(
                    {"state": "not_started", "outcome": Outcome.USAGE_ERROR, "error": {"message": str(exc)}}
                )
            )
        else:
            print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(json.dumps(summary, default=str) if args.json else render(summary))
    return exit_code(summary)


def exit_code(summary: dict[str, Any]) -> int:
    """A gate rejection is a successful run of ``mlcicd run``."""
    return outcome_exit_code(summary["outcome"], rejection_fails=False)


@contextlib.contextmanager
def redirected_output(log_path: Path) -> Iterator[Any]:
    """Send everything written to fd 1 and 2 (Airflow's task logs) to ``log_path``.

    Yields a text stream on the original stdout for progress lines.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


class Progress(threading.Thread):
    """Print each stage's state as it changes, read from the newest run record."""

    def __init__(self, runs_dir: Path, since: float, out: Any) -> None:
        super().__init__(daemon=True)
        self.runs_dir, self.since, self.out = runs_dir, since, out
        self.stop_event = threading.Event()
        self.seen: dict[str, str] = {}

    def run(self) -> None:
        while not self.stop_event.wait(0.3):
            self.poll()
        self.poll()

    def poll(self) -> None:
        records = [p for p in self.runs_dir.glob("*/record.json") if p.stat().st_mtime >= self.since]
        if not records:
            return
        rec = record.read(max(records, key=lambda p: p.stat().st_mtime).parent)
        for name, info in sorted(rec.get("stages", {}).items(), key=lambda kv: kv[1].get("started_at", 0)):
            line = stage_line(name, info)
            if self.seen.get(name) == line:
                continue
            self.seen[name] = line
            self.out.write(line + "\n")
            self.out.flush()


def stage_line(name: str, info: dict[str, Any]) -> str:
    """``  ✓ validate_data        success (12.3 s, 2,000,000 rows, peak 1.9 GB)``."""
    state = str(info.get("state"))
    mark = {"running": "…", "success": "✓", "failed": "✗"}.get(state, "?")
    facts = [f"{info['seconds']:.1f} s"] if "seconds" in info else []
    if info.get("rows") is not None:
        facts.append(f"{info['rows']:,} rows")
    if info.get("peak_memory_mb") is not None and "seconds" in info:
        facts.append(f"peak {info['peak_memory_mb'] / 1024:.1f} GB")
    return f"  {mark} {name:<20} {state}" + (f" ({', '.join(facts)})" if facts else "")


def run_pipeline(
    conf: dict[str, Any], *, log_path: Path | None = None, dag_id: str = RETRAIN_DAG
) -> dict[str, Any]:
    """Run ``ml_retrain`` (or the retrain DAG ``dag_id`` of a model project) once through ``dag.test()``;
    return the run summary.

    With ``log_path``, Airflow's output goes there and the terminal gets one line per task state.

    Raises:
        UsageError: the params are invalid (nothing ran).
    """
    settings = load()
    prepare_environment(settings)
    ensure_airflow_db(settings)
    started = time.time()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    output = redirected_output(log_path) if log_path is not None else contextlib.nullcontext()
    with output as terminal:
        dag = load_dag(dag_id)
        params = validate_conf(dag, conf)
        if params.get("approval"):
            raise UsageError(
                "approval=true needs a running Airflow (`make airflow`, or your own): a human answers in "
                "its UI or with `python -m mlcicd approve|reject RUN_ID`, and its scheduler enforces the "
                "timeout. `mlcicd run` runs the DAG in this process, with nobody to ask; start the run "
                "with `python -m mlcicd trigger --conf approval=true` instead"
            )
        progress = Progress(settings.runs_dir, started - 1, terminal) if terminal else None
        if progress:
            progress.start()
        try:
            dagrun = dag.test(run_conf=conf)
        finally:
            if progress:
                progress.stop_event.set()
                progress.join(5)
    return summarize(settings, dagrun, params, time.time() - started, log_path)


def summarize(
    settings: Settings, dagrun: Any, params: dict[str, Any], seconds: float, log_path: Path | None
) -> dict[str, Any]:
    from mlcicd import registry

    rec = record.read(settings.runs_dir / record.run_key(dagrun.run_id))
    state = str(getattr(dagrun.state, "value", dagrun.state))
    gate = rec.get("gate") or {}
    error = rec.get("error")
    c = registry.client(settings.tracking_uri, settings.registry_uri)
    champ = registry.champion(c, str(params["model_name"]))
    outcome = run_summary.outcome(state, gate, error)
    candidate = rec.get("candidate", {})
    evaluation = rec.get("evaluation", {})
    validation = rec.get("validation")
    return {
        "dag_id": dagrun.dag_id,
        "run_id": dagrun.run_id,
        "state": state,
        "outcome": outcome,
        "seconds": round(seconds, 1),
        "batch": rec.get("batch"),
        "validation": run_summary.validation_view(validation),
        "candidate": candidate
        and {
            **candidate,
            "metrics": evaluation.get("candidate_metrics"),
            "champion_metrics": evaluation.get("champion_metrics"),
        },
        "search": run_summary.search_view(rec.get("search")),
        "scan": run_summary.scan_view(rec.get("scan")),
        "gate": gate
        and {"decision": gate["decision"], "reasons": gate["reasons"], "comparison": gate.get("comparison")},
        "image": rec.get("image"),
        "deployment": rec.get("deployment"),
        "rollout": run_summary.rollout_view(rec.get("rollout")),
        "champion_version": champ.version if champ else None,
        "model_name": params["model_name"],
        "code": rec.get("code"),  # a model project's: project, commit, digest, dirty
        "error": error,
        "stages": rec.get("stages"),
        "log_path": str(log_path) if log_path else None,
        "mlflow_tracking_uri": settings.tracking_uri,
    }
