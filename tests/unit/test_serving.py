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
    records, malformed = read_window(tmp_path / "log", now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert malformed == 0 and [r["row"] for r in records] == [0, 1, 2, 3]
    assert [r["prediction"] for r in records] == expected and records[0]["request_id"] == "req-1"
    assert records[0]["model_version"] == "7" and set(records[0]["features"]) == set(x.columns)
    metrics = client.get("/metrics").text
    assert 'mlcicd_requests_total{status="200"} 1.0' in metrics
    assert 'mlcicd_requests_total{status="400"} 1.0' in metrics
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
    assert "mlcicd_prediction_log_dropped 12.0" in client.get("/metrics").text


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
    records, malformed = read_window(tmp_path, start, end)
    assert [r["request_id"] for r in records] == ["a"] and malformed == 3
