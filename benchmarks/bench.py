"""Benchmarks with budgets: DAG parse cost and the end-to-end run time. Prints figures.

    make bench            # or: .state/venv/bin/python benchmarks/bench.py [--runs 3] [--parses 9]

Also measured (issue #4): latency the trigger client and the REST path add, from the trigger
call to the run's first task starting, and from the run's end to the client's exit.

Also measured (issue #3, `--only image`, needs a Docker engine: `make bench` starts one): image
build time with a warm layer cache, image size, and time from "promote" to the new version
answering on the docker target.

Also measured (issue #10, `--only monitoring`): ml_monitor's window work on 10^6 logged
predictions, clean and with 10 % hostile records (1 MB strings, thousands of extra columns,
control characters, values of the wrong type): budget 10 s.

Also measured (issue #11, `--only front`): what the traffic front (HAProxy) adds to a request:
2,000 sequential keep-alive 5-row requests, alternately straight to a model server and through
its front, p50 and p99 of each.

Also measured (issue #13, `--only server`, see benchmarks/serving.py): the model server against
`mlflow models serve` on the same model, 1 and 20 rows, 1 and 8 clients.

Also measured (issue #12, `--only scan`, see benchmarks/scanning.py): the scan's time on a 5,000-row
and a 100,000-row holdout (budgets 5 s and 30 s).

Also measured (issue #18, `--only search`, see benchmarks/searching.py): the candidate search's wall
time, quick and wide, with 1 and 2 candidates trained at once on a real Airflow, and the speed-up.

Also measured (issue #16, `--only large`, see benchmarks/large.py): the gate's comparison at 500,000
holdout rows, and whole runs at 2 and 10 million rows with each stage's time, rows and peak memory.

Also measured (issue #30, `--only projects`, see benchmarks/projects.py): the DAG files' parse cost
with 0, 1 and 3 model projects, and `mlcicd check`'s time on the example projects.

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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARSE_BUDGET_S = 0.15
RUN_BUDGET_S = 60.0
SECTIONS = (
    "parse",
    "run",
    "trigger",
    "monitoring",
    "image",
    "front",
    "server",
    "scan",
    "trust",
    "search",
    "large",
    "projects",
)

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


def cold_build(state: Path, env: dict[str, str]) -> None:
    """Build the last run's context again with no layer cache: what a fresh engine pays once."""
    import docker

    contexts = sorted(state.glob("images/*/v*/context"))
    if not contexts:
        return
    client = docker.APIClient(base_url=env.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=1800)
    t = time.perf_counter()
    for chunk in client.build(
        path=str(contexts[-1]),
        tag="mlcicd-bench-cold:1",
        nocache=True,
        rm=True,
        decode=True,
        network_mode="host",
        buildargs={"BASE_IMAGE": env.get("MLCICD_BASE_IMAGE", "python:3.11.14-slim-bookworm")},
    ):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    print(
        f"  cold build (no layer cache, dependencies from PyPI): {time.perf_counter() - t:.1f} s (one build)"
    )
    client.remove_image("mlcicd-bench-cold:1", force=True)


def timed_runs(n: int, target: str = "local", after=None) -> list[dict]:
    state = Path(tempfile.mkdtemp(prefix="mlcicd-bench-"))
    env = {
        **os.environ,
        "MLCICD_STATE_DIR": str(state),
        "MLCICD_LOCAL_PORT": str(free_port()),
        "MLCICD_DOCKER_PORT": str(free_port()),
        "MLCICD_DEPLOY_TARGET": target,
    }
    for key in [
        k for k in env if k.startswith("AIRFLOW") or k in ("MLFLOW_TRACKING_URI", "MLCICD_TRACKING_URI")
    ]:
        env.pop(key)
    # Set-up (venv aside): the Airflow metadata DB, as `make run` does on its first call.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlcicd import settings; from mlcicd.cli import env; s = settings.load(); env.prepare_environment(s); env.ensure_airflow_db(s)",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    results = []
    try:
        for i in range(n):
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "mlcicd", "run", "--json", "--conf", f"synthetic_seed={100 + i}"],
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            wall = time.perf_counter() - t
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(
                {
                    "wall": wall,
                    "outcome": summary["outcome"],
                    "stages": summary["stages"],
                    "image": summary.get("image"),
                }
            )
            print(f"  run {i + 1}: {wall:5.1f} s wall, outcome {summary['outcome']}", flush=True)
        if after is not None:
            after(state, env)
    finally:
        subprocess.run(
            [sys.executable, "-m", "mlcicd", "stop", "--target", target], env=env, capture_output=True
        )
        shutil.rmtree(state, ignore_errors=True)
    return results


