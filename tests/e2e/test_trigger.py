"""The CI trigger client against a real Airflow: API server, scheduler and DAG processor on loopback.

SQLite metadata DB, LocalExecutor with small parallelism; every task runs in its own worker
process, as in production. The server is stopped with SIGINT (see STACK_NOTES).

The client runs from its own venv, installed as docs/ci.md and the CI templates install it
(``requirements-trigger.txt`` and the project with ``--no-deps``): no Airflow, no ML stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from mlcicd.dev import server as devserver
from tests.helpers import SERVER_ENV

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e
PASSWORD = "trigger-test-password"  # pragma: allowlist secret
APPROVAL_TIMEOUT_S = 45


# What a CI job's client must not import: none of it is in requirements-trigger.txt.
HEAVY = ("airflow", "sklearn", "pandas", "numpy", "mlflow", "great_expectations", "fastapi", "requests")


@pytest.fixture(scope="module")
def client_python(tmp_path_factory) -> str:
    """A fresh Python 3.11 venv with the client installed the way .github/workflows/retrain.yml does."""
    venv = tmp_path_factory.mktemp("trigger-client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # --without-pip above and ensurepip here: the venv gets its own pip, not the test venv's packages.
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "ensurepip", "--upgrade"], check=True, capture_output=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for args in (["-r", str(ROOT / "requirements-trigger.txt")], ["--no-deps", "-e", str(ROOT)]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return python


def test_the_client_installs_light_and_imports_no_heavy_stack(client_python):
    """`trigger --help`, a trigger and an approval that reach no server: none of them imports Airflow,
    scikit-learn, pandas, MLflow, GX or FastAPI (the light install has none of them)."""
    probe = f"""
import json, sys
from mlcicd.cli import main
codes = []
for argv in (["trigger", "--help"], ["trigger", "--url", "http://127.0.0.1:9", "--conf", "synthetic_seed=1"],
             ["approve", "some-run", "--url", "http://127.0.0.1:9"]):
    try:
        main(argv)
    except SystemExit as exc:
        codes.append(exc.code)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"codes": codes, "loaded": loaded}}))
