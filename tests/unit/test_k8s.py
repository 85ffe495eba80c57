"""The kubernetes target and the Kaniko builder up to the API server: what would cross it, validated.

No Kubernetes API server runs here. The manifests, the RBAC file and the pods that the provider's
own KubernetesPodOperator would create are validated offline against the Kubernetes schemas
(kubernetes-validate, strict); the deploy pod's script runs against a real model server with
kubectl replaced by a recorder. ``tests/e2e/test_k8s_cluster.py`` deploys to a real cluster.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlcicd import settings
from mlcicd.deploy import SmokeTest
from mlcicd.deploy import kubernetes as k8s_target
from mlcicd.image import Registry, kaniko
from mlcicd.ports import free_port
from mlcicd.release import Release
from tests.helpers import make_model_dir, wait_for

K8S_VERSION = "1.31.0"
RELEASE = Release(
    model_name="Churn_Model",
    version="3",
    model_uri="models:/Churn_Model/3",
    mlflow_run_id="r" * 32,
    airflow_run_id="manual__2026-11-23T10:00:00+00:00",
    image="registry.local:5000/churn_model:3-0123456789ab",
    image_digest="registry.local:5000/churn_model@sha256:" + "a" * 64,
    model_digest="sha256:" + "b" * 64,
)
SMOKE = SmokeTest(payload={"dataframe_split": {"columns": ["a"], "data": [[1]]}}, expected=[0])


@pytest.fixture
def kube_settings(monkeypatch):
    monkeypatch.setenv("MLCICD_KUBE_NAMESPACE", "models")
    monkeypatch.setenv("MLCICD_KUBE_REPLICAS", "3")
    monkeypatch.setenv("MLCICD_KUBE_IMAGE_PULL_SECRETS", "regcred, other")
    monkeypatch.setenv("MLCICD_KANIKO_CONTEXT_URI", "s3://bucket/contexts")
    monkeypatch.setenv("MLCICD_KANIKO_PUSH_SECRET", "registry-push")
    return settings.load()


def validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_rendered_manifests_are_valid_and_hardened(kube_settings):
    deployment, service = yaml.safe_load_all(k8s_target.render_manifests(kube_settings, RELEASE))
    validate(deployment)
    validate(service)
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "mlcicd-churn-model"
    assert deployment["metadata"]["namespace"] == "models" and deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["annotations"]["mlcicd.io/model-version"] == "3"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.local:5000/churn_model:3-0123456789ab@sha256:" + "a" * 64
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # A rolling update never lowers the ready pods, and a stopping pod outlives its removal from the Service.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] > 5
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [s["name"] for s in pod["imagePullSecrets"]] == ["regcred", "other"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLCICD_MODEL_DIGEST"]["value"] == "sha256:" + "b" * 64  # the server refuses another bundle
    for name, key in (("MLCICD_SERVER_TOKEN", "token"), ("MLCICD_SERVER_METRICS_TOKEN", "metrics-token")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "mlcicd-server-token", "key": key, "optional": True}


def test_an_unpushed_image_is_referenced_by_tag(kube_settings):
    local = Release(**{**RELEASE.to_dict(), "image_digest": None})
    deployment, _ = yaml.safe_load_all(k8s_target.render_manifests(kube_settings, local))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == RELEASE.image


def test_no_image_is_a_config_error_that_says_what_to_set(kube_settings):
    from mlcicd.errors import ConfigError

    with pytest.raises(ConfigError, match="MLCICD_IMAGE_BUILDER"):
        k8s_target.render_manifests(kube_settings, Release(**{**RELEASE.to_dict(), "image": None}))


def pod_of(operator) -> dict:
    from kubernetes.client import ApiClient

    pod = operator.build_pod_request_obj(dry_run=True)  # the provider's own pod, as it would be sent
    return ApiClient().sanitize_for_serialization(pod)


def test_deploy_pod_built_by_the_provider_is_valid(kube_settings):
    op = k8s_target.deploy_operator(kube_settings, RELEASE, SMOKE)
    pod = pod_of(op)
    validate(pod)
    assert pod["metadata"]["namespace"] == "models"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "mlcicd-churn-model-deployer"  # the model's own (k8s-rbac)
    assert [s["name"] for s in spec["imagePullSecrets"]] == ["regcred", "other"]
    base = spec["containers"][0]
    assert base["image"] == kube_settings.kube_deployer_image
    assert base["args"] == [k8s_target.DEPLOY_SCRIPT.read_text()]
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert env["MANIFESTS"] == k8s_target.render_manifests(kube_settings, RELEASE)
    assert json.loads(env["SMOKE_EXPECTED"]) == [0] and json.loads(env["SMOKE_PAYLOAD"]) == SMOKE.payload
    assert env["SERVICE_URL"] == "http://mlcicd-churn-model.models.svc:8080"
    (token,) = [e for e in base["env"] if e["name"] == "MLCICD_SERVER_TOKEN"]  # for the smoke test
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "mlcicd-server-token",
        "key": "token",
        "optional": True,
    }
    assert any(c["name"] == "airflow-xcom-sidecar" for c in spec["containers"])  # do_xcom_push


def test_kaniko_pod_built_by_the_provider_is_valid(kube_settings):
    context = kaniko.Context("s3://b/c.tar.gz", "https://b.s3.example/c.tar.gz?X-Amz-Signature=s", "d" * 64)
    op = kaniko.build_operator(kube_settings, RELEASE, "registry.local:5000/churn_model:3-abc", context)
    pod = pod_of(op)
    validate(pod)
    base = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert (
        env["DESTINATION"] == "registry.local:5000/churn_model:3-abc" and env["CONTEXT"] == "s3://b/c.tar.gz"
    )
    assert env["CONTEXT_URL"] == context.url and env["CONTEXT_SHA256"] == "d" * 64
    assert base["args"] == [kaniko.BUILD_SCRIPT]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "push-credentials"]
    assert volume["secret"]["secretName"] == "registry-push"  # pragma: allowlist secret
    assert {"name": "push-credentials", "mountPath": "/kaniko/.docker", "readOnly": True} in base[
        "volumeMounts"
    ]


def test_kaniko_needs_a_registry_and_a_context_location(kube_settings, monkeypatch):
    from mlcicd.errors import ConfigError

    with pytest.raises(ConfigError, match="no registry is set"):
        kaniko.build(kube_settings, RELEASE, None)
    monkeypatch.delenv("MLCICD_KANIKO_CONTEXT_URI")
    with pytest.raises(ConfigError, match="MLCICD_KANIKO_CONTEXT_URI"):
        kaniko.build(settings.load(), RELEASE, Registry("registry.local:5000", login=False))


def test_rbac_file_is_valid():
    docs = [d for d in yaml.safe_load_all((k8s_target.K8S_DIR / "rbac.yaml").read_text()) if d]
    for doc in docs:
        validate(doc)
    assert {d["kind"] for d in docs} == {"Namespace", "Role", "RoleBinding"}


# -- the deploy pod's script, with kubectl recorded and the rest real (bash, curl, jq, the server) --

FAKE_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$KUBECTL_LOG"
case "$*" in
  *"get deployment"*revision*) echo -n 4 ;;
  *"get deployment"*model-version*) echo -n "$FAKE_PREVIOUS" ;;
  *"get deployment"*) [[ -n "$FAKE_PREVIOUS" ]] || exit 1 ;;
  "apply "*) [[ -z "$FAKE_APPLY_FAILS" ]] || exit 1 ;;
  *"rollout status"*) [[ -z "$FAKE_ROLLOUT_FAILS" ]] || exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """A real model server (v7) on loopback, standing in for the Service."""
    root = tmp_path_factory.mktemp("k8s-served")
    model, x = make_model_dir(root, rows=400, seed=3)
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root), "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/health")
    sample = x.head(5)
    yield (
        url,
        {"dataframe_split": json.loads(sample.to_json(orient="split", index=False))},
        model.predict(sample).tolist(),
    )
    proc.terminate()
    proc.wait(10)


def run_script(tmp_path: Path, url: str, payload: dict, expected: list, version: str = "7", **fake: str):
    """Run the deploy script; lower-case ``fake`` keys steer the fake kubectl, upper-case ones are
    the pod's environment (ACTION, CANARY, REPLICAS, ...)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "kubectl.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "FAKE_PREVIOUS": fake.get("previous", ""),
        "FAKE_ROLLOUT_FAILS": fake.get("rollout_fails", ""),
        "FAKE_APPLY_FAILS": fake.get("apply_fails", ""),
        "NAMESPACE": "models",
        "DEPLOYMENT": "mlcicd-m",
        "SERVICE_URL": url,
        "MODEL_VERSION": version,
        "MANIFESTS": "kind: Deployment",
        "SMOKE_PAYLOAD": json.dumps(payload),
        "SMOKE_EXPECTED": json.dumps(expected),
        "ROLLOUT_TIMEOUT": "5s",
        **{k: v for k, v in fake.items() if k.isupper()},
    }
    out = subprocess.run(
        ["bash", str(k8s_target.DEPLOY_SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    return out, log.read_text().splitlines() if log.exists() else []


def test_deploy_script_applies_waits_and_smoke_tests_through_the_service(tmp_path, served_model):
    url, payload, expected = served_model
    out, calls = run_script(tmp_path, url, payload, expected, previous="6")
    assert out.returncode == 0, out.stderr
    assert "v7 serves through" in out.stdout and "previous: 6" in out.stdout
    assert any(c.startswith("apply -f") for c in calls)
    assert any("rollout status deployment/mlcicd-m" in c for c in calls)
    assert any("spec.template.metadata.annotations" in c for c in calls)  # the version that serves
    assert not any("rollout undo" in c for c in calls)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_predictions", "differ from the offline ones"),
        ("wrong_version", "answers as v7"),
        ("rollout_fails", "rollout did not complete"),
        ("apply_fails", "kubectl apply was refused"),
    ],
)
def test_deploy_script_rolls_back_to_the_previous_replicaset(tmp_path, served_model, case, message):
    url, payload, expected = served_model
    if case == "wrong_predictions":
        expected = [1 - v for v in expected]
    out, calls = run_script(
        tmp_path,
        url,
        payload,
        expected,
        version="8" if case == "wrong_version" else "7",
        previous="6",
        rollout_fails="1" if case == "rollout_fails" else "",
        apply_fails="1" if case == "apply_fails" else "",
    )
    assert out.returncode == 1
    assert message in out.stderr and "rolling back to the previous ReplicaSet (revision 4, v6)" in out.stderr
    # To the revision that served before, not "one back": a re-applied template makes no new revision.
    assert "rollout undo deployment/mlcicd-m --to-revision=4" in "\n".join(calls)


def test_deploy_script_removes_a_failed_first_deployment(tmp_path, served_model):
    url, payload, expected = served_model
    out, calls = run_script(tmp_path, url, payload, [1 - v for v in expected])
    assert out.returncode == 1 and "no previous version" in out.stderr
    assert any(c.startswith("delete -f") for c in calls) and not any("rollout undo" in c for c in calls)


def test_deploy_pod_is_not_selected_by_the_models_deployment_or_service(kube_settings):
    deployment, service = yaml.safe_load_all(k8s_target.render_manifests(kube_settings, RELEASE))
    labels = pod_of(k8s_target.deploy_operator(kube_settings, RELEASE, SMOKE))["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        assert not all(labels.get(k) == v for k, v in selector.items())
