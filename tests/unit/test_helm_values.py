"""The values for the official Airflow Helm chart (include/k8s/airflow-values.yaml) and the RBAC beside them.

Always: the values name only settings that exist, send the deploy queue's tasks somewhere, and the
RBAC manifests are valid Kubernetes objects. With ``helm`` on PATH and the chart at hand
(``MLCICD_AIRFLOW_CHART``: a chart folder or .tgz, or ``apache-airflow/airflow`` from a configured
repo), ``helm lint`` (which checks the chart's values.schema.json) and ``helm template`` run, and every
rendered manifest is validated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from mlcicd import settings
from tests.unit.test_k8s import K8S_VERSION

K8S = settings.PROJECT_ROOT / "include" / "k8s"
VALUES = K8S / "airflow-values.yaml"
CHART_VERSION = "1.22.0"


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_values_set_only_settings_that_exist():
    source = (settings.PROJECT_ROOT / "include" / "mlcicd" / "settings.py").read_text()
    known = set(re.findall(r'"(MLCICD_[A-Z0-9_]+)"', source)) | {
        "MLCICD_SERVER_TOKEN",
        "MLCICD_SERVER_METRICS_TOKEN",
    }
    v = values()
    named = {e["name"] for e in v["env"]} | {s["envName"] for s in v["secret"]}
    unknown = {n for n in named if n.startswith("MLCICD_")} - known
    assert not unknown, f"the values set settings that settings.py does not read: {sorted(unknown)}"
    assert {"MLCICD_DEPLOY_TARGET", "MLCICD_STATE_DIR", "MLCICD_TRACKING_URI"} <= named


def test_values_run_the_baked_image_on_the_kubernetes_target():
    v = values()
    env = {e["name"]: e.get("value") for e in v["env"]}
    assert env["MLCICD_DEPLOY_TARGET"] == "kubernetes" and env["MLCICD_IMAGE_BUILDER"] == "kaniko"
    assert v["dags"]["gitSync"]["enabled"] is False and v["dags"]["persistence"]["enabled"] is False
    assert (
        v["airflowVersion"]
        == settings.PROJECT_ROOT.joinpath("requirements.txt")
        .read_text()
        .split("apache-airflow==")[1]
        .split()[0]
    )
    state = {m["mountPath"] for m in v["volumeMounts"]}
    assert env["MLCICD_STATE_DIR"] in state  # every pod, task pods included, shares the state folder
    assert (
        v["rbac"]["create"] and v["allowPodLaunching"]
    )  # the deploy and Kaniko pods are launched from tasks
    # The Celery option must make workers consume the deploy queue: say so where the executor is chosen.
    assert 'queue: "default,deploy"' in VALUES.read_text()


def test_rbac_beside_the_values_is_valid_and_binds_the_charts_worker_account():
    docs = [d for d in yaml.safe_load_all((K8S / "airflow-rbac.yaml").read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    subjects = {s["name"] for b in bindings for s in b["subjects"]}
    assert "mlcicd-airflow-worker" in subjects
    airflow = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "mlcicd-airflow")
    assert any("pods" in r["resources"] and "create" in r["verbs"] for r in airflow["rules"])  # launches pods


def chart() -> str | None:
    return os.environ.get("MLCICD_AIRFLOW_CHART")


@pytest.mark.skipif(
    not shutil.which("helm") or not chart(),
    reason="needs helm on PATH and MLCICD_AIRFLOW_CHART (the chart's folder or .tgz, or "
    "apache-airflow/airflow from a configured repo); neither can be downloaded here",
)
def test_chart_lints_and_renders_valid_manifests_with_these_values():
    version = [] if os.path.exists(chart() or "") else ["--version", CHART_VERSION]
    lint = subprocess.run(
        ["helm", "lint", chart(), "-f", str(VALUES), *version], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run(
        ["helm", "template", "mlcicd", chart(), "-n", "mlcicd", "-f", str(VALUES), *version],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    rbac = [d for d in yaml.safe_load_all((K8S / "airflow-rbac.yaml").read_text()) if d]
    bound = {s["name"] for d in rbac if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert bound & accounts, f"airflow-rbac.yaml binds none of the chart's accounts {sorted(accounts)}"