"""
    env = {"PATH": "/usr/bin:/bin", "MLCICD_AIRFLOW_TOKEN": "t", "HOME": str(ROOT)}
    out = subprocess.run([client_python, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 1, 1], "loaded": []}, (result, out.stderr[-2000:])
    assert "cannot reach Airflow" in out.stderr or "lost the connection" in out.stderr, out.stderr[-2000:]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, client_python):
    root = tmp_path_factory.mktemp("airflow-server")
    extra = {
        "MLCICD_STATE_DIR": str(root / "state"),
        "MLCICD_LOCAL_PORT": str(devserver.free_port()),
        "MLCICD_RETRAIN_SCHEDULE": "none",
        # The approval tests: a short timeout, checked by the scheduler every 2 s (default 15 s).
        "MLCICD_APPROVAL_TIMEOUT_MINUTES": str(APPROVAL_TIMEOUT_S / 60),
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
        **SERVER_ENV,
    }
    server = devserver.start(root / "home", password=PASSWORD, extra_env=extra)
    try:
        yield {"url": server.url, "env": server.env, "root": root, "server": server, "client": client_python}
    finally:
        devserver.stop(server)
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=server.env, capture_output=True)


def trigger(airflow, *args: str, user: str = "admin", password: str = PASSWORD, url: str | None = None):
    env = {**airflow["env"], "MLCICD_AIRFLOW_USERNAME": user, "MLCICD_AIRFLOW_PASSWORD": password}
    out = subprocess.run(
        [
            airflow["client"],
            "-m",
            "mlcicd",
            "trigger",
            "--url",
            url or airflow["url"],
            "--json",
            "--poll",
            "1",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-2000:]
    return out.returncode, json.loads(lines[-1]), out.stderr


def run_count(airflow) -> int:
    return airflow["server"].get("/api/v2/dags/ml_retrain/dagRuns")["total_entries"]


def links(airflow, run_id: str, task_id: str) -> dict[str, str]:
    from urllib.parse import quote

    path = f"/api/v2/dags/ml_retrain/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    return airflow["server"].get(path)["extra_links"]


def test_wrong_credentials(airflow):
    code, s, _ = trigger(airflow, "--sha", "a" * 40, password="wrong")
    assert code == 1 and "refused the credentials" in s["error"]["message"]


def test_unreachable_server_gives_up_after_bounded_retries(airflow):
    started = time.monotonic()
    code, s, _ = trigger(airflow, "--sha", "a" * 40, url=f"http://127.0.0.1:{devserver.free_port()}")
    assert (
        code == 1
        and "cannot reach Airflow" in s["error"]["message"]
        and "after 4 attempts" in s["error"]["message"]
    )
    assert time.monotonic() - started < 60


def test_unknown_dag(airflow):
    code, s, _ = trigger(airflow, "--sha", "a" * 40, "--dag", "no_such_dag")
    assert (
        code == 1
        and "unknown DAG 'no_such_dag'" in s["error"]["message"]
        and "ml_retrain" in s["error"]["message"]
    )


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("min_roc_auc=2", "min_roc_auc=2 is invalid"),
        ("estimator=svm", 'estimator="svm" is invalid'),
        ("typo=1", "unknown param(s) typo"),
    ],
)
def test_conf_that_fails_the_params_schema_is_not_sent(airflow, conf, message):
    code, s, _ = trigger(airflow, "--sha", "a" * 40, "--conf", conf, "--unpause")
    assert code == 2 and message in s["error"]["message"]
    assert run_count(airflow) == 0


def test_paused_dag_is_not_unpaused_unless_asked(airflow):
    code, s, _ = trigger(airflow, "--sha", "a" * 40, "--conf", "synthetic_seed=1")
    assert code == 1 and "is paused" in s["error"]["message"] and "--unpause" in s["error"]["message"]
    assert run_count(airflow) == 0


def test_promotion(airflow):
    code, s, progress = trigger(
        airflow, "--sha", "a" * 40, "--conf", "synthetic_seed=1", "--wait", "--unpause"
    )
    assert code == 0, (s.get("error"), s)  # the error first: the summary is long
    assert s["outcome"] == "promoted" and s["champion_version"] == "1"
    assert s["candidate"]["model_version"] == "1" and s["candidate"]["mlflow_run_id"]
    assert s["gate"]["reasons"] and s["run_id"].startswith("ci__aaaaaaaaaaaa__")
    assert "promote_champion     success" in progress
    assert requests.get(f"{s['deployment']['endpoint']}/version", timeout=5).json()["version"] == "1"
    for task in ("train_model", "evaluate_candidate"):
        assert links(airflow, s["run_id"], task)["MLflow run"].endswith(
            f"/runs/{s['candidate']['mlflow_run_id']}"
        )
    report = links(airflow, s["run_id"], "validate_data")["Data validation report"]
    assert report.startswith(airflow["url"] + "/mlcicd/data-docs/validations/synthetic_churn/")
    # Behind Airflow's login: refused without a token or with a forged one, served with the UI's
    # cookie or a bearer token, sandboxed.
    token = airflow["server"].token()
    assert requests.get(report, timeout=10).status_code == 401
    assert requests.get(report, headers={"Authorization": "Bearer x.y.z"}, timeout=10).status_code in (
        401,
        403,
    )
    page = requests.get(report, cookies={"_token": token}, timeout=10)
    assert page.status_code == 200 and "synthetic_churn" in page.text
    assert "sandbox allow-scripts" in page.headers["Content-Security-Policy"]
    assert "https://cdn" not in page.text and "https://unpkg" not in page.text
    asset = requests.get(f"{airflow['url']}/mlcicd/data-docs/_assets/vega.min.js", timeout=10)  # no cookie
    assert asset.status_code == 200 and asset.headers["Access-Control-Allow-Origin"] == "*"
    shift = links(airflow, s["run_id"], "validate_data")["Data shift report"]
    assert shift.startswith(airflow["url"] + "/mlcicd/data-docs/validations/synthetic_churn/profile/")
    page = requests.get(shift, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert page.status_code == 200 and "synthetic_churn.profile" in page.text


def test_retriggering_the_same_commit_attaches(airflow):
    before = run_count(airflow)
    code, s, progress = trigger(airflow, "--sha", "a" * 40, "--conf", "synthetic_seed=1", "--wait")
    assert code == 0 and s["outcome"] == "promoted" and "attaching to" in progress
    assert run_count(airflow) == before


def test_gate_rejection_has_its_own_exit_code(airflow):
    weak = ["--conf", "estimator=random_forest", "--conf", "n_estimators=1", "--conf", "max_depth=1"]
    code, s, _ = trigger(airflow, "--sha", "b" * 40, *weak, "--wait")
    assert code == 5 and s["outcome"] == "rejected" and s["champion_version"] == "1"
    assert any(r.startswith("FAIL") for r in s["gate"]["reasons"])
    code, s, _ = trigger(airflow, "--sha", "b" * 40, *weak, "--wait", "--accept-rejection")
    assert code == 0 and s["outcome"] == "rejected"


def test_data_validation_failure_has_its_own_exit_code(airflow):
    code, s, _ = trigger(airflow, "--sha", "c" * 40, "--conf", "synthetic_corruption=nulls", "--wait")
    assert code == 3 and s["outcome"] == "data_rejected"
    assert (
        s["error"]["stage"] == "validate_data"
        and "expect_column_values_to_not_be_null" in s["error"]["message"]
    )
    assert s["tasks"]["train_model"] == "upstream_failed"
    report = links(airflow, s["run_id"], "validate_data")["Data validation report"]
    assert requests.get(report, timeout=10).status_code == 401  # behind the login
    page = requests.get(report, cookies={"_token": airflow["server"].token()}, timeout=10)
    assert page.status_code == 200 and "monthly_charges" in page.text and "null" in page.text


def answer(airflow, verb: str, run_id: str) -> tuple[int, dict]:
    env = {**airflow["env"], "MLCICD_AIRFLOW_USERNAME": "admin", "MLCICD_AIRFLOW_PASSWORD": PASSWORD}
    out = subprocess.run(
        [airflow["client"], "-m", "mlcicd", verb, run_id, "--url", airflow["url"], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-2000:]
    return out.returncode, json.loads(lines[-1])


def approval_state(airflow, run_id: str) -> str | None:
    from urllib.parse import quote

    path = f"/api/v2/dags/ml_retrain/dagRuns/{quote(run_id, safe='')}/taskInstances/approve_rollout"
    return airflow["server"].get(path)["state"]


def wait_for_approval(airflow, run_id: str, timeout_s: float = 600, poll_s: float = 1) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := approval_state(airflow, run_id)) != "awaiting_input":
        assert state in (None, "scheduled", "queued", "running", "deferred"), f"approve_rollout is {state}"
        assert time.monotonic() < deadline, "approve_rollout never asked"
        time.sleep(poll_s)


def answer_the_moment_it_asks(airflow, run_id: str, option: str, monkeypatch) -> Any:
    """Answer through mlcicd's client (the REST call the UI makes), as soon as the task waits: the
    scheduler has then usually not yet read the parked worker's exit, the race mlcicd.plugin.resume_race
    guards against (without the guard, 3 answers in 4 failed the task)."""
    from mlcicd.client.approvals import answer as answer_approval
    from mlcicd.client.trigger import connect

    monkeypatch.setenv("MLCICD_AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("MLCICD_AIRFLOW_PASSWORD", PASSWORD)
    client = connect(airflow["url"])  # logged in beforehand: nothing stands between the ask and the answer
    wait_for_approval(airflow, run_id, poll_s=0.02)
    return answer_approval(client, "ml_retrain", run_id, option)


def served(airflow) -> str:
    """The version the local target's stable endpoint serves."""
    port = airflow["env"]["MLCICD_LOCAL_PORT"]
    return requests.get(f"http://127.0.0.1:{port}/version", timeout=5).json()["version"]


