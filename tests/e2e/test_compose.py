"""The Compose stack, run for real: ``docker compose up`` of docker-compose.yaml (LocalExecutor), then of
the Celery overlay, each promoting a model that a CI job triggered through Airflow's REST API.

What runs (tests/compose_stack.py): every service of the Compose file on locally built stand-in images,
on a Docker engine in its own network namespace; the docker target builds the model-server image on
that engine, pushes it to the stack's registry and serves it on the stack's network, where it answers.
"""

from __future__ import annotations

import json
import time

import pytest

from mlcicd import synthetic
from tests import compose_stack as cs

REASON = cs.unavailable()
# In `make test`, a pytest worker of its own (tests/conftest.py).
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no Docker engine for Compose: {REASON}")

# A fixed batch. The Celery run adds a seeded search, whose candidates spread over the default queue's
# workers (the search itself is tested in tests/e2e/test_search.py; here it costs 6 task processes). Its
# winner (logistic regression) is 0.002 below the champion's ROC AUC, with the lower bound of the
# interval at -0.0099: the gate's default 0.01 is loosened to the installation's ceiling, so that a
# promotion is sure.
ROWS = ("dataset_uri=synthetic:", "synthetic_rows=3000", "synthetic_seed=3")
SEARCH = ("search=quick", "max_degradation=0.05")
MODEL = "churn"
MODEL_PORT = 5200


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    progress: list[str] = []
    started = time.monotonic()
    cs.build(progress)
    cs.start_engine()
    try:
        cs.transfer(progress)
        work = tmp_path_factory.mktemp("compose")
        env_file = work / ".env"
        stack = cs.Stack(env_file, cs.write_env(env_file, work / "state"))
        stack.compose("down", "-v", "--remove-orphans", check=False)  # left by an interrupted run
        up = time.monotonic()
        stack.up()
        progress.append(f"stack up (LocalExecutor) in {time.monotonic() - up:.1f} s")
        yield stack
    finally:
        if "stack" in locals():
            stack.remove_model_containers()
            stack.files = cs.CELERY  # down with every service either file made
            stack.compose("down", "-v", "--remove-orphans", check=False)
        cs.stop_engine()
        print(
            "\n".join(progress + [f"Compose test set-up and tear-down: {time.monotonic() - started:.0f} s"])
        )


def served(stack: cs.Stack) -> tuple[str, list]:
    """The version the stack's model port serves, and its answer to two rows."""
    token = stack.env["MLCICD_SERVER_TOKEN"]
    url = f"http://127.0.0.1:{MODEL_PORT}"
    status, version = stack.http("GET", f"{url}/version", token=token)
    assert status == 200, version
    sample = synthetic.generate(50, seed=5).drop(columns=[synthetic.TARGET]).head(2)
    rows = {"dataframe_records": json.loads(sample.to_json(orient="records"))}
    status, answer = stack.http("POST", f"{url}/invocations", rows, token=token)
    assert status == 200, answer
    assert stack.http("POST", f"{url}/invocations", rows)[0] == 401  # the stack's server token is enforced
    return str(version["version"]), answer["predictions"]


def registry_tags(stack: cs.Stack) -> list[str]:
    status, catalog = stack.http("GET", "http://127.0.0.1:5001/v2/_catalog")
    assert status == 200, catalog
    repos = [r for r in catalog["repositories"] if MODEL in r]
    assert repos, f"no image of {MODEL} in the stack's registry: {catalog}"
    status, tags = stack.http("GET", f"http://127.0.0.1:5001/v2/{repos[0]}/tags/list")
    assert status == 200, tags
    return tags["tags"]


def test_compose_stack_promotes_and_serves_a_model_triggered_through_the_rest_api(stack):
    code, summary, err = stack.trigger(*ROWS, sha="compose-local")
    assert code == 0, f"exit {code}: {summary}\n{err[-6000:]}"
    assert summary["outcome"] == "promoted" and str(summary["champion_version"]) == "1", summary
    # The image of version 1 was pushed to the stack's registry, and the docker target serves it there.
    assert any(t.startswith("1-") for t in registry_tags(stack))
    version, predictions = served(stack)
    assert version == "1" and len(predictions) == 2
    servers = stack.containers("io.mlcicd.role=server")
    assert len(servers) == 1 and servers[0]["Image"].startswith("localhost:5001/"), servers


def test_celery_overlay_runs_the_deploy_tasks_on_the_worker_that_holds_the_docker_socket(stack):
    stack.files = cs.CELERY
    stack.up("--scale", "airflow-worker=2")
    code, summary, err = stack.trigger(*ROWS, *SEARCH, sha="compose-celery")
    assert code == 0, f"exit {code}: {summary}\n{err[-6000:]}"
    assert summary["outcome"] == "promoted" and str(summary["champion_version"]) == "2", summary

    (deploy_host,), default_hosts = (
        stack.hostnames("airflow-worker-deploy"),
        stack.hostnames("airflow-worker"),
    )
    assert len(default_hosts) == 2, default_hosts
    tis = [ti for ti in task_instances(stack, summary["run_id"]) if ti["state"] == "success"]
    ran = {ti["task_id"]: (ti["queue"], ti["hostname"]) for ti in tis if ti["map_index"] == -1}
    for task in ("reconcile_serving", "build_image", "deploy_model", "analyze_rollout", "promote_champion"):
        assert ran[task] == ("deploy", deploy_host), (task, ran)
    for task in (
        "ingest_data",
        "validate_data",
        "plan_search",
        "select_candidate",
        "train_model",
        "evaluate_candidate",
        "register_model",
    ):
        assert ran[task][0] == "default" and ran[task][1] in default_hosts, (task, ran)
    # The search's candidates, one mapped task instance each, ran on both default workers.
    candidates = [(ti["queue"], ti["hostname"]) for ti in tis if ti["task_id"] == "train_candidate"]
    assert len(candidates) == len(summary["search"]["candidates"]) == 6, candidates
    assert {q for q, _ in candidates} == {"default"} and {h for _, h in candidates} == default_hosts, (
        candidates
    )
    # Only the deploy worker holds the engine's socket; the scheduler no longer does.
    for service, has_socket in (
        ("airflow-worker-deploy", True),
        ("airflow-worker", False),
        ("airflow-scheduler", False),
    ):
        # The answer in the output: `compose exec -T` (2.40.3) exits 0 whatever the command returned.
        probe = stack.compose("exec", "-T", service, "sh", "-c", "test -S /var/run/docker.sock; echo $?")
        assert probe.stdout.strip() == ("0" if has_socket else "1"), (service, probe.stdout, probe.stderr)
    version, predictions = served(stack)
    assert version == "2" and len(predictions) == 2
    assert any(t.startswith("2-") for t in registry_tags(stack))


def task_instances(stack: cs.Stack, run_id: str) -> list[dict]:
    """The run's task instances from Airflow's REST API (as admin, with a token from /auth/token)."""
    status, token = stack.http(
        "POST",
        "http://127.0.0.1:8080/auth/token",
        {"username": stack.env["AIRFLOW_ADMIN_USER"], "password": stack.env["AIRFLOW_ADMIN_PASSWORD"]},
    )
    assert status in (200, 201), token
    url = f"http://127.0.0.1:8080/api/v2/dags/ml_retrain/dagRuns/{run_id}/taskInstances?limit=100"
    status, body = stack.http("GET", url, token=token["access_token"])
    assert status == 200, body
    return body["task_instances"]