def trigger_latency(n: int) -> list[tuple[float, float, float]]:
    """(trigger call -> first task start, run end -> client exit, whole run) for n runs on a real Airflow."""
    from datetime import datetime

    from mlcicd.dev import server as devserver

    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-airflow-"))
    extra = {
        "MLCICD_STATE_DIR": str(root / "state"),
        "MLCICD_LOCAL_PORT": str(free_port()),
        "MLCICD_RETRAIN_SCHEDULE": "none",
        "MLCICD_GATE_MAX_DEGRADATION": "0.5",  # the runs ask for a wide margin, to be promoted
    }
    server = devserver.start(root / "home", password="bench", extra_env=extra)
    results = []
    try:
        for i in range(n):
            env = {
                **server.env,
                "MLCICD_AIRFLOW_USERNAME": "admin",
                "MLCICD_AIRFLOW_PASSWORD": "bench",  # pragma: allowlist secret
            }
            called = time.time()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlcicd",
                    "trigger",
                    "--url",
                    server.url,
                    "--sha",
                    f"{i:040x}",
                    "--conf",
                    f"synthetic_seed={200 + i}",
                    "--conf",
                    "max_degradation=0.5",
                    "--wait",
                    "--unpause",
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            exited = time.time()
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            run = server.get(f"/api/v2/dags/ml_retrain/dagRuns/{summary['run_id']}")
            tis = server.get(f"/api/v2/dags/ml_retrain/dagRuns/{summary['run_id']}/taskInstances")[
                "task_instances"
            ]
            first = min(datetime.fromisoformat(t["start_date"]).timestamp() for t in tis if t["start_date"])
            end = datetime.fromisoformat(run["end_date"]).timestamp()
            results.append((first - called, exited - end, end - first))
            print(
                f"  run {i + 1}: {summary['outcome']}; trigger->first task {first - called:.2f} s, "
                f"run end->client exit {exited - end:.2f} s, run {end - first:.1f} s",
                flush=True,
            )
    finally:
        devserver.stop(server)
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=server.env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return results


