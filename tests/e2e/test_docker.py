"""The model-server image and the docker target on a real Docker engine (``make test`` starts one).

The tests run in file order on one model of their own: the first run makes the champion's
container and the traffic front's (HAProxy, on the stable port), the next promotion happens under
constant load without a failed request, and the later ones check that a broken image, a failed
build or an unreachable registry leaves the champion's container serving and the champion unchanged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pandas as pd
import pytest
import requests

from mlcicd import registry
from mlcicd.cli.run import exit_code, run_pipeline
from mlcicd.deploy.docker import DockerTarget
from mlcicd.errors import ConfigError
from mlcicd.image.docker import docker_client
from mlcicd.settings import load
from tests.helpers import Load, load_registered, wait_for

pytestmark = pytest.mark.e2e
MODEL = "dock_churn"
CONF = {"model_name": MODEL, "deploy_target": "docker", "dataset_name": "dock_churn_data"}


@pytest.fixture(scope="module")
def engine():
    settings = load()
    try:
        client = docker_client(settings, None)
    except ConfigError as exc:
        pytest.fail(
            f"{exc}\n`make test` starts a private engine; by hand: make engine, then export what it prints"
        )
    base = os.environ.get("MLCICD_BASE_IMAGE", settings.base_image)
    if not client.images(name=base):
        from docker.errors import APIError

        try:  # an engine of your own that reaches a registry
            client.pull(base)
        except APIError:
            pass
    assert client.images(name=base), (
        f"the base image {base} is not on the engine and no registry can be reached here: "
        "run `make engine` (or tools/docker-engine.sh base) and set MLCICD_BASE_IMAGE"
    )
    DockerTarget(settings, MODEL).stop()  # containers left by an interrupted session
    with pytest.MonkeyPatch.context() as mp:
        from mlcicd.ports import free_port

        mp.setenv("MLCICD_DOCKER_PORT", str(free_port("127.0.0.1")))
        yield client
    DockerTarget(settings, MODEL).stop()


@pytest.fixture(scope="module")
def first(engine):
    return run_pipeline({**CONF, "synthetic_seed": 1})


@pytest.fixture(scope="module")
def sample():
    from mlcicd import synthetic

    return synthetic.generate(200, seed=98).drop(columns="churned")


def champion_version() -> str | None:
    ref = registry.champion(registry.client(load().tracking_uri), MODEL)
    return ref.version if ref else None


def offline(version: str, rows: pd.DataFrame) -> list:
    s = load()
    registry.client(s.tracking_uri)
    return load_registered(MODEL, version, s.tracking_uri).predict(rows).tolist()


def served(endpoint: str, rows: pd.DataFrame) -> tuple[str, list]:
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    r = requests.post(f"{endpoint}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    version = requests.get(f"{endpoint}/version", timeout=5).json()["version"]
    return version, r.json()["predictions"]


def model_containers(client, role: str = "server") -> list[dict]:
    labels = [f"io.mlcicd.model={MODEL}", f"io.mlcicd.role={role}"]
    return client.containers(all=True, filters={"label": labels})


def wait_healthy(client, container_id: str, timeout_s: float = 90) -> str:
    """The container's HEALTHCHECK status once it leaves 'starting'."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.inspect_container(container_id)["State"].get("Health", {}).get("Status")
        if status != "starting":
            return status
        time.sleep(1)
    return "starting"