def serving_version(s: dict) -> str:
    return requests.get(f"{s['deployment']['endpoint']}/version", timeout=5).json()["version"]


def test_approval_waits_for_a_human_and_approve_promotes(airflow, monkeypatch):
    conf = ["--conf", "synthetic_seed=11", "--conf", "approval=true", "--conf", "max_degradation=0.1"]
    code, s, _ = trigger(airflow, "--sha", "e" * 40, *conf)
    assert code == 0 and s["state"] == "started"
    run_id = s["run_id"]
    code, early = answer(airflow, "approve", run_id)  # before the run reaches approve_rollout
    assert code == 2 and "has no approval waiting" in early["error"]["message"]
    before = served(airflow)
    done = answer_the_moment_it_asks(airflow, run_id, "Approve", monkeypatch)
    assert done.chosen_options == ["Approve"] and done.responded_by.name == "admin", done
    code, again = answer(airflow, "reject", run_id)
    assert code == 1 and "already answered: Approve, by admin" in again["error"]["message"]
    code, s, progress = trigger(airflow, "--sha", "e" * 40, *conf, "--wait")
    assert code == 0 and s["outcome"] == "promoted", (s.get("error"), s)
    assert s["tasks"]["approve_rollout"] == "success" and s["tasks"]["abort_rollout"] == "skipped"
    assert serving_version(s) == s["champion_version"] == s["candidate"]["model_version"]
    assert before != s["champion_version"]


def test_reject_and_no_answer_take_the_candidate_out(airflow):
    champion = served(airflow)
    outcomes = {}
    for sha, answered in (("f" * 40, "reject"), ("0" * 40, None)):
        conf = [
            "--conf",
            f"synthetic_seed={12 if answered else 13}",
            "--conf",
            "approval=true",
            "--conf",
            "max_degradation=0.1",
        ]
        code, s, _ = trigger(airflow, "--sha", sha, *conf)
        wait_for_approval(airflow, s["run_id"])
        asked = time.monotonic()
        if answered:  # through the CLI, as a CI job would
            code, done = answer(airflow, answered, s["run_id"])
            assert code == 0 and done["decision"] == "Reject" and done["by"] == "admin", done
        code, s, _ = trigger(airflow, "--sha", sha, *conf, "--wait")
        outcomes[answered] = (code, s, time.monotonic() - asked)
    for answered, (code, s, waited) in outcomes.items():
        assert code == 4 and s["outcome"] == "rolled_back", (s.get("error"), s)
        assert s["error"]["stage"] == "abort_rollout" and s["champion_version"] == champion
        assert serving_version(s) == champion
        who = "admin" if answered else "nobody (the approval timed out)"
        assert f"the rollout was rejected by {who}" in s["error"]["message"]
        if answered is None:
            assert waited >= APPROVAL_TIMEOUT_S - 5  # the default (Reject) applied at the timeout, not before


def test_timeout(airflow):
    code, s, _ = trigger(airflow, "--sha", "d" * 40, "--conf", "synthetic_seed=4", "--wait", "--timeout", "1")
    assert code == 1 and "timed out after 1 s" in s["error"]["message"]
