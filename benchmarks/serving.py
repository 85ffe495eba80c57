"""The model server against `mlflow models serve` on the same model (issue #13, `--only server`).

Both serve the default churn pipeline (HistGradientBoosting behind the ColumnTransformer) from one
model directory, each with its defaults (ours: MLCICD_SERVER_WORKERS=auto, the cores given;
MLflow: its defaults). A closed-loop load generator of N client threads, each with a keep-alive
connection (``http.client``, no per-request setup), sends pre-encoded 1-row and 20-row
``dataframe_split`` bodies for a fixed time. Throughput, p50 and p99 are printed, with the
in-process ``pipeline.predict`` of the same rows for reference. Client and servers share the cores.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CONFIGS = ((1, 1), (1, 8), (20, 1), (20, 8))  # (rows, clients)


def load(port: int, body: bytes, clients: int, seconds: float) -> tuple[float, list[float], int]:
    """(requests/s, latencies in ms, failures) of ``clients`` closed-loop callers for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    stop = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                conn.request("POST", "/invocations", body, headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            if ok:
                latencies[i].append((time.perf_counter() - t) * 1000)
            else:
                failures[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = [x for per in latencies for x in per]
    return len(flat) / elapsed, flat, sum(failures)


def wait(port: int, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"nothing answered {path} on port {port} within {timeout_s:.0f} s")


def compare(root_dir: Path, x: Any, free_port: Any, seconds: float = 8.0) -> dict[str, Any]:
    """Figures for both servers and the in-process predict, per (rows, clients)."""
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(root_dir / "model"))
    from threadpoolctl import threadpool_limits

    bodies = {
        rows: json.dumps(
            {"dataframe_split": json.loads(x.head(rows).to_json(orient="split", index=False))}
        ).encode()
        for rows in {r for r, _ in CONFIGS}
    }
    out: dict[str, Any] = {"in_process_ms": {}}
    with threadpool_limits(1):
        for rows in bodies:
            frame = x.head(rows)
            for _ in range(30):
                model.predict(frame)
            ts = []
            for _ in range(300):
                t = time.perf_counter()
                model.predict(frame)
                ts.append((time.perf_counter() - t) * 1000)
            out["in_process_ms"][rows] = statistics.median(ts)
    servers = {
        "mlflow": (
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                str(root_dir / "model"),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
            ],
            "-p",
            "/ping",
        ),
        "mlcicd": (
            [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root_dir)],
            "--port",
            "/health",
        ),
    }
    for name, (cmd, port_flag, health) in servers.items():
        port = free_port()
        proc = subprocess.Popen(
            [*cmd, port_flag, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                **os.environ,
                "PYTHONWARNINGS": "ignore",  # mlflow execs `uvicorn`: the venv's
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        )
        try:
            wait(port, health)
            load(port, bodies[1], 2, 2.0)  # warm both paths
            out[name] = {}
            for rows, clients in CONFIGS:
                rate, lat, failed = load(port, bodies[rows], clients, seconds)
                q = statistics.quantiles(lat, n=100)
                out[name][(rows, clients)] = {
                    "rps": rate,
                    "p50": statistics.median(lat),
                    "p99": q[98],
                    "failed": failed,
                }
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def section(free_port: Any, served_model_dir: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-server-"))
    try:
        x = served_model_dir(root)
        cores = len(os.sched_getaffinity(0))
        print(
            f"\nmodel server against `mlflow models serve` (same model; {cores} cores shared with the load generator)"
        )
        figures = compare(root, x, free_port)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "  in-process pipeline.predict: "
        + ", ".join(f"{r} row(s) {ms:.2f} ms" for r, ms in figures["in_process_ms"].items())
    )
    print(
        f"  {'rows':>4} {'clients':>7} | {'mlflow req/s':>12} {'p99 ms':>7} | {'ours req/s':>10} {'p99 ms':>7} {'p50 ms':>7} | "
        f"{'throughput x':>12} {'p99 ratio':>9}"
    )
    for key in CONFIGS:
        m, o = figures["mlflow"][key], figures["mlcicd"][key]
        print(
            f"  {key[0]:>4} {key[1]:>7} | {m['rps']:>12.0f} {m['p99']:>7.1f} | {o['rps']:>10.0f} {o['p99']:>7.1f} "
            f"{o['p50']:>7.1f} | {o['rps'] / m['rps']:>12.2f} {o['p99'] / m['p99']:>9.2f}"
            + (f"  (failed: mlflow {m['failed']}, ours {o['failed']})" if m["failed"] or o["failed"] else "")
        )
    one = figures["mlcicd"][(1, 1)]["p50"] - figures["in_process_ms"][1]
    print(f"  at 1 client, 1 row: ours p50 is the in-process predict {one:+.2f} ms (budget: +2 ms)")