def test_promoted_model_is_built_into_an_image_and_served_by_its_container(engine, first, sample):
    assert first["outcome"] == "promoted" and exit_code(first) == 0, first.get("error")
    image = first["image"]
    assert re.fullmatch(rf"{MODEL}:1-[0-9a-f]{{12}}", image["reference"]), image
    assert image["context_digest"].startswith(f"sha256:{image['reference'][-12:]}")
    info = engine.inspect_image(image["reference"])
    assert not any(t.endswith(":latest") for t in info["RepoTags"])
    assert info["Config"]["User"] == "10001:10001" and info["Config"]["Healthcheck"]["Test"]
    assert info["Config"]["Labels"]["io.mlcicd.model-version"] == "1"
    tags = registry.client(load().tracking_uri).get_model_version(MODEL, "1").tags
    assert tags["mlcicd.image"] == image["reference"] and tags["mlcicd.image_id"] == info["Id"]

    (container,) = [c for c in model_containers(engine) if c["State"] == "running"]
    assert container["Image"] == image["reference"]
    inspected = engine.inspect_container(container["Id"])
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    # Limits as the Kubernetes template's: memory (no swap beyond it), CPU, processes.
    host = inspected["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 1024 * 2**20
    assert host["NanoCpus"] == 10**9 and host["PidsLimit"] == 256
    assert wait_healthy(engine, container["Id"]) == "healthy"
    # HAProxy on the stable port; the server on a port of its own.
    (front,) = model_containers(engine, "front")
    assert front["State"] == "running" and front["Image"].startswith("mlcicd-front:")
    front_config = engine.inspect_container(front["Id"])["HostConfig"]
    assert front_config["ReadonlyRootfs"] is True and front_config["CapDrop"] == ["ALL"]

    endpoint = first["deployment"]["endpoint"]
    assert endpoint == f"http://127.0.0.1:{os.environ['MLCICD_DOCKER_PORT']}"
    assert served(endpoint, sample) == ("1", offline("1", sample))


def test_next_version_replaces_the_container_without_dropping_a_request(engine, first, sample):
    endpoint = first["deployment"]["endpoint"]
    body = {"dataframe_split": json.loads(sample.head(5).to_json(orient="split", index=False))}
    with Load(endpoint, body, clients=2, pause_s=0.02) as load:
        load.mark("1", "2")
        s = run_pipeline({**CONF, "synthetic_seed": 2, "max_degradation": 0.1})
    assert s["outcome"] == "promoted", s.get("error") or s["gate"]
    assert s["image"]["reference"].startswith(f"{MODEL}:2-") and not s["image"]["reused"]
    running = [c for c in model_containers(engine) if c["State"] == "running"]
    assert [c["Labels"]["io.mlcicd.model-version"] for c in running] == ["2"]
    assert len(model_containers(engine)) == 1  # the old container is removed, not just stopped
    assert served(s["deployment"]["endpoint"], sample) == ("2", offline("2", sample))
    assert load.failures() == [], load.failures()[:5]
    counts = load.versions()
    assert counts.get("1", 0) > 0 and counts.get("2", 0) > 0, counts  # served throughout, by both


def test_a_retried_deploy_of_the_serving_image_leaves_its_container_alone(engine, first, sample):
    from mlcicd.deploy import SmokeTest
    from mlcicd.release import Release

    target = DockerTarget(load(), MODEL)
    serving = target.current()
    (before,) = [c["Id"] for c in model_containers(engine) if c["State"] == "running"]
    rows = sample.head(20)
    release = Release(
        model_name=MODEL,
        version=serving.version,
        model_uri=f"models:/{MODEL}/{serving.version}",
        mlflow_run_id="-",
        airflow_run_id="retry",
        image=serving.detail["image"],
        model_digest=Release.from_dict(serving.detail["release"]).model_digest,
    )
    smoke = SmokeTest(
        payload={"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
        expected=offline(serving.version, rows),
    )
    assert target.deploy(release, smoke).version == serving.version
    assert [c["Id"] for c in model_containers(engine)] == [before]  # not restarted, no second server


@pytest.fixture
def local_registry(tmp_path):
    """A real registry (Distribution, Debian's docker-registry) on loopback."""
    from mlcicd.ports import free_port

    port = free_port("127.0.0.1")
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(f"http://127.0.0.1:{port}/v2/", timeout_s=20)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_image_is_pushed_to_the_connections_registry_and_its_digest_recorded(
    engine, first, sample, local_registry, monkeypatch
):
    host, port = local_registry.split(":")
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOCKER_DEFAULT", json.dumps({"conn_type": "docker", "host": host, "port": int(port)})
    )
    s = run_pipeline({**CONF, "synthetic_seed": 8, "max_degradation": 0.1})
    assert s["outcome"] == "promoted", s.get("error") or s["gate"]
    reference, repo_digest = s["image"]["reference"], s["image"]["repo_digest"]
    tag = reference.rsplit(":", 1)[1]
    assert reference.startswith(f"{local_registry}/{MODEL}:") and repo_digest.startswith(
        f"{local_registry}/{MODEL}@sha256:"
    )
    api = f"http://{local_registry}/v2/{MODEL}"
    assert tag in requests.get(f"{api}/tags/list", timeout=5).json()["tags"]
    manifest = requests.head(
        f"{api}/manifests/{tag}",
        timeout=5,
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert manifest.headers["Docker-Content-Digest"] == repo_digest.split("@", 1)[1]
    version = s["candidate"]["model_version"]
    tags = registry.client(load().tracking_uri).get_model_version(MODEL, version).tags
    assert tags["mlcicd.image_digest"] == repo_digest and tags["mlcicd.image"] == reference
    assert served(s["deployment"]["endpoint"], sample) == (version, offline(version, sample))


def derived_base(engine, tmp_path_factory, tag: str, run: str):
    """Build ``tag`` as the test base image plus one RUN step; yield it, then remove it."""
    base = os.environ.get("MLCICD_BASE_IMAGE", load().base_image)
    ctx = tmp_path_factory.mktemp(tag.split(":")[0])
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN {run}\n")
    out = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    yield tag
    engine.remove_image(tag, force=True)


@pytest.fixture(scope="module")
def broken_base(engine, tmp_path_factory):
    """A base image whose Python exits at start once the model is in the image: builds, never serves."""
    yield from derived_base(
        engine,
        tmp_path_factory,
        "mlcicd-test-broken-base:1",
        "printf '%s\\n' 'import os, sys' "
        '\'if os.path.exists("/opt/mlcicd/bundle/release.json"): sys.exit("broken on purpose")\' '
        "> /usr/lib/python3.11/sitecustomize.py",
    )


@pytest.fixture(scope="module")
def no_python_base(engine, tmp_path_factory):
    """A base image without python3: the Dockerfile's venv step fails."""
    yield from derived_base(
        engine,
        tmp_path_factory,
        "mlcicd-test-no-python-base:1",
        "rm -f /usr/bin/python3 /usr/bin/python3.11 /usr/local/bin/python",
    )


def assert_still_serving(engine, version: str, endpoint: str, sample) -> None:
    assert champion_version() == version
    containers = model_containers(engine)
    assert [(c["Labels"]["io.mlcicd.model-version"], c["State"]) for c in containers] == [
        (version, "running")
    ]
    assert served(endpoint, sample) == (version, offline(version, sample))


def test_broken_image_is_rolled_back_and_the_old_container_keeps_answering(
    engine, first, sample, broken_base, monkeypatch
):
    before = champion_version()
    endpoint = DockerTarget(load(), MODEL).current().endpoint
    monkeypatch.setenv("MLCICD_BASE_IMAGE", broken_base)
    s = run_pipeline({**CONF, "synthetic_seed": 5, "max_degradation": 0.1})
    assert s["gate"]["decision"] == "promoted" and s["stages"]["build_image"]["state"] == "success"
    assert s["outcome"] == "rolled_back" and exit_code(s) == 4, s["error"]
    assert s["error"]["stage"] == "deploy_model"
    message = s["error"]["message"]
    assert "failed its health check beside the serving version and was stopped" in message
    assert f"v{before} keeps serving" in message
    assert "broken on purpose" in message  # the container's own log is quoted
    new = s["candidate"]["model_version"]
    tags = registry.client(load().tracking_uri).get_model_version(MODEL, new).tags
    assert tags["mlcicd.deploy"] == "rolled_back"
    assert_still_serving(engine, before, endpoint, sample)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLCICD_BASE_IMAGE": "mlcicd-test-no-such-base:0"}, "set MLCICD_BASE_IMAGE"),
        (
            {
                "AIRFLOW_CONN_DOCKER_DEFAULT": json.dumps(
                    {"conn_type": "docker", "host": "127.0.0.1", "port": 1}
                )
            },
            "to the registry 127.0.0.1:1 failed",
        ),
        # A step of the Dockerfile fails: the base has no python3 for the venv step.
        ({"MLCICD_BASE_IMAGE": "no_python_base"}, "returned a non-zero code"),
    ],
    ids=["missing-base-image", "unreachable-registry", "failing-build-step"],
)
def test_build_or_push_failure_stops_before_deploy(
    engine, first, sample, monkeypatch, request, env, expected
):
    before = champion_version()
    endpoint = DockerTarget(load(), MODEL).current().endpoint
    for key, value in env.items():
        monkeypatch.setenv(key, request.getfixturevalue(value) if value == "no_python_base" else value)
    s = run_pipeline({**CONF, "synthetic_seed": 6, "max_degradation": 0.1})
    assert s["outcome"] == "failed" and exit_code(s) == 1
    assert s["error"]["stage"] == "build_image" and s["error"]["kind"] == "build", s["error"]
    assert expected in s["error"]["message"]
    assert "deploy_model" not in s["stages"]
    tags = registry.client(load().tracking_uri).get_model_version(MODEL, s["candidate"]["model_version"]).tags
    assert tags["mlcicd.image"] == "build_failed"
    assert_still_serving(engine, before, endpoint, sample)


def test_unknown_target_setting_fails_before_training(monkeypatch):
    monkeypatch.setenv("MLCICD_DEPLOY_TARGET", "dokcer")
    s = run_pipeline({"model_name": MODEL, "synthetic_seed": 7})
    # The run's first task (reconcile_serving) needs the target: it stops there, before any data is read.
    assert s["outcome"] == "failed" and s["error"]["stage"] == "reconcile_serving"
    assert "unknown deploy target 'dokcer'" in s["error"]["message"]
    assert "MLCICD_DEPLOY_TARGET" in s["error"]["message"]
    assert set(s["stages"]) == {"reconcile_serving"}
