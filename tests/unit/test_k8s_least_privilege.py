"""Least privilege on Kubernetes (issue 28, finding 2), checked on what would be sent: the rendered
RBAC, the pods the provider's own operator builds, and the Helm values.

- The models, their build and deploy pods live in a namespace that holds none of Airflow's Secrets.
- A model's deploy account may change that model's Deployments and Services and no other's.
- No token is mounted where the pod calls no API (model servers, Kaniko); no `secrets` rights anywhere.
"""

from __future__ import annotations

import pytest
import yaml

from mlcicd import settings
from mlcicd.deploy import kubernetes as k8s_target
from mlcicd.deploy.kubernetes_manifests import render_rbac
from mlcicd.image import kaniko
from tests.unit.test_helm_values import K8S, VALUES
from tests.unit.test_k8s import RELEASE, SMOKE, pod_of, validate

READ = {"get", "list", "watch"}


@pytest.fixture
def kube_settings(monkeypatch):
    monkeypatch.setenv("MLCICD_KUBE_NAMESPACE", "models")
    monkeypatch.setenv("MLCICD_KANIKO_PUSH_SECRET", "registry-push")
    return settings.load()


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def rules(documents: list[dict]) -> list[dict]:
    return [r for d in documents if d["kind"] in ("Role", "ClusterRole") for r in d["rules"]]


def test_a_models_deploy_account_changes_its_own_resources_and_no_others(kube_settings):
    rendered = docs(render_rbac(kube_settings, "Churn_Model"))
    for doc in rendered:
        validate(doc)
    assert {d["kind"] for d in rendered} == {"ServiceAccount", "Role", "RoleBinding"}
    assert {d["metadata"]["namespace"] for d in rendered} == {"models"}
    own = {"mlcicd-churn-model", "mlcicd-churn-model-canary"}
    for rule in rules(rendered):
        assert (
            "*" not in rule["verbs"] and "*" not in rule["resources"] and "secrets" not in rule["resources"]
        )
        writes = set(rule["verbs"]) - READ
        if writes == {"create"}:  # Kubernetes cannot limit create by name: the namespace holds no secrets
            assert "resourceNames" not in rule
        elif writes:
            assert set(rule["resourceNames"]) == own, rule
        if rule["resources"] == ["replicasets"]:
            assert set(rule["verbs"]) <= READ
    other = {
        r for rule in rules(docs(render_rbac(kube_settings, "fraud"))) for r in rule.get("resourceNames", [])
    }
    assert not other & own


def test_the_deploy_pod_runs_as_the_models_account_and_kaniko_with_no_token(kube_settings):
    deploy = pod_of(k8s_target.deploy_operator(kube_settings, RELEASE, SMOKE))
    account = next(
        d for d in docs(render_rbac(kube_settings, RELEASE.model_name)) if d["kind"] == "ServiceAccount"
    )
    assert deploy["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert deploy["metadata"]["namespace"] == "models"
    context = kaniko.Context("s3://b/c.tar.gz", "https://b.example/c.tar.gz?sig=s", "d" * 64)
    build = pod_of(kaniko.build_operator(kube_settings, RELEASE, "registry.local:5000/x:1", context))
    validate(build)
    assert build["spec"]["automountServiceAccountToken"] is False
    assert build["spec"]["serviceAccountName"] == "default"
    for doc in docs(k8s_target.render_manifests(kube_settings, RELEASE)):
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_helm_install_keeps_airflows_secrets_out_of_the_models_namespace():
    values = yaml.safe_load(VALUES.read_text())
    env = {e["name"]: e.get("value") for e in values["env"]}
    models = env["MLCICD_KUBE_NAMESPACE"]
    assert models == "mlcicd-models" and models != "mlcicd"  # `helm install -n mlcicd`: Airflow's own
    assert "MLCICD_KUBE_SERVICE_ACCOUNT" not in env  # each model's own account, not a shared one
    rbac = docs((K8S / "airflow-rbac.yaml").read_text())
    assert {d["metadata"].get("namespace") for d in rbac if d["kind"] != "Namespace"} == {models}
    assert not [d for d in rbac if d["kind"].startswith("Cluster")]
    for rule in rules(rbac) + rules(docs((K8S / "rbac.yaml").read_text())):
        assert "secrets" not in rule["resources"] and "*" not in rule["verbs"]
        assert not {"deployments", "services"} & set(rule["resources"]) or set(rule["verbs"]) <= READ


def test_the_default_namespace_is_the_models_own():
    assert settings.load().kube_namespace == "mlcicd-models" and settings.load().kube_service_account == ""