def served_model_dir(root: Path) -> Any:
    """A model directory as the deploy targets prepare it (MLflow model + release.json); its features."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlcicd import synthetic, training

    df = synthetic.generate(2000, 3)
    x, y = df.drop(columns="churned"), df.churned
    model = training.build_pipeline(x, training.TrainParams()).fit(x, y)
    mlflow.sklearn.save_model(
        model,
        str(root / "model"),
        signature=infer_signature(x.head(), model.predict(x.head())),
        skops_trusted_types=training.trusted_types(model),
        pip_requirements=training.pip_requirements(),
    )
    from mlcicd.serving import modelfile

    release = {"model_name": "bench", "version": "1", "model_digest": modelfile.digest(root / "model")}
    (root / "release.json").write_text(json.dumps(release))
    return x


def logging_cost(requests_n: int) -> tuple[float, float]:
    """Median latency (ms) of a 20-row /invocations call without and with the prediction log."""
    from fastapi.testclient import TestClient

    from mlcicd.serving import server as serving

    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-serve-"))
    x = served_model_dir(root)
    body = {"dataframe_split": json.loads(x.head(20).to_json(orient="split", index=False))}
    clients = {
        False: TestClient(serving.create_app(root)),
        True: TestClient(serving.create_app(root, root / "log")),
    }
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(requests_n):  # interleaved, so that both see the same machine load
        for logged, client in clients.items():
            t = time.perf_counter()
            assert client.post("/invocations", json=body).status_code == 200
            timings[logged].append((time.perf_counter() - t) * 1000)
    shutil.rmtree(root, ignore_errors=True)
    return statistics.median(timings[False]), statistics.median(timings[True])


def front_cost(requests_n: int) -> dict[str, list[float]]:
    """Latencies (ms) of 5-row requests straight to a model server and through an HAProxy front to it."""
    import requests

    from mlcicd.deploy.haproxy import Front, SlotConfig
    from mlcicd.settings import load

    root = Path(tempfile.mkdtemp(prefix="mlcicd-bench-front-"))
    x = served_model_dir(root)
    server_port, front_port = free_port(), free_port()
    front = Front(root / "front")
    front.write(f"127.0.0.1:{front_port}", {"a": SlotConfig(("127.0.0.1", server_port), 100)}, None, "bench")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root), "--port", str(server_port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [load().haproxy_bin, "-db", "-f", "haproxy.cfg"],
            cwd=front.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    body = {"dataframe_split": json.loads(x.head(5).to_json(orient="split", index=False))}
    urls = {"direct": f"http://127.0.0.1:{server_port}", "front": f"http://127.0.0.1:{front_port}"}
    sessions = {k: requests.Session() for k in urls}
    timings: dict[str, list[float]] = {k: [] for k in urls}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if all(sessions[k].get(f"{u}/health", timeout=2).ok for k, u in urls.items()):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        for _ in range(50):  # warm both paths
            for k, u in urls.items():
                sessions[k].post(f"{u}/invocations", json=body)
        for _ in range(requests_n):  # interleaved, so that both see the same machine load
            for k, u in urls.items():
                t = time.perf_counter()
                assert sessions[k].post(f"{u}/invocations", json=body).status_code == 200
                timings[k].append((time.perf_counter() - t) * 1000)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    return timings


def drift_time(rows: int) -> float:
    from mlcicd import monitoring, synthetic

    reference = synthetic.generate(5000, 1).drop(columns="churned")
    current = synthetic.generate(rows, 2, drift=1.0).drop(columns="churned")
    t = time.perf_counter()
    monitoring.detect_drift(reference, current)
    return time.perf_counter() - t


MONITOR_BUDGET_S = 10.0


def hostile_log(folder: Path, rows: int, hostile_share: float, when) -> None:
    """A window's log of `rows` predictions, `hostile_share` of them what a careless or hostile client sends."""
    import random

    from mlcicd import synthetic

    good = synthetic.generate(20_000, 5).drop(columns="churned").to_dict(orient="records")
    rng = random.Random(0)
    kinds = [
        lambda f, i: (
            {**f, "contract": "x" * 1_000_000} if i % 5000 == 0 else {**f, "contract": f"c{i}-" + "y" * 80}
        ),
        lambda f, i: {**f, **{f"extra_{k}": k for k in range(3000)}},
        lambda f, i: {**f, "region": f"r\x00\x1b[31m{i}"},
        lambda f, i: {**f, "monthly_charges": f"{i}; DROP TABLE", "tenure_months": [i]},
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"predictions-{when:%Y%m%dT%H}.jsonl").open("w") as fh:
        for i in range(rows):
            features = good[i % len(good)]
            if rng.random() < hostile_share:
                features = kinds[i % len(kinds)](features, i)
            fh.write(
                json.dumps(
                    {
                        "request_id": f"r{i}",
                        "row": 0,
                        "time": when.isoformat(),
                        "model_name": "bench",
                        "model_version": "1",
                        "features": features,
                        "prediction": i % 2,
                    }
                )
                + "\n"
            )


