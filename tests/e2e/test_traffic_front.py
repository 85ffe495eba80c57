"""The local target's traffic front under constant load: a real HAProxy, real model servers.

Four clients with keep-alive sessions send requests the whole time; a switch, a canary and a
shadow rollout run underneath. No request may fail, and every answer must come from a version
that the phase it was in flight during allowed (the ``X-Model-Version`` header says which).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from mlcicd import settings
from mlcicd.deploy import SmokeTest
from mlcicd.deploy.local import LocalProcessTarget
from mlcicd.ports import free_port
from mlcicd.release import Release
from mlcicd.serving.auth import auth_headers
from tests.helpers import Load, bundle_digest, make_model_dir

pytestmark = pytest.mark.e2e
MODEL = "front_m"


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    state = root / "state"
    versions = state / "deployments" / "local" / MODEL
    smokes = {}
    for v in ("1", "2", "3", "4", "5"):
        model, x = make_model_dir(versions / f"v{v}", rows=400, seed=int(v), version=v)
        smokes[v] = SmokeTest.of(x.head(5), model.predict(x.head(5)))
    port = free_port("127.0.0.1")
    saved = dict(os.environ)
    # With tokens on: the smoke tests, the analysis' scrapes and the shadow copies must all send them.
    os.environ.update(
        {
            "MLCICD_STATE_DIR": str(state),
            "MLCICD_LOCAL_PORT": str(port),
            "MLCICD_SERVER_TOKEN": "front-test-token",
            "MLCICD_SERVER_METRICS_TOKEN": "front-metrics",
        }
    )
    target = LocalProcessTarget(settings.load(), MODEL)
    payload = {"dataframe_split": json.loads(x.head(3).to_json(orient="split", index=False))}
    try:
        yield target, smokes, payload
    finally:
        target.stop()
        os.environ.clear()
        os.environ.update(saved)


def release(v: str) -> Release:
    digest = bundle_digest(settings.load().state_dir / "deployments" / "local" / MODEL / f"v{v}")
    return Release(MODEL, v, f"models:/{MODEL}/{v}", "-", f"front-{v}", model_digest=digest)


def test_switch_and_canary_under_load_drop_nothing(front):
    target, smokes, payload = front
    target.deploy(release("1"), smokes["1"])
    assert requests.get(f"{target.endpoint}/health", timeout=5).json()["model_version"] == "1"
    with Load(target.endpoint, payload) as load:
        load.mark("1")
        time.sleep(1)
        started = time.monotonic()
        target.stage(release("2"), smokes["2"], mode="switch")
        staged = time.monotonic()
        time.sleep(0.5)  # staged: the candidate takes no traffic yet
        load.mark("1", "2")
        target.promote(release("2"), smokes["2"])
        load.mark("2")
        switched = time.monotonic()
        time.sleep(1)
        target.stage(release("3"), smokes["3"], mode="canary")
        for percent in (10, 50):
            load.mark("2", "3")
            target.shift(percent)
            time.sleep(1.5)
        target.promote(release("3"), smokes["3"])
        load.mark("3")
        time.sleep(1)
    assert load.failures() == [], load.failures()[:5]
    assert load.misrouted() == [], load.misrouted()[:5]
    counts = load.versions()
    assert set(counts) == {"1", "2", "3"} and min(counts.values()) > 20, counts
    assert target.current().version == "3" and target.candidate() is None
    print(
        f"\n{len(load.results)} requests, versions {counts}; stage {staged - started:.2f} s, "
        f"promote {switched - staged - 0.5:.2f} s"
    )


def test_an_aborted_canary_leaves_the_stable_version_serving_everything(front):
    target, smokes, payload = front
    stable = target.current().version
    with Load(target.endpoint, payload) as load:
        load.mark(stable, "4")
        target.stage(release("4"), smokes["4"], mode="canary")
        target.shift(50)
        time.sleep(1.5)
        target.abort()
        load.mark(stable)
        time.sleep(1)
    assert load.failures() == [], load.failures()[:5]
    assert load.misrouted() == [], load.misrouted()[:5]
    assert "4" in load.versions()
    assert target.current().version == stable and target.candidate() is None
    after = [r for r in load.results if r[0] > load.phases[-1][0]]
    assert after and {r[3] for r in after} == {stable}


def test_shadow_copies_reach_the_candidate_and_callers_see_only_the_stable_answers(front):
    target, smokes, payload = front
    stable = target.current().version
    predictions = target.settings.predictions_for(MODEL)
    with Load(target.endpoint, payload, clients=2) as load:
        load.mark(stable)
        target.stage(release("5"), smokes["5"], mode="shadow")
        target.mirror(True)
        time.sleep(2)
        target.mirror(False)
        time.sleep(0.5)
    assert load.failures() == [] and load.misrouted() == []
    assert load.versions() == {stable: len(load.results)}
    server = target.candidate().detail["server"]
    assert requests.get(f"{server}/metrics", timeout=5).status_code == 401
    metrics = requests.get(f"{server}/metrics", headers=auth_headers(metrics=True), timeout=5).text
    shadowed = [
        line
        for line in metrics.splitlines()
        if line.startswith("mlcicd_requests_total") and 'traffic="shadow"' in line
    ]
    assert shadowed and float(shadowed[0].split()[-1]) > 10, shadowed
    time.sleep(1.5)  # the logger's flush
    shadow_ids = _ids(predictions / "shadow", "5")
    live_ids = _ids(predictions, stable)
    assert shadow_ids and shadow_ids <= live_ids and len(shadow_ids) > 10  # every copy has its live original
    assert not _ids(predictions, "5"), "a mirrored answer was logged as live traffic"
    target.abort()


def _ids(directory: Path, version: str) -> set[str]:
    ids = set()
    for path in directory.glob("predictions-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if str(record.get("model_version")) == version:
                ids.add(record["request_id"])
    return ids


@pytest.mark.parametrize("mirrored", [False, True], ids=["plain", "shadow-on"])
def test_a_client_whose_body_comes_seconds_after_its_headers_is_served(front, mirrored):
    """The front holds a POST until its body is in (the shadow copy needs it): a slow sender, or one
    starved of CPU on a busy machine, must get its answer, not a 408 (seen in CI with a 1 s wait)."""
    import socket
    from urllib.parse import urlparse

    target, smokes, payload = front
    if mirrored:
        target.stage(release("5"), smokes["5"], mode="shadow")
        target.mirror(True)
    try:
        body = json.dumps(payload).encode()
        url = urlparse(target.endpoint)
        with socket.create_connection((url.hostname, url.port), timeout=30) as s:
            head = (
                f"POST /invocations HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer front-test-token\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            s.sendall(head.encode())
            time.sleep(3)
            s.sendall(body)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        status = reply.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 200"), reply[:300]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"]
    finally:
        if mirrored:
            target.mirror(False)
            target.abort()


def test_a_canary_belongs_to_the_run_that_staged_it(front):
    """Two overlapping runs of one model (issue 28, finding 5): the second is refused with the run that
    holds the canary, and can neither judge, promote nor take out the first run's candidate."""
    from mlcicd import deploy
    from mlcicd.errors import DeployError
    from mlcicd.promotion import transaction as serving

    target, smokes, _ = front
    lease = settings.load().rollout_lease_minutes * 60
    target.stage(release("4"), smokes["4"], mode="canary")
    try:
        share = target.shift(10)
        staged = target.candidate()
        assert staged.detail["staged_by"] == "front-4" and staged.version == "4"
        held = deploy.held_by_another(staged, "second-run", lease)
        assert held and "v4 is staged by run front-4" in held
        with pytest.raises(DeployError, match="staged by run front-4"):
            serving.reconcile(settings.load(), "local", MODEL, repair=True, run_id="second-run")
        with pytest.raises(DeployError, match="v4 of run front-4, not this run's"):
            deploy.own_candidate(target.candidate(), "second-run")
        assert target.candidate().version == "4" and target.traffic()["weight"] == share  # untouched
        assert deploy.own_candidate(target.candidate(), "front-4", "4").version == "4"
        assert deploy.held_by_another(staged, "front-4", lease) is None  # its own run goes on
        # A run that died: after its lease, the next run may take the candidate out.
        assert (
            deploy.held_by_another(staged, "second-run", lease, now=staged.detail["staged_at"] + lease + 1)
            is None
        )
    finally:
        target.abort()


