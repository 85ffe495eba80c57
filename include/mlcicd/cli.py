"""Command line: ``python -m mlcicd run`` runs ``ml_retrain`` once on the embedded default.

Exit status of ``run``: 0 the run succeeded (the model was promoted, or cleanly rejected by the
gate); 1 the run failed for another reason; 2 bad usage or params (nothing ran); 3 the batch was
rejected (unreadable, unusable, or failed validation); 4 deployment failed and was rolled back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlcicd import record
from mlcicd import summary as run_summary
from mlcicd.settings import Settings, airflow_env, load

DAG_ID = "ml_retrain"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_DEPLOY = 0, 1, 2, 3, 4
STAGE_ORDER = [
    "ingest_data", "validate_data", "train_model", "evaluate_candidate", "decide_promotion",
    "register_model", "build_image", "deploy_model", "promote_champion", "record_rejection",
]  # fmt: skip


class UsageError(Exception):
    pass


def prepare_environment(settings: Settings) -> None:
    """Point Airflow and MLflow at the state folder (explicit environment settings win)."""
    airflow_home = settings.state_dir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    defaults = {
        **airflow_env(airflow_home),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONWARNINGS": "ignore",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)


def ensure_airflow_db(settings: Settings) -> None:
    """Create or upgrade the Airflow metadata database (once; a marker records success)."""
    marker = settings.state_dir / "airflow" / ".migrated"
    if marker.exists():
        return
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"'airflow db migrate' failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def parse_conf(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values that parse as JSON (numbers, true, null...) are typed."""
    conf: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--conf expects KEY=VALUE, got {pair!r}")
        try:
            conf[key] = json.loads(raw)
        except json.JSONDecodeError:
            conf[key] = raw
    return conf


