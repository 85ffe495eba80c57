"""The ``kubernetes`` deploy target: a KubernetesPodOperator pod applies the version's manifests.

The Deployment and Service are rendered here from ``include/k8s/*.yaml.j2`` (probes on
``/health``, non-root, read-only root filesystem, the image by tag and, once pushed, by digest).
The deploy pod (``include/k8s/deploy.sh`` in an image with kubectl, curl and jq) applies them,
waits for the rollout, smoke-tests through the Service and rolls back to the previous ReplicaSet
on failure. The pod is built by the provider's own operator, so what it sends to the API server
is what the provider would send.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from mlcicd.deploy.base import Deployment, SmokeTest
from mlcicd.errors import ConfigError, DeployError
from mlcicd.kube import check_connection, pod_operator, resource_name
from mlcicd.release import Release
from mlcicd.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

log = logging.getLogger("mlcicd")

K8S_DIR = PROJECT_ROOT / "include" / "k8s"
TEMPLATES = ("deployment.yaml.j2", "service.yaml.j2")
DEPLOY_SCRIPT = K8S_DIR / "deploy.sh"
SERVICE_PORT = 8080


def image_ref(release: Release) -> str:
    """``repository:tag@sha256:...`` when the image was pushed (pinned by digest), else the tag."""
    if not release.image:
        raise ConfigError(
            "the kubernetes target needs the model-server image, and build_image built none; "
            "set MLCICD_IMAGE_BUILDER to docker or kaniko (or auto)"
        )
    if release.image_digest:
        return f"{release.image}@{release.image_digest.split('@', 1)[1]}"
    return release.image


def render_manifests(settings: Settings, release: Release) -> str:
    """The Deployment and Service of ``release`` as one multi-document YAML string."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(K8S_DIR), undefined=jinja2.StrictUndefined, autoescape=False
    )
    values = {
        "name": resource_name(release.model_name),
        "namespace": settings.kube_namespace,
        "model_name": release.model_name,
        "version": str(release.version),
        "airflow_run_id": release.airflow_run_id,
        "image": image_ref(release),
        "replicas": settings.kube_replicas,
        "image_pull_secrets": list(settings.kube_image_pull_secrets),
    }
    return "\n---\n".join(env.get_template(t).render(**values) for t in TEMPLATES) + "\n"


def service_url(settings: Settings, model_name: str) -> str:
    return f"http://{resource_name(model_name)}.{settings.kube_namespace}.svc:{SERVICE_PORT}"


def deploy_operator(settings: Settings, release: Release, smoke: SmokeTest) -> KubernetesPodOperator:
    """The KubernetesPodOperator whose pod applies, checks and, on failure, rolls back ``release``."""
    from kubernetes.client import models as k8s

    name = resource_name(release.model_name)
    return pod_operator(
        settings,
        task_id="deploy_model_pod",
        name=f"{name}-deploy-v{release.version}",
        image=settings.kube_deployer_image,
        cmds=["bash", "-c"],
        arguments=[DEPLOY_SCRIPT.read_text()],
        env_vars={
            "NAMESPACE": settings.kube_namespace,
            "DEPLOYMENT": name,
            "SERVICE_URL": service_url(settings, release.model_name),
            "MODEL_VERSION": str(release.version),
            "MANIFESTS": render_manifests(settings, release),
            "SMOKE_PAYLOAD": json.dumps(smoke.payload),
            "SMOKE_EXPECTED": json.dumps(smoke.expected),
            "ROLLOUT_TIMEOUT": f"{int(settings.health_timeout_s * 3)}s",
        },
        # Not the model's instance label: the Deployment and Service select on that one.
        labels={
            "app.kubernetes.io/name": "mlcicd-deployer",
            "app.kubernetes.io/instance": f"{name}-deployer",
        },
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=65532, run_as_group=65532
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])
        ),
    )


class KubernetesTarget:
    name = "kubernetes"

    @staticmethod
    def preflight(settings: Settings) -> None:
        check_connection(settings.kube_conn_id)

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.settings = settings
        self.model_name = model_name

    @property
    def endpoint(self) -> str:
        return service_url(self.settings, self.model_name)

    def current(self) -> Deployment | None:
        """The version the Deployment runs, read through the provider's hook; None if there is none."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from kubernetes.client import AppsV1Api
        from kubernetes.client.exceptions import ApiException

        try:
            api = AppsV1Api(KubernetesHook(conn_id=self.settings.kube_conn_id).api_client)
            d = api.read_namespaced_deployment(resource_name(self.model_name), self.settings.kube_namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        # The pod template's: `rollout undo` restores the template, not the Deployment's annotations.
        version = (d.spec.template.metadata.annotations or {}).get("mlcicd.io/model-version")
        return Deployment(self.name, self.endpoint, str(version), {"deployment": d.metadata.name})

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        from airflow.exceptions import AirflowException
        from airflow.sdk import get_current_context

        check_connection(self.settings.kube_conn_id)
        op = deploy_operator(self.settings, release, smoke)
        log.info(
            "deploy pod %s applies %s v%s in %s", op.name, self.model_name, release.version, op.namespace
        )
        from kubernetes.client.exceptions import ApiException

        try:
            result = op.execute(context=get_current_context()) or {}
        except ApiException as exc:
            raise DeployError(
                f"the Kubernetes API refused the deploy pod in {self.settings.kube_namespace!r} ({exc.status} "
                f"{exc.reason}); apply include/k8s/rbac.yaml there and check MLCICD_KUBE_SERVICE_ACCOUNT and the "
                f"rights of the {self.settings.kube_conn_id} connection (pods: create, get, delete; pods/log; "
                "pods/exec for the XCom sidecar). Nothing was applied."
            ) from exc
        except AirflowException as exc:
            raise DeployError(
                f"the deploy pod failed for v{release.version}: {exc}. If the pod ran, its log above says "
                "which check failed and the Deployment was rolled back to the revision that served before; "
                "if it never started, check the deployer image (MLCICD_KUBE_DEPLOYER_IMAGE) and pull secrets."
            ) from exc
        return Deployment(
            self.name, self.endpoint, release.version,
            {"deployment": resource_name(self.model_name), "namespace": self.settings.kube_namespace,
             "image": image_ref(release), "previous_version": result.get("previous_version") or None},
        )  # fmt: skip

    def stop(self) -> None:
        raise ConfigError(
            f"stop the kubernetes target with kubectl: kubectl -n {self.settings.kube_namespace} "
            f"delete deployment,service {resource_name(self.model_name)}"
        )
