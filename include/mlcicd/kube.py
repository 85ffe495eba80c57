"""What the Kubernetes deploy target and the Kaniko builder share: names, the connection check, the pod.

Both run their work as a KubernetesPodOperator pod built by the provider's own operator, so what
they send to the API server is what the provider would send.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlcicd.errors import ConfigError
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator


def resource_name(model_name: str) -> str:
    """A DNS-1123 name for the model's Deployment and Service (and the pods that work on them)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    return f"mlcicd-{name}"[:63].rstrip("-")


def check_connection(conn_id: str) -> None:
    """Fail with what to do when the kube connection is not defined."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConfigError(
            f"the Kubernetes connection {conn_id!r} is not defined: create it (UI: Admin > Connections, "
            f'type Kubernetes; or AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "kubernetes", '
            '"extra": {"in_cluster": true}}\' inside the cluster, or a kube_config_path outside), '
            "or set MLCICD_KUBE_CONN_ID"
        ) from exc


def pod_operator(settings: Settings, **kwargs: Any) -> KubernetesPodOperator:
    """A KubernetesPodOperator with the project's defaults (connection, namespace, service account,
    pull secrets, XCom, logs, clean-up); ``kwargs`` give the pod's own fields and may override them."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    defaults: dict[str, Any] = {
        "kubernetes_conn_id": settings.kube_conn_id,
        "namespace": settings.kube_namespace,
        "service_account_name": settings.kube_service_account,
        "image_pull_secrets": [k8s.V1LocalObjectReference(name=s) for s in settings.kube_image_pull_secrets],
        "do_xcom_push": True,
        "get_logs": True,
        "on_finish_action": "delete_succeeded_pod",
        "startup_timeout_seconds": 300,
    }
    return KubernetesPodOperator(**{**defaults, **kwargs})


TOKEN_SECRET = (
    "mlcicd-server-token"  # optional Secret of the model servers' tokens: keys token, metrics-token
)


def token_env(k8s: Any) -> list[Any]:
    """The server token from its Secret, if there is one (the smoke test sends it)."""
    ref = k8s.V1SecretKeySelector(name=TOKEN_SECRET, key="token", optional=True)
    return [k8s.V1EnvVar(name="MLCICD_SERVER_TOKEN", value_from=k8s.V1EnvVarSource(secret_key_ref=ref))]
