"""The model server's optional tokens: with MLCICD_SERVER_TOKEN set, scoring, V2 and /version need
it (401 otherwise), the health probes stay open; /metrics has its own token. The smoke test and the
rollout analysis send the tokens from the same settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from mlcicd.deploy.base import SmokeTest, smoke_test
from mlcicd.ports import free_port
from mlcicd.serving import server as serving
from tests.helpers import make_model_dir, wait_for

TOKEN, METRICS = "scoring-token-0123456789", "metrics-token-9876543210"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("token")
    model, x = make_model_dir(root, rows=400, seed=3)
    return root, model, x


@pytest.fixture
def client(bundle, monkeypatch):
    monkeypatch.setenv("MLCICD_SERVER_TOKEN", TOKEN)
    return TestClient(serving.create_app(bundle[0]), raise_server_exceptions=False), bundle[2]


def payload(x) -> dict:
    return {"dataframe_split": json.loads(x.head(2).to_json(orient="split", index=False))}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"])
def test_scoring_without_the_token_is_401(client, auth):
    c, x = client
    headers = {"Authorization": auth} if auth else {}
    r = c.post("/invocations", json=payload(x), headers=headers)
    assert r.status_code == 401 and "MLCICD_SERVER_TOKEN" in r.json()["message"]
    assert r.headers["WWW-Authenticate"] == "Bearer"
    v2 = c.post("/v2/models/m/infer", json={"inputs": []}, headers=headers)
    assert v2.status_code == 401 and "MLCICD_SERVER_TOKEN" in v2.json()["error"]
    assert c.get("/version", headers=headers).status_code == 401


def test_with_the_token_everything_answers_and_health_is_open(client):
    c, x = client
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.post("/invocations", json=payload(x), headers=auth).status_code == 200
    assert c.post("/invocations", json=payload(x), headers={"X-Mlcicd-Token": TOKEN}).status_code == 200
    assert c.get("/version", headers=auth).json()["version"] == "7"
    for path in ("/health", "/v2/health/live", "/v2/health/ready"):
        assert c.get(path).status_code == 200, path
    assert c.get("/metrics").status_code == 200  # no metrics token set: open, for a scraper


def test_metrics_have_a_token_of_their_own(bundle, monkeypatch):
    monkeypatch.setenv("MLCICD_SERVER_TOKEN", TOKEN)
    monkeypatch.setenv("MLCICD_SERVER_METRICS_TOKEN", METRICS)  # read, as every setting, when the app starts
    c = TestClient(serving.create_app(bundle[0]), raise_server_exceptions=False)
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert c.get("/metrics", headers={"Authorization": f"Bearer {METRICS}"}).status_code == 200
    assert c.get("/metrics", headers={"X-Mlcicd-Token": METRICS}).status_code == 200  # through a pod proxy


def test_the_smoke_test_sends_the_token_a_real_server_asks_for(bundle, monkeypatch):
    root, model, x = bundle
    port = free_port("127.0.0.1")
    env = {**os.environ, "MLCICD_SERVER_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        smoke = SmokeTest.of(x.head(5), model.predict(x.head(5)))
        monkeypatch.delenv("MLCICD_SERVER_TOKEN", raising=False)
        assert any("401" in p for p in smoke_test(f"http://127.0.0.1:{port}", smoke))
        monkeypatch.setenv("MLCICD_SERVER_TOKEN", TOKEN)
        assert smoke_test(f"http://127.0.0.1:{port}", smoke) == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)