def load_dag(dag_id: str = DAG_ID) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        errors = "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items())
        raise RuntimeError(f"DAG files failed to import:\n{errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"DAG {dag_id!r} not found in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    return dag


def validate_conf(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """Check ``conf`` against the DAG's Params; return the resolved params."""
    from airflow.sdk.definitions.param import ParamsDict

    unknown = sorted(set(conf) - set(dag.params.keys()))
    if unknown:
        raise UsageError(
            f"unknown param(s) {', '.join(unknown)}; known params: {', '.join(sorted(dag.params.keys()))}"
        )
    params = ParamsDict(dag.params)
    try:
        for key, value in conf.items():
            params[key] = value
        return params.validate()
    except Exception as exc:  # ParamValidationError: its first line names the param and the rule
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"{first} (see the param list: README.md, or the DAG's trigger form)") from exc


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
            state = info.get("state")
            if self.seen.get(name) == state:
                continue
            self.seen[name] = state
            mark = {"running": "…", "success": "✓", "failed": "✗"}.get(state, "?")
            took = f" ({info['seconds']:.1f} s)" if "seconds" in info else ""
            self.out.write(f"  {mark} {name:<20} {state}{took}\n")
            self.out.flush()


def run_pipeline(conf: dict[str, Any], *, log_path: Path | None = None) -> dict[str, Any]:
    """Run ``ml_retrain`` once through ``dag.test()``; return the run summary.

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
        dag = load_dag()
        params = validate_conf(dag, conf)
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
        "gate": gate
        and {"decision": gate["decision"], "reasons": gate["reasons"], "comparison": gate.get("comparison")},
        "image": rec.get("image"),
        "deployment": rec.get("deployment"),
        "champion_version": champ.version if champ else None,
        "model_name": params["model_name"],
        "error": error,
        "stages": rec.get("stages"),
        "log_path": str(log_path) if log_path else None,
        "mlflow_tracking_uri": settings.tracking_uri,
    }


def exit_code(summary: dict[str, Any]) -> int:
    return {
        "promoted": EXIT_OK, "rejected": EXIT_OK, "data_rejected": EXIT_DATA, "rolled_back": EXIT_DEPLOY,
    }.get(summary["outcome"], EXIT_FAILED)  # fmt: skip


def render(summary: dict[str, Any]) -> str:
    s = summary
    took = f" in {s['seconds']} s" if s.get("seconds") is not None else ""
    lines = [f"\nml_retrain {s['run_id']}: {s['state'].upper()} ({s['outcome']}){took}"]
    if s.get("batch"):
        b = s["batch"]
        lines.append(
            f"  data        {b['rows']} rows x {len(b['columns'])} columns from {b['source_uri']} (digest {b['digest']})"
        )
    v = s.get("validation")
    if v:
        verdict = "passed" if v["success"] else f"FAILED {len(v['failures'])} expectation(s)"
        lines.append(f"  validation  {verdict} (suite {v['suite']}, {v['suite_origin']})")
        lines += [f"                - {f}" for f in v.get("failures", [])]
        if v.get("report_path"):
            lines.append(f"              report: {v['report_path']}")
    cand = s.get("candidate")
    if cand and cand.get("metrics"):
        m = ", ".join(f"{k} {v:.3f}" for k, v in cand["metrics"].items())
        version = f" v{cand['model_version']}" if cand.get("model_version") else ""
        lines.append(f"  candidate  {version} {cand.get('estimator') or ''}: {m}")
        lines.append(f"              MLflow run {cand.get('mlflow_run_id')}")
    g = s.get("gate")
    if g:
        lines.append(f"  gate        {g['decision'].upper()}")
        lines += [f"                {r}" for r in g["reasons"]]
    im = s.get("image")
    if im and im.get("reference"):
        size = f", {im['size_bytes'] / 1e6:.0f} MB" if im.get("size_bytes") else ""
        how = "reused" if im.get("reused") else f"built by {im['builder']} in {im.get('seconds')} s"
        lines.append(f"  image       {im['reference']} ({how}{size})")
    d = s.get("deployment")
    if d:
        lines.append(
            f"  deployment  {d['target']}: {d['state']}, v{d.get('serving_version')} at {d.get('endpoint')}"
        )
    lines.append(
        f"  champion    {s['model_name']} "
        + (f"v{s['champion_version']}" if s["champion_version"] else "(none)")
    )
    if s.get("error"):
        lines.append(f"  error       [{s['error']['stage']}] {s['error']['message']}")
    lines.append("Where to look:")
    if s.get("airflow_url"):
        lines.append(f"  Airflow     {s['airflow_url']}")
    if s.get("mlflow_url"):
        lines.append(f"  MLflow      {s['mlflow_url']}")
    if s.get("mlflow_tracking_uri"):
        lines.append(f"  MLflow UI   make mlflow-ui  (store {s['mlflow_tracking_uri']})")
    if s.get("log_path"):
        lines.append(f"  task logs   {s['log_path']}")
    if d and d.get("state") == "serving":
        stop = "make stop  (stops the local server)"
        if d["target"] == "docker":
            stop = "python -m mlcicd stop --target docker  (removes the container)"
        if d["target"] == "kubernetes":
            stop = "(a ClusterIP Service: kubectl port-forward svc/<name> to reach it from outside)"
        lines.append(f"  try it      curl -s {d['endpoint']}/version ; {stop}")
    return "\n".join(lines)


def stop_servers(target: str = "local") -> list[str]:
    """Stop what the target serves for every model: local server processes, or docker containers."""
    from mlcicd.deploy import LocalProcessTarget

    settings = load()
    if target == "docker":
        from mlcicd.docker_target import remove_all

        return remove_all(settings)
    stopped = []
    for state_file in (settings.deployments_dir / "local").glob("*/current.json"):
        target = LocalProcessTarget(settings, state_file.parent.name)
        if target.current():
            stopped.append(state_file.parent.name)
        target.stop()
    return stopped


def send_traffic(args: argparse.Namespace) -> int:
    """Post synthetic batches to the endpoint; optionally record their labels (request_id, row, label)."""
    import requests

    from mlcicd import synthetic

    settings = load()
    endpoint = args.endpoint or f"http://{settings.local_host}:{settings.local_port}"
    df = synthetic.generate(
        max(args.rows, 50), seed=args.seed if args.seed is not None else int(time.time()), drift=args.drift
    )
    labels_file = None
    if args.labels:
        folder = settings.labels_for(args.model)
        folder.mkdir(parents=True, exist_ok=True)
        labels_file = (folder / f"labels-{time.strftime('%Y%m%dT%H%M%S')}.jsonl").open("a")
    sent, started = 0, time.monotonic()
    try:
        for start in range(0, args.rows, args.batch):
            chunk = df.iloc[start : min(start + args.batch, args.rows)]
            body = {
                "dataframe_split": json.loads(
                    chunk.drop(columns=synthetic.TARGET).to_json(orient="split", index=False)
                )
            }
            try:
                r = requests.post(f"{endpoint}/invocations", json=body, timeout=30)
            except requests.RequestException as exc:
                print(
                    f"error: {endpoint} does not answer ({exc}); is a model deployed? (make run)",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            if r.status_code != 200:
                print(f"error: {endpoint} answered {r.status_code}: {r.text[:300]}", file=sys.stderr)
                return EXIT_FAILED
            if labels_file:
                rid = r.headers.get("X-Request-ID")
                for i, y in enumerate(chunk[synthetic.TARGET].tolist()):
                    labels_file.write(json.dumps({"request_id": rid, "row": i, "label": y}) + "\n")
            sent += len(chunk)
    finally:
        if labels_file:
            labels_file.close()
    took = time.monotonic() - started
    print(
        f"sent {sent} rows in {-(-sent // args.batch)} requests to {endpoint} in {took:.1f} s (drift {args.drift})"
    )
    return EXIT_OK


def run_airflow(port: int) -> int:
    """Serve the Airflow UI over the same metadata DB and state folder as ``mlcicd run``."""
    from mlcicd import devserver

    settings = load()
    password = os.getenv("MLCICD_AIRFLOW_PASSWORD", "admin")
    keep = {k: v for k, v in os.environ.items() if k.startswith("MLCICD_")}
    print(f"starting Airflow on http://127.0.0.1:{port} (state in {settings.state_dir}) ...", flush=True)
    server = devserver.start(settings.state_dir / "airflow", port=port, password=password, extra_env=keep)
    print(f"Airflow UI: {server.url}  user {devserver.USER}, password {password!r} (MLCICD_AIRFLOW_PASSWORD)")
    print(f"Trigger from another shell: MLCICD_AIRFLOW_USERNAME=admin MLCICD_AIRFLOW_PASSWORD={password} "
          f"python -m mlcicd trigger --url {server.url} --wait --unpause")  # fmt: skip
    print("Ctrl-C stops it.", flush=True)

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a SIGTERM must stop the components too
    try:
        while all(p.poll() is None for p in server.procs):
            time.sleep(1)
        print("an Airflow component exited; see the logs in " + str(server.home), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        devserver.stop(server)


def run_trigger(args: argparse.Namespace) -> int:
    from mlcicd import trigger

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        if not args.url:
            raise trigger.TriggerError(
                "no Airflow URL: pass --url or set MLCICD_AIRFLOW_URL", trigger.EXIT_USAGE
            )
        options = trigger.TriggerOptions(
            url=args.url, dag_id=args.dag, conf=parse_conf(args.conf), sha=args.sha, wait=args.wait,
            timeout_s=args.timeout, poll_s=args.poll, unpause=args.unpause,
            accept_rejection=args.accept_rejection, mlflow_url=args.mlflow_url,
        )  # fmt: skip
        code, summary = trigger.trigger(options, out=say)
    except UsageError as exc:
        code, summary = (
            trigger.EXIT_USAGE,
            {"state": "not_started", "outcome": "usage_error", "error": {"message": str(exc)}},
        )
    except trigger.TriggerError as exc:
        code, summary = (
            exc.exit_code,
            {"state": "unknown", "outcome": "error", "error": {"message": str(exc)}},
        )
    if args.json:
        print(json.dumps(summary, default=str))
    elif summary.get("outcome") in ("error", "usage_error"):
        print(f"error: {summary['error']['message']}", file=sys.stderr)
    elif args.wait:
        print(render(summary))
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlcicd", description="mlcicd: ML CI/CD on Airflow")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run ml_retrain once end to end on the embedded default")
    run.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a DAG param (repeatable)"
    )
    run.add_argument("--json", action="store_true", help="print one JSON summary object")
    stop = sub.add_parser("stop", help="stop the model servers started by runs")
    stop.add_argument(
        "--target", choices=["local", "docker"], default="local",
        help="local: the server processes (default); docker: the model containers on the Docker engine",
    )  # fmt: skip
    trig = sub.add_parser(
        "trigger",
        help="start ml_retrain on an Airflow server through its REST API (for CI)",
        description="Credentials come from MLCICD_AIRFLOW_USERNAME / MLCICD_AIRFLOW_PASSWORD "
        "(or MLCICD_AIRFLOW_TOKEN). Exit status: 0 promoted, 1 error or timeout, 2 bad usage or "
        "params, 3 batch refused (data), 4 deployment rolled back, 5 rejected by the gate.",
    )
    trig.add_argument(
        "--url", default=os.getenv("MLCICD_AIRFLOW_URL"), help="Airflow base URL (or MLCICD_AIRFLOW_URL)"
    )
    trig.add_argument("--dag", default=DAG_ID, help="DAG id (default: %(default)s)")
    trig.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a DAG param (repeatable)"
    )
    trig.add_argument(
        "--sha", help="commit the run belongs to (default: GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT, git)"
    )
    trig.add_argument(
        "--wait", action="store_true", help="follow the run to its end and exit with its verdict"
    )
    trig.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default: %(default)s)")
    trig.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    trig.add_argument("--unpause", action="store_true", help="unpause the DAG if it is paused")
    trig.add_argument(
        "--accept-rejection", action="store_true", help="exit 0 when the gate rejects the model"
    )
    trig.add_argument(
        "--mlflow-url", default=os.getenv("MLCICD_MLFLOW_URL"), help="MLflow UI base URL, for links"
    )
    trig.add_argument("--json", action="store_true", help="print one JSON summary object at the end")
    traffic = sub.add_parser(
        "traffic", help="send synthetic requests to the served model (for the monitoring loop)"
    )
    traffic.add_argument("--rows", type=int, default=2000)
    traffic.add_argument("--batch", type=int, default=20, help="rows per request")
    traffic.add_argument(
        "--drift", type=float, default=0.0, help="synthetic drift of the traffic (0 = like training)"
    )
    traffic.add_argument("--seed", type=int, default=None)
    traffic.add_argument("--model", default="mlcicd_churn")
    traffic.add_argument("--endpoint", default=None, help="default: the local target's stable endpoint")
    traffic.add_argument(
        "--labels", action="store_true", help="also write the ground truth to the labels folder"
    )
    ui = sub.add_parser("airflow", help="the Airflow UI and scheduler on the embedded default (Ctrl-C stops)")
    ui.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    if args.command == "traffic":
        sys.exit(send_traffic(args))
    if args.command == "airflow":
        sys.exit(run_airflow(args.port))
    if args.command == "trigger":
        sys.exit(run_trigger(args))

    if args.command == "stop":
        stopped = stop_servers(args.target)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return
    settings = load()
    log_path = settings.state_dir / "logs" / f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"
    try:
        conf = parse_conf(args.conf)
        if not args.json:
            print(
                f"ml_retrain: running on the embedded default (state in {settings.state_dir}); task logs in {log_path}"
            )
        summary = run_pipeline(conf, log_path=log_path)
    except UsageError as exc:
        if args.json:
            print(
                json.dumps({"state": "not_started", "outcome": "usage_error", "error": {"message": str(exc)}})
            )
        else:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(render(summary))
    sys.exit(exit_code(summary))
