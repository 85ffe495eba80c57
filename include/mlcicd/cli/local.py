"""Commands for the embedded default: ``stop`` the servers, send ``traffic``, serve the ``airflow`` UI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from mlcicd.choices import DEFAULT_MODEL_NAME
from mlcicd.names import ExitCode
from mlcicd.serving.auth import auth_headers
from mlcicd.settings import load


def register(sub: Any) -> None:
    stop = sub.add_parser("stop", help="stop the model servers started by runs")
    stop.add_argument(
        "--target",
        choices=["local", "docker"],
        default="local",
        help="local: the server processes (default); docker: the model containers on the Docker engine",
    )
    stop.set_defaults(func=stop_command)
    traffic = sub.add_parser(
        "traffic", help="send synthetic requests to the served model (for the monitoring loop)"
    )
    traffic.add_argument("--rows", type=int, default=2000)
    traffic.add_argument("--batch", type=int, default=20, help="rows per request")
    traffic.add_argument(
        "--drift", type=float, default=0.0, help="synthetic drift of the traffic (0 = like training)"
    )
    traffic.add_argument("--seed", type=int, default=None)
    traffic.add_argument("--model", default=DEFAULT_MODEL_NAME)
    traffic.add_argument("--endpoint", default=None, help="default: the local target's stable endpoint")
    traffic.add_argument(
        "--labels", action="store_true", help="also write the ground truth to the labels folder"
    )
    traffic.set_defaults(func=send_traffic)
    ui = sub.add_parser("airflow", help="the Airflow UI and scheduler on the embedded default (Ctrl-C stops)")
    ui.add_argument("--port", type=int, default=8080)
    ui.set_defaults(func=lambda args: run_airflow(args.port))


def stop_command(args: argparse.Namespace) -> int:
    stopped = stop_servers(args.target)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return ExitCode.OK


def stop_servers(target: str = "local") -> list[str]:
    """Stop what the target serves for every model: local server processes, or docker containers."""
    from mlcicd import deploy

    return deploy.stop_all(target, load())


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
                r = requests.post(f"{endpoint}/invocations", json=body, timeout=30, headers=auth_headers())
            except requests.RequestException as exc:
                print(
                    f"error: {endpoint} does not answer ({exc}); is a model deployed? (make run)",
                    file=sys.stderr,
                )
                return ExitCode.FAILED
            if r.status_code != 200:
                print(f"error: {endpoint} answered {r.status_code}: {r.text[:300]}", file=sys.stderr)
                return ExitCode.FAILED
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
    return ExitCode.OK


def run_airflow(port: int) -> int:
    """Serve the Airflow UI over the same metadata DB and state folder as ``mlcicd run``."""
    from mlcicd.dev import server as devserver

    settings = load()
    password = os.getenv("MLCICD_AIRFLOW_PASSWORD", "admin")
    keep = {k: v for k, v in os.environ.items() if k.startswith("MLCICD_")}
    print(f"starting Airflow on http://127.0.0.1:{port} (state in {settings.state_dir}) ...", flush=True)
    server = devserver.start(settings.state_dir / "airflow", port=port, password=password, extra_env=keep)
    print(f"Airflow UI: {server.url}  user {devserver.USER}, password {password!r} (MLCICD_AIRFLOW_PASSWORD)")
    print(
        f"Trigger from another shell: MLCICD_AIRFLOW_USERNAME=admin MLCICD_AIRFLOW_PASSWORD={password} "
        f"python -m mlcicd trigger --url {server.url} --wait --unpause"
    )
    print("Ctrl-C stops it.", flush=True)

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a SIGTERM must stop the components too
    try:
        while all(p.poll() is None for p in server.procs):
            time.sleep(1)
        print("an Airflow component exited; see the logs in " + str(server.home), file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.OK
    finally:
        devserver.stop(server)
