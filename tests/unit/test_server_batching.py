"""Adaptive batching, the fast scoring path, and a real multi-worker server under concurrent callers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from mlcicd import synthetic, training
from mlcicd.ports import free_port
from mlcicd.serving.batching import Batcher
from mlcicd.serving.fastpath import Scorer, compile_preprocess, probe_rows
from mlcicd.serving.inputs import Column
from tests.helpers import make_model_dir, wait_for

# -- the batcher ------------------------------------------------------------------------------


def run_callers(batcher: Batcher, requests_: list[np.ndarray]) -> list:
    async def main():
        async def call(values):
            try:
                return await batcher.predict({"x": values}, len(values))
            except Exception as exc:
                return exc

        return await asyncio.gather(*(call(v) for v in requests_))

    return asyncio.run(main())


def test_concurrent_callers_get_exactly_their_own_rows_in_order():
    calls = []

    def score(cols):
        calls.append(len(cols["x"]))
        time.sleep(0.01)  # while it scores, the others queue up
        return cols["x"] * 10

    batcher = Batcher(score, max_rows=1000, max_wait_s=0.0)
    sizes = [1, 5, 2, 20, 1, 3, 7, 1]
    start = 0
    requests_ = []
    for n in sizes:
        requests_.append(np.arange(start, start + n))
        start += n
    results = run_callers(batcher, requests_)
    for sent, got in zip(requests_, results, strict=True):
        assert got.tolist() == (sent * 10).tolist()
    assert len(calls) < len(sizes) and sum(calls) == sum(sizes)  # fewer scoring calls than requests
    batcher.close()


def test_one_callers_bad_input_does_not_fail_the_others():
    def score(cols):
        time.sleep(0.005)
        if np.any(cols["x"] < 0):
            raise ValueError("negative values")
        return cols["x"] + 1

    batcher = Batcher(score, max_rows=1000, max_wait_s=0.0)
    requests_ = [np.array([1, 2]), np.array([-1]), np.array([3]), np.array([4, 5, 6])] * 3
    results = run_callers(batcher, requests_)
    for sent, got in zip(requests_, results, strict=True):
        if np.any(sent < 0):
            assert isinstance(got, ValueError)
        else:
            assert got.tolist() == (sent + 1).tolist()
    batcher.close()


def test_a_batch_takes_no_request_once_it_has_max_rows_and_reports_each_batch():
    """Whole requests are added until the batch reaches ``max_rows``: the last may pass it (4 + 4 + 4 rows
    for 10), none is added after it."""
    seen = []
    batcher = Batcher(
        lambda c: (time.sleep(0.005), c["x"])[1],
        max_rows=10,
        max_wait_s=0.0,
        observe=lambda n, rows: seen.append((n, rows)),
    )
    results = run_callers(batcher, [np.arange(4)] * 12)
    assert all(len(r) == 4 for r in results)
    assert all(rows - 4 < 10 for _, rows in seen)  # before its last request, the batch was under 10 rows
    assert sum(n for n, _ in seen) == 12 and sum(rows for _, rows in seen) == 48
    batcher.close()


# -- the fast path ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "logistic_regression", "random_forest"])
def test_the_fast_path_gives_exactly_the_pipelines_answers_on_the_holdout(estimator):
    df = synthetic.generate(3000, 11)
    train, holdout = df.iloc[:2000], df.iloc[2000:].copy()
    holdout.loc[holdout.index[:50], "contract"] = None  # missing values take the imputer's path
    holdout.loc[holdout.index[50:100], "monthly_charges"] = np.nan
    holdout.loc[holdout.index[100:110], "region"] = "atlantis"  # a category never seen
    x, y = train.drop(columns="churned"), train.churned
    pipeline = training.build_pipeline(x, training.TrainParams(estimator=estimator, n_estimators=30)).fit(
        x, y
    )
    columns = [
        Column(
            c,
            "string"
            if x[c].dtype.kind in "OT" or str(x[c].dtype) == "str"
            else "long"
            if x[c].dtype.kind == "i"
            else "double",
        )
        for c in x.columns
    ]
    scorer = Scorer(pipeline, columns)
    assert scorer.fast is not None, scorer.reason
    h = holdout.drop(columns="churned")
    cols = {c.name: h[c.name].to_numpy(dtype=object if c.kind == "string" else None) for c in columns}
    assert np.array_equal(scorer.predict(cols), pipeline.predict(h))
    assert np.array_equal(scorer.fast_proba(cols), pipeline.predict_proba(h))


def test_a_model_the_fast_path_cannot_reproduce_is_scored_by_the_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    df = synthetic.generate(500, 2)
    x = df[["customer_age", "tenure_months"]]
    pipeline = training.build_pipeline(x, training.TrainParams(estimator="logistic_regression"))
    pipeline.steps[0][1].transformers[0] = ("numeric", make_pipeline(PolynomialFeatures()), list(x.columns))
    pipeline.fit(x, df.churned)
    scorer = Scorer(pipeline, [Column("customer_age", "long"), Column("tenure_months", "long")])
    assert scorer.fast is None and "PolynomialFeatures" in scorer.reason
    cols = {c: x[c].to_numpy() for c in x.columns}
    assert np.array_equal(scorer.predict(cols), pipeline.predict(x))


def test_a_fast_path_that_differs_is_not_used(monkeypatch):
    from mlcicd.serving import fastpath

    df = synthetic.generate(500, 3)
    x = df.drop(columns="churned")
    pipeline = training.build_pipeline(x, training.TrainParams(estimator="logistic_regression")).fit(
        x, df.churned
    )
    columns = [
        Column(c, "string" if c in ("contract", "payment_method", "region") else "double") for c in x.columns
    ]
    real = fastpath.compile_preprocess

    def off_by_a_little(p, c):
        transform, vocabulary = real(p, c)
        return (lambda cols: transform(cols) + 1e-9), vocabulary

    monkeypatch.setattr(fastpath, "compile_preprocess", off_by_a_little)
    scorer = Scorer(pipeline, columns)
    assert scorer.fast is None and "differ" in scorer.reason
    transform, vocabulary = compile_preprocess(pipeline, columns)
    probe = probe_rows(columns, vocabulary)
    assert set(vocabulary["region"]) <= set(probe["region"].tolist())  # every category is probed
    assert any(v is None for v in probe["contract"]) and np.isnan(probe["customer_age"]).any()


# -- a real server: two workers, concurrent callers -------------------------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    model, x = make_model_dir(root, rows=600, seed=5)
    port = free_port("127.0.0.1")
    env = {**__import__("os").environ, "MLCICD_SERVER_WORKERS": "2", "MLCICD_SERVER_MAX_CONCURRENCY": "16"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlcicd.serving",
            "--model-dir",
            str(root),
            "--port",
            str(port),
            "--prediction-log",
            str(root / "log"),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health")
        wait_for_both_workers(url, x, root / "log")
        yield url, x, model, root, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def worker_logs(log: Path) -> set[str]:
    """The ``<host>-<pid>`` of every process that has written a prediction log file."""
    return {p.name.split(".")[1] for p in log.glob("predictions-*.jsonl")}


def wait_for_both_workers(url: str, x, log: Path, timeout_s: float = 90) -> None:
    """/health answers as soon as the first worker is up; the second may still be loading its model
    (seen in CI: on the loaded machine every request of the test went to the first). Concurrent
    requests until each worker has served one, which its own log file shows."""
    body = {"dataframe_split": json.loads(x.head(3).to_json(orient="split", index=False))}
    deadline = time.monotonic() + timeout_s

    def call(_):
        return requests.post(f"{url}/invocations", json=body, timeout=30).status_code

    while len(worker_logs(log)) < 2:
        assert time.monotonic() < deadline, f"only {worker_logs(log)} served within {timeout_s:.0f} s"
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(call, range(16))) == {200}
        time.sleep(0.3)  # the log is written off the request path


def test_concurrent_callers_of_a_two_worker_server_each_get_their_own_predictions(two_workers):
    url, x, model, root, server_pid = two_workers
    expected = model.predict(x).tolist()
    chunks = [(i, 1 + i % 7) for i in range(0, 400, 8)]  # mixed row counts

    def call(chunk):
        start, n = chunk
        body = {"dataframe_split": json.loads(x.iloc[start : start + n].to_json(orient="split", index=False))}
        with requests.Session() as s:
            return start, n, s.post(f"{url}/invocations", json=body, timeout=30)

    def served() -> float:
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert "mlcicd_batch_rows_bucket" in metrics and "mlcicd_batch_requests_count" in metrics
        return sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("mlcicd_requests_total{") and 'status="200"' in line
        )

    before = served()  # the fixture's warm-up requests
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, chunks * 3))
    for start, n, r in results:
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected[start : start + n]
    assert served() - before == len(results)  # both workers' counts, merged
    # A log file per worker: no two processes append to one file, and no worker writes two.
    logged = {int(w.rsplit("-", 1)[1]) for w in worker_logs(root / "log")}
    assert len(logged) == 2 and logged <= {p.pid for p in psutil.Process(server_pid).children()}, logged


def test_health_answers_while_the_workers_are_flooded(two_workers):
    url, x, _, _, _ = two_workers
    big = {"dataframe_split": json.loads(x.head(500).to_json(orient="split", index=False))}
    stop = threading.Event()
    statuses: list[int] = []

    def flood():
        with requests.Session() as s:
            while not stop.is_set():
                statuses.append(s.post(f"{url}/invocations", json=big, timeout=60).status_code)

    threads = [threading.Thread(target=flood) for _ in range(24)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        health = [requests.get(f"{url}/health", timeout=5).status_code for _ in range(10)]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert health == [200] * 10
    assert (
        set(statuses) <= {200, 503} and 200 in statuses
    )  # beyond the concurrency limit: 503, never 5xx else


def test_beyond_the_concurrency_limit_callers_get_503_with_retry_after(tmp_path):
    model, x = make_model_dir(tmp_path, rows=400, seed=6)
    port = free_port("127.0.0.1")
    env = {
        **__import__("os").environ,
        "MLCICD_SERVER_WORKERS": "1",
        "MLCICD_SERVER_MAX_CONCURRENCY": "2",
        "MLCICD_SERVER_MAX_ROWS": "100000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(tmp_path), "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health")
        big = {
            "dataframe_split": json.loads(
                x.sample(20_000, replace=True, random_state=1).to_json(orient="split", index=False)
            )
        }

        def call(_):
            r = requests.post(f"{url}/invocations", json=big, timeout=120)
            return r.status_code, r.headers.get("Retry-After"), r.json()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(8)))
        refused = [r for r in results if r[0] == 503]
        assert refused and all(
            r[1] == "1" and "MLCICD_SERVER_MAX_CONCURRENCY" in r[2]["message"] for r in refused
        )
        assert {r[0] for r in results} == {200, 503}
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_body_that_never_arrives_is_answered_408_and_frees_its_place(tmp_path):
    import socket

    make_model_dir(tmp_path, rows=300, seed=8)
    port = free_port("127.0.0.1")
    env = {
        **__import__("os").environ,
        "MLCICD_SERVER_WORKERS": "1",
        "MLCICD_SERVER_TIMEOUT_S": "1",
        "MLCICD_SERVER_MAX_CONCURRENCY": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(tmp_path), "--port", str(port)], env=env
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            answer = b""
            while b"did not arrive" not in answer:  # headers and body may come in two segments
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive" in answer
        body = {"dataframe_records": [{"x": 1}]}
        r = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=10)
        assert r.status_code == 400  # its place is free again: a real answer, not 503
    finally:
        proc.terminate()
        proc.wait(20)
