"""The Dockerfiles (hadolint), the Compose file (the compose-spec schema) and the .env contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKERFILES = sorted((ROOT / "include" / "docker").glob("*.Dockerfile"))
COMPOSE = ROOT / "docker-compose.yaml"
CELERY = ROOT / "docker-compose.celery.yaml"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[d.name for d in DOCKERFILES])
def test_hadolint(dockerfile):
    out = hadolint(dockerfile)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_does_find_problems(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    out = hadolint(bad)
    assert out.returncode == 1 and "DL3007" in out.stdout and "DL3008" in out.stdout


def compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_spec(tmp_path):
    out = compose_schema(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    imagee: y\n")  # a typo in a key
    assert compose_schema(bad).returncode == 1


def test_compose_has_the_services_a_team_runs():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {
        "postgres",
        "mlflow",
        "registry",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= set(services)
    scheduler = services["airflow-scheduler"]
    assert any(v.endswith(":/var/run/docker.sock") for v in scheduler["volumes"])
    others = [n for n in services if n.startswith("airflow-") and n != "airflow-scheduler"]
    assert not any(
        v.endswith(":/var/run/docker.sock") for n in others for v in services[n].get("volumes", [])
    )
    assert any(v.endswith(":/opt/airflow/constraints.txt:ro") for v in scheduler["volumes"])
    assert "postgresql" in scheduler["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert (
        mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
        == "postgresql+psycopg2://mlcicd@postgres:5432/mlflow"
    )
    assert scheduler["environment"]["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")


def test_no_secret_on_a_command_line_and_everything_waits_for_the_check():
    """Command lines are world-readable (ps, /proc): secrets go in the environment only."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    secret_vars = re.compile(
        r"\$\{[A-Z_]*(PASSWORD|SECRET|FERNET|TOKEN)"
    )  # a value compose would interpolate
    for name, service in services.items():
        command = service.get("command", [])
        for arg in [command] if isinstance(command, str) else command:
            assert not secret_vars.search(arg) and not re.search(r"://[^/@\s]+:[^/@\s]+@", arg), (name, arg)
    for name in ("postgres", "registry", "airflow-init"):
        assert services[name]["depends_on"]["check-env"] == {"condition": "service_completed_successfully"}
    check = services["check-env"]
    assert check["network_mode"] == "none" and check["read_only"] is True
    state = [v for v in services["airflow-scheduler"]["volumes"] if "MLCICD_HOST_STATE_DIR" in v]
    assert state and all(":?" in v for v in state)  # no default folder: the user names one
    assert 'chown -R 50000:0 "$$MLCICD_STATE_DIR"' not in services["airflow-init"]["command"][1]


def celery_config(tmp_path: Path) -> dict:
    """The Celery overlay merged over the base file by Compose itself (the schema cannot read its !override)."""
    env = tmp_path / ".env"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text() + CELERY.read_text()))
    env.write_text(
        "".join(f"{k}=x\n" for k in sorted(required)) + f"MLCICD_HOST_STATE_DIR={tmp_path / 'state'}\n"
    )
    out = subprocess.run(
        [
            str(BIN / "docker-compose"),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env),
            "-f",
            str(COMPOSE),
            "-f",
            str(CELERY),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    merged = tmp_path / "merged.yaml"
    merged.write_text(out.stdout)
    schema = compose_schema(merged)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    return yaml.safe_load(out.stdout)


def test_celery_overlay_gives_the_docker_socket_to_the_deploy_worker_only(tmp_path):
    services = celery_config(tmp_path)["services"]
    airflow = [n for n in services if n.startswith("airflow-")]
    assert {"redis", "airflow-worker", "airflow-worker-deploy"} <= set(services)
    # Redis asks for a password on the network the model servers join, and check-env makes sure there is one.
    assert (
        services["redis"]["command"][0] == "--requirepass"
        and services["check-env"]["environment"]["CHECK_REDIS_PASSWORD"] == "1"
    )
    assert services["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith(
        "redis://:x@redis:"
    )
    for name in airflow:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        has_socket = any(v["target"] == "/var/run/docker.sock" for v in services[name].get("volumes", []))
        assert has_socket is (name == "airflow-worker-deploy"), name
    assert services["airflow-worker"]["command"] == ["celery", "worker", "--queues", "default"]
    assert services["airflow-worker-deploy"]["command"] == ["celery", "worker", "--queues", "deploy"]
    assert services["airflow-worker-deploy"]["environment"]["MLCICD_DEPLOY_QUEUE"] == "deploy"
    for name in ("airflow-scheduler", "airflow-worker", "airflow-worker-deploy"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        state = [v for v in services[name]["volumes"] if v["target"] == str(tmp_path / "state")]
        assert state, f"{name} lacks the state folder the tasks share"


def test_deploy_tasks_go_to_the_deploy_queue():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(ROOT / "dags"), safe_mode=False).dags["ml_retrain"]
    deploy = {
        "reconcile_serving",
        "build_image",
        "deploy_model",
        "analyze_rollout",
        "promote_champion",
        "abort_rollout",
    }
    for task in dag.tasks:
        assert (task.queue == "deploy") is (task.task_id in deploy), (task.task_id, task.queue)


def test_every_image_can_be_overridden_and_none_is_latest():
    text = COMPOSE.read_text() + CELERY.read_text()
    images = re.findall(r"^\s*image:\s*(.+)$", text, flags=re.M)
    assert images and all(re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-[^}]+\}", i.strip()) for i in images), images
    for path in [COMPOSE, CELERY, ROOT / ".env.example", *DOCKERFILES]:
        assert ":latest" not in path.read_text(), path


def test_env_example_defines_every_required_variable_and_env_is_ignored():
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if re.match(r"[A-Z_]+=", line)
    )
    assert required and required <= set(example), required - set(example)
    used = set(re.findall(r"\$\{([A-Z_]+)[:}]", COMPOSE.read_text() + CELERY.read_text()))
    assert set(example) <= used, set(example) - used  # no stale variable in the example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_model_server_image_is_non_root_with_healthcheck_and_a_base_arg():
    text = (ROOT / "include" / "docker" / "model-server.Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11[\w.-]*-slim", text, flags=re.M)
    assert re.search(r"^USER 10001", text, flags=re.M) and "HEALTHCHECK" in text
