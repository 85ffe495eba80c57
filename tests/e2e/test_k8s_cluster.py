"""The kubernetes target end to end: against a real cluster when one is configured.

No API server can run on the CI machine, so the cluster test is skipped there with its reason;
tests/unit/test_k8s.py validates everything up to the API server. To run it: a cluster in
KUBECONFIG (kind, minikube or real) and MLCICD_TEST_REGISTRY_CONN, an Airflow connection (JSON)
of a registry its nodes pull from, for example '{"conn_type": "docker", "host": "localhost",
"port": 5001}' for the local registry of kind's documentation.
"""

from __future__ import annotations

import json
import os

import pytest

from mlcicd.cli.run import run_pipeline

pytestmark = pytest.mark.e2e
MODEL = "k8s_churn"
CONF = {"model_name": MODEL, "deploy_target": "kubernetes", "dataset_name": "k8s_churn_data"}


def test_missing_kube_connection_fails_before_training(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", raising=False)
    s = run_pipeline({**CONF, "synthetic_seed": 1})
    assert s["outcome"] == "failed" and s["error"]["stage"] == "reconcile_serving"  # the first task
    message = s["error"]["message"]
    assert "'kubernetes_default' is not defined" in message and "AIRFLOW_CONN_KUBERNETES_DEFAULT" in message
    assert set(s["stages"]) == {"reconcile_serving"} and s["champion_version"] is None


def cluster_reason() -> str | None:
    if not os.environ.get("KUBECONFIG"):
        return "no Kubernetes cluster: KUBECONFIG is not set (no API server can run on this machine)"
    if not os.environ.get("MLCICD_TEST_REGISTRY_CONN"):
        return "KUBECONFIG is set, but MLCICD_TEST_REGISTRY_CONN names no registry the cluster pulls from"
    return None


@pytest.mark.skipif(cluster_reason() is not None, reason=str(cluster_reason()))
def test_deploys_to_a_real_cluster_and_the_service_answers(monkeypatch, engine_for_cluster):
    from kubernetes import client, config, utils

    from mlcicd.deploy.kubernetes import K8S_DIR
    from mlcicd.kube import resource_name

    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": os.environ["KUBECONFIG"]}}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_DOCKER_DEFAULT", os.environ["MLCICD_TEST_REGISTRY_CONN"])
    monkeypatch.setenv("MLCICD_KUBE_REPLICAS", "1")
    config.load_kube_config()
    try:
        utils.create_from_yaml(client.ApiClient(), str(K8S_DIR / "rbac.yaml"))
    except utils.FailToCreateError as exc:  # already there from an earlier run
        assert all(e.status == 409 for e in exc.api_exceptions), exc

    first = run_pipeline({**CONF, "synthetic_seed": 1})
    assert first["outcome"] == "promoted", first.get("error")
    d = client.AppsV1Api().read_namespaced_deployment(resource_name(MODEL), "mlcicd")
    assert d.metadata.annotations["mlcicd.io/model-version"] == first["champion_version"]
    assert "@sha256:" in d.spec.template.spec.containers[0].image  # pushed, so pinned by digest
    assert d.status.ready_replicas == 1

    # A canary: staged as <name>-canary, 50 % of the pods in the Service, analysed on live traffic
    # (sent through the API server's service proxy), then promoted; a broken one is taken out.
    fast = {
        "rollout": "canary",
        "rollout_steps": [50],
        "rollout_interval_s": 5,
        "rollout_checks": 1,
        "rollout_min_requests": 5,
        "max_degradation": 0.05,
    }
    with ServiceLoad(resource_name(MODEL)) as load:
        healthy = run_pipeline({**CONF, **fast, "synthetic_seed": 2})
        broken = run_pipeline({**CONF, **fast, "synthetic_seed": 3, "rollout_max_p99_ms": 0.001})
    assert load.sent > 0
    assert healthy["outcome"] == "promoted", healthy.get("error")
    assert [s["verdict"] for s in healthy["rollout"]["steps"]] == ["passed"]
    assert healthy["rollout"]["steps"][0]["share"] == 50.0  # 1 canary pod beside 1 stable pod
    assert broken["outcome"] == "rolled_back" and broken["champion_version"] == healthy["champion_version"]
    apps = client.AppsV1Api()
    d = apps.read_namespaced_deployment(resource_name(MODEL), "mlcicd")
    assert d.spec.template.metadata.annotations["mlcicd.io/model-version"] == healthy["champion_version"]
    with pytest.raises(client.exceptions.ApiException) as gone:
        apps.read_namespaced_deployment(f"{resource_name(MODEL)}-canary", "mlcicd")
    assert gone.value.status == 404


class ServiceLoad:
    """Requests to the model's Service through the API server's service proxy, in a thread."""

    def __init__(self, service: str) -> None:
        import threading

        self.service, self.stop, self.sent = service, threading.Event(), 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from kubernetes import client

        from mlcicd import synthetic

        rows = synthetic.generate(5, 1).drop(columns="churned")
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        api = client.CoreV1Api()
        while not self.stop.is_set():
            try:
                api.connect_post_namespaced_service_proxy_with_path(
                    f"{self.service}:8080", "mlcicd", "invocations", body=body, _preload_content=False
                )
                self.sent += 1
            except client.exceptions.ApiException:
                pass  # the Service may have no ready pod for a moment; the analysis judges the errors
            self.stop.wait(0.1)

    def __enter__(self) -> ServiceLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def engine_for_cluster():
    from mlcicd.errors import ConfigError
    from mlcicd.image.docker import docker_client
    from mlcicd.settings import load

    try:
        docker_client(load(), None)
    except ConfigError as exc:
        pytest.fail(str(exc))
