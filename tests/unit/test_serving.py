from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mlcicd import serving, training


@pytest.fixture(scope="module")
def client_and_data(tmp_path_factory):
    """A model directory as deploy targets prepare it: an MLflow model beside release.json."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlcicd import synthetic

    df = synthetic.generate(600, 9)
    x, y = df.drop(columns="churned"), df.churned
    model = training.build_pipeline(x, training.TrainParams(estimator="logistic_regression")).fit(x, y)
    root = tmp_path_factory.mktemp("served")
    mlflow.sklearn.save_model(
        model,
        str(root / "model"),
        signature=infer_signature(x.head(), model.predict(x.head())),
        skops_trusted_types=training.trusted_types(model),
        pip_requirements=training.pip_requirements(),
    )
    (root / "release.json").write_text(json.dumps({"model_name": "m", "version": "7"}))
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