def monitor_time(rows: int, hostile_share: float) -> tuple[float, dict]:
    """Seconds for evaluate_window's work on one window: read, frame, test, decay, report."""
    from datetime import UTC, datetime, timedelta

    from mlcicd import monitoring, synthetic
    from mlcicd.monitoring import report as window_report
    from mlcicd.serving import predlog

    folder = Path(tempfile.mkdtemp(prefix="mlcicd-bench-monitor-"))
    when = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    hostile_log(folder, rows, hostile_share, when)
    reference = synthetic.generate(5000, 1).drop(columns="churned")
    reference["__prediction__"] = [i % 2 for i in range(len(reference))]
    t = time.perf_counter()
    logged = predlog.read_window(folder, when - timedelta(minutes=30), when + timedelta(minutes=30))
    current, hostile = monitoring.window_frame(logged.records, reference)
    drift = monitoring.detect_drift(reference, current)
    monitoring.live_decay(logged.records, monitoring.labels_for(logged.records, folder / "labels"), 0.85)
    decision = monitoring.RetrainDecision(False, "bench")
    window_report.render_report(reference, current, drift, "bench", decision, hostile)
    seconds = time.perf_counter() - t
    shutil.rmtree(folder, ignore_errors=True)
    return seconds, {"lines": logged.lines, "oversized": logged.oversized, "parsed": logged.parsed, **hostile}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parses", type=int, default=9, help="fresh interpreters per DAG file")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs")
    parser.add_argument(
        "--triggers", type=int, default=3, help="runs through a real Airflow and the trigger client"
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per variant for the logging cost")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        help="one section only",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    sections = {args.only} if args.only else set(SECTIONS)
    if "monitoring" in sections:
        without, with_log = logging_cost(args.requests)
        print(
            f"\nprediction logging cost (median of {args.requests} interleaved 20-row requests, in-process ASGI)"
        )
        print(f"  without log {without:.2f} ms, with log {with_log:.2f} ms: ratio {with_log / without:.3f}")
        print("\ndrift computation (8 feature columns against a 5,000-row reference)")
        for rows in (100_000, 1_000_000):
            print(f"  {rows:>9,} predictions: {drift_time(rows):.2f} s")
        print(
            f"\nml_monitor's window (read the log, frame, test, decay, report; budget {MONITOR_BUDGET_S:.0f} s)"
        )
        for rows, share in ((1_000_000, 0.0), (1_000_000, 0.1)):
            seconds, seen = monitor_time(rows, share)
            verdict = "within budget" if seconds <= MONITOR_BUDGET_S else "OVER BUDGET"
            print(f"  {rows:>9,} predictions, {share:.0%} hostile: {seconds:.2f} s ({verdict}); {seen}")
    if "parse" in sections:
        parse_section(args)
    if "run" in sections:
        run_section(args)
    if "trigger" in sections:
        trigger_section(args)
    if "image" in sections:
        image_section(args)
    if "front" in sections:
        front_section(args)
    if "server" in sections:
        from serving import section as server_section

        server_section(free_port, served_model_dir)
    if "scan" in sections:
        from scanning import section as scan_section

        scan_section()
    if "trust" in sections:
        from trust import section as trust_section

        trust_section()
    if "search" in sections:
        from searching import section as search_section

        search_section(free_port)
    if "large" in sections:
        from large import section as large_section

        large_section()
    if "projects" in sections:
        from projects import section as projects_section

        projects_section(PARSE_PROBE, args.parses)


def parse_section(args: argparse.Namespace) -> None:
    print(f"\nDAG parse cost (median of {args.parses} fresh interpreters)")
    for path in sorted((ROOT / "dags").glob("*.py")):
        sdk, extra = parse_costs(path, args.parses)
        med = statistics.median(extra)
        verdict = "within" if med <= PARSE_BUDGET_S else "OVER"
        print(
            f"  {path.name}: +{med * 1000:.0f} ms over `from airflow.sdk import dag, task` "
            f"({statistics.median(sdk) * 1000:.0f} ms); budget {PARSE_BUDGET_S * 1000:.0f} ms: {verdict}"
        )


def run_section(args: argparse.Namespace) -> None:
    print(f"\nmake run after set-up (python -m mlcicd run, fresh MLflow store, {args.runs} runs)")
    runs = timed_runs(args.runs)
    walls = [r["wall"] for r in runs]
    med = statistics.median(walls)
    print(
        f"  median {med:.1f} s (min {min(walls):.1f}, max {max(walls):.1f}); budget {RUN_BUDGET_S:.0f} s: "
        f"{'within' if med <= RUN_BUDGET_S else 'OVER'}"
    )
    stages = sorted({s for r in runs for s in r["stages"]})
    print("  median seconds by stage:")
    for stage in stages:
        values = [r["stages"][stage]["seconds"] for r in runs if stage in r["stages"]]
        print(f"    {stage:<20} {statistics.median(values):6.2f}")


def trigger_section(args: argparse.Namespace) -> None:
    print(f"\ntrigger client on a real Airflow (LocalExecutor, SQLite; {args.triggers} runs)")
    lat = trigger_latency(args.triggers)
    print(f"  median trigger call -> first task start: {statistics.median(x[0] for x in lat):.2f} s")
    print(f"  median run end -> client exit:           {statistics.median(x[1] for x in lat):.2f} s")
    print(f"  median run (first task start -> end):    {statistics.median(x[2] for x in lat):.1f} s")


def front_section(args: argparse.Namespace) -> None:
    n = 2000
    print(
        f"\ntraffic front (HAProxy) on loopback: {n} sequential keep-alive 5-row requests per path, interleaved"
    )
    timings = front_cost(n)
    for k, values in timings.items():
        q = statistics.quantiles(values, n=100)
        print(f"  {k:<7} p50 {statistics.median(values):6.2f} ms, p99 {q[98]:6.2f} ms")
    d, f = timings["direct"], timings["front"]
    print(
        f"  the front adds {statistics.median(f) - statistics.median(d):+.2f} ms at p50 "
        f"(ratio {statistics.median(f) / statistics.median(d):.3f}), "
        f"{statistics.quantiles(f, n=100)[98] - statistics.quantiles(d, n=100)[98]:+.2f} ms at p99"
    )


def image_section(args: argparse.Namespace) -> None:
    """Runs on the docker target: build time (warm layer cache after the first), size, promote -> serving."""
    print(
        f"\ndocker target (engine {os.environ.get('DOCKER_HOST', 'default')}, base "
        f"{os.environ.get('MLCICD_BASE_IMAGE', 'python:3.11 slim')}; {args.runs} promoted runs)"
    )
    runs = timed_runs(args.runs, target="docker", after=cold_build)
    rows = []
    for i, r in enumerate(runs, 1):
        st = r["stages"]
        if r["outcome"] != "promoted":
            print(f"  run {i}: {r['outcome']} (not counted)")
            continue
        to_serving = sum(st[k]["seconds"] for k in ("register_model", "build_image", "deploy_model"))
        rows.append(
            (
                st["build_image"]["seconds"],
                st["deploy_model"]["seconds"],
                to_serving,
                r["image"]["size_bytes"],
            )
        )
        print(
            f"  run {i}: build {rows[-1][0]:5.1f} s, deploy {rows[-1][1]:5.1f} s, promote -> answering "
            f"{to_serving:5.1f} s, image {rows[-1][3] / 1e6:.0f} MB"
        )
    if rows:
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(
            f"  median: build {med[0]:.1f} s (run 1 may have filled the layer cache), deploy {med[1]:.1f} s, "
            f"promote -> new version answering {med[2]:.1f} s, image {med[3] / 1e6:.0f} MB"
        )


if __name__ == "__main__":
    main()