def test_a_promotion_that_fails_before_traffic_moves_leaves_the_front_and_its_state_agreeing(
    front, monkeypatch
):
    """Issue 28, finding 6: promote moved HAProxy's weights, then kept the candidate (a Docker API call
    on the docker target), then saved the state: a failure in between left the candidate serving 100 %
    while the state, and reconcile, named the old version. Now the fallible call comes first."""
    from mlcicd.deploy.haproxy import BACKEND
    from mlcicd.errors import DeployError

    target, smokes, payload = front
    if target.current() is None:  # run on its own
        target.deploy(release("1"), smokes["1"])
    stable = target.current().version
    target.stage(release("5"), smokes["5"], mode="switch")
    slot = target.candidate().detail["slot"]

    def docker_api_error(handle):
        raise RuntimeError("500 Server Error: the Docker engine is unavailable")

    monkeypatch.setattr(target, "_keep", docker_api_error)
    try:
        with pytest.raises(DeployError, match="could not be kept running .* no traffic moved"):
            target.promote(release("5"), smokes["5"])
        assert target.current().version == stable and target.candidate().version == "5"
        assert target.front.command(f"get weight {BACKEND}/{slot}").split()[0] == "0"
        for _ in range(10):
            answer = requests.post(
                f"{target.endpoint}/invocations", json=payload, headers=auth_headers(), timeout=10
            )
            assert answer.status_code == 200 and answer.headers["X-Model-Version"] == stable
    finally:
        target.abort()
