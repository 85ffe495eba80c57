from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mlcicd.serving import server as serving
from tests.helpers import make_model_dir


@pytest.fixture(scope="module")
def client_and_data(tmp_path_factory):
    """A model directory as deploy targets prepare it: an MLflow model beside release.json."""
    root = tmp_path_factory.mktemp("served")
    model, x = make_model_dir(root, rows=600, seed=9)
    return TestClient(serving.create_app(root)), x.head(4), model.predict(x.head(4)).tolist()


def test_health_and_version(client_and_data):
    client, _, _ = client_and_data
    assert client.get("/health").json() == {"status": "ok", "model_name": "m", "model_version": "7"}
    assert client.get("/version").json()["version"] == "7"


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_every_mlflow_payload_format_gives_the_offline_predictions(client_and_data, fmt):
    client, x, expected = client_and_data
    if fmt == "dataframe_split":
        body = {fmt: json.loads(x.to_json(orient="split", index=False))}
    else:
        body = {fmt: json.loads(x.to_json(orient="records"))}
    r = client.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "JSON list"),
        ({"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415, "application/json"),
        ({"json": {"rows": []}}, 400, "dataframe_split"),
        ({"json": {"dataframe_records": [{"customer_age": 3}]}}, 400, "Model is missing inputs"),
        ({"json": {"dataframe_records": [{"customer_age": "old"}]}}, 400, "customer_age"),
        ({"json": {"dataframe_records": []}}, 400, "no rows"),
    ],
    ids=["bad-json", "json-list", "csv", "unknown-format", "missing-columns", "wrong-type", "no-rows"],
)
def test_malformed_requests_get_a_4xx_with_a_message(client_and_data, kwargs, status, message):
    client, _, _ = client_and_data
    r = client.post("/invocations", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


def test_predictions_are_logged_and_counted(tmp_path, client_and_data):
    from datetime import UTC, datetime, timedelta

    from mlcicd.serving.predlog import read_window

    _, x, expected = client_and_data
    app = serving.create_app(client_and_data[0].app.state.model_dir, prediction_log=tmp_path / "log")
    client = TestClient(app)
    body = {"dataframe_split": json.loads(x.to_json(orient="split", index=False))}
    r = client.post("/invocations", json=body, headers={"X-Request-ID": "req-1"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "req-1"
    client.post("/invocations", json={"rows": []})
    app.state.prediction_log.close()
    now = datetime.now(UTC)
    window = read_window(tmp_path / "log", now - timedelta(minutes=5), now + timedelta(minutes=5))
    records = window.records
    assert window.malformed == 0 and [r["row"] for r in records] == [0, 1, 2, 3]
    assert [r["prediction"] for r in records] == expected and records[0]["request_id"] == "req-1"
    assert records[0]["model_version"] == "7" and set(records[0]["features"]) == set(x.columns)
    metrics = client.get("/metrics").text
    assert 'mlcicd_requests_total{model_version="7",status="200",traffic="live"} 1.0' in metrics
    assert 'mlcicd_requests_total{model_version="7",status="400",traffic="live"} 1.0' in metrics
    assert 'mlcicd_model_info{model_name="m",model_version="7"} 1.0' in metrics
    assert "mlcicd_request_seconds_bucket" in metrics and "mlcicd_predictions_total" in metrics


def test_a_failing_log_sink_drops_records_and_never_fails_requests(tmp_path, client_and_data):
    _, x, expected = client_and_data
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log folder should be")
    app = serving.create_app(client_and_data[0].app.state.model_dir, prediction_log=blocker)
    client = TestClient(app)
    body = {"dataframe_split": json.loads(x.to_json(orient="split", index=False))}
    for _ in range(3):
        assert client.post("/invocations", json=body).json() == {"predictions": expected}
    app.state.prediction_log.close()
    assert app.state.prediction_log.dropped == 12 and app.state.prediction_log.written == 0
    assert "mlcicd_prediction_log_dropped_total 12.0" in client.get("/metrics").text


def test_malformed_log_lines_are_counted_not_fatal(tmp_path):
    from datetime import datetime

    from mlcicd.serving.predlog import read_window

    (tmp_path / "predictions-20261122T10.jsonl").write_text(
        '{"request_id": "a", "row": 0, "time": "2026-11-22T10:00:00+00:00", "features": {"x": 1}, "prediction": 0}\n'
        "not json\n"
        '{"request_id": "b", "row": 0, "time": "yesterday", "features": {}, "prediction": 1}\n'
        '{"request_id": "c", "row": 0, "time": "2026-11-22T10:05:00+00:00", "features": [1], "prediction": 1}\n'
    )
    start, end = (
        datetime.fromisoformat("2026-11-22T09:00:00+00:00"),
        datetime.fromisoformat("2026-11-22T11:00:00+00:00"),
    )
    window = read_window(tmp_path, start, end)
    assert [r["request_id"] for r in window.records] == ["a"] and window.malformed == 3


def _log_lines(path, when, n, start=0, pad=0):
    import json

    with path.open("a") as fh:
        for i in range(start, start + n):
            rec = {
                "request_id": f"r{i}",
                "row": 0,
                "time": when.isoformat(),
                "model_name": "m",
                "model_version": "1",
                "features": {"i": i, "pad": "p" * pad},
                "prediction": 0,
            }
            fh.write(json.dumps(rec) + "\n")


def test_a_window_reads_only_the_files_of_its_hours_and_skips_oversized_lines(tmp_path):
    from datetime import UTC, datetime, timedelta

    from mlcicd.serving.predlog import MAX_LINE_BYTES, read_window

    t = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    _log_lines(tmp_path / "predictions-20261122T10.jsonl", t, 5)
    _log_lines(tmp_path / "predictions-20261122T10.jsonl", t, 2, start=5, pad=MAX_LINE_BYTES)
    (tmp_path / "predictions-20261122T12.jsonl").write_text("not json, and never opened\n")
    _log_lines(tmp_path / "predictions-20261122T08.jsonl", t - timedelta(hours=2), 3)
    window = read_window(tmp_path, t - timedelta(minutes=30), t + timedelta(minutes=30))
    assert [r["features"]["i"] for r in window.records] != [] and window.lines == 5
    assert sorted(r["features"]["i"] for r in window.records) == [0, 1, 2, 3, 4]
    assert window.oversized == 2 and window.malformed == 0 and window.parsed == 5


def test_a_large_window_is_counted_whole_and_parsed_as_a_bounded_uniform_sample(tmp_path):
    from datetime import UTC, datetime, timedelta

    from mlcicd.serving.predlog import read_window

    t = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    _log_lines(tmp_path / "predictions-20261122T10.jsonl", t, 20_000)
    window = read_window(tmp_path, t - timedelta(minutes=30), t + timedelta(minutes=30), sample=1000)
    seen = [r["features"]["i"] for r in window.records]
    assert window.lines == 20_000 and window.parsed == len(seen) == 1000 == len(set(seen))
    assert 8_000 < sum(seen) / len(seen) < 12_000  # uniform over the window, not its first lines
    assert max(seen) > 15_000 and min(seen) < 5_000
    small = read_window(tmp_path, t - timedelta(minutes=30), t + timedelta(minutes=30), budget_bytes=10_000)
    sizes = [len(line) for line in (tmp_path / "predictions-20261122T10.jsonl").open("rb")]
    # Parsing stops at the first line past the budget: between budget/longest and budget/shortest + 1 lines.
    assert small.lines == 20_000 and 10_000 // max(sizes) <= small.parsed <= 10_000 // min(sizes) + 1


def test_native_thread_pools_are_limited_to_one_thread_where_the_model_scores(client_and_data):
    """OpenMP threads spinning beside a busy process made predictions take seconds (see the server's doc).
    OpenMP's limit is per thread: it is read in the batcher's scoring thread, where predictions run."""
    from threadpoolctl import threadpool_info

    client, _, _ = client_and_data
    scoring_thread = client.app.state.batcher._executor
    pools = [
        p for p in scoring_thread.submit(threadpool_info).result() if p["user_api"] in ("openmp", "blas")
    ]
    assert any(p["user_api"] == "openmp" for p in pools), pools  # the model's OpenMP runtime is loaded
    assert {p["num_threads"] for p in pools} == {1}, pools
