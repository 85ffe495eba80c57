"""The ``kubernetes`` deploy target: a KubernetesPodOperator pod applies the version's manifests.

The Deployment and Service are rendered here from ``include/k8s/*.yaml.j2`` (probes on
``/health``, non-root, read-only root filesystem, the image by tag and, once pushed, by digest).
The deploy pod (``include/k8s/deploy.sh`` in an image with kubectl, curl and jq) applies them,
waits for the rollout, smoke-tests through the Service and rolls back to the previous ReplicaSet
on failure. The pod is built by the provider's own operator, so what it sends to the API server
is what the provider would send.

A ``switch`` is the Deployment's own rolling update (``maxUnavailable: 0``, a ``preStop`` pause).
A ``canary`` uses no mesh: a second Deployment, ``<name>-canary``, is staged with a Service of its
own and smoke-tested through it, then its pods join the stable Service, which spreads connections
over ready pods: the share is the canary's pods over all pods (:func:`replica_split`). Promotion
rolls the stable Deployment to the canary's image and removes the canary; an abort removes it.
The analysis reads each pod's ``/metrics`` through the API server's pod proxy.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from mlcicd.deploy.base import STAGED_AT, STAGED_BY, Deployment, DeployTarget, SmokeTest
from mlcicd.deploy.kubernetes_manifests import (
    CANARY_OF,
    K8S_DIR,
    RUN_ANNOTATION,
    SERVICE_PORT,
    VERSION_ANNOTATION,
    deployer_account,
    image_ref,
    render_manifests,
    replica_split,
)
from mlcicd.errors import ConfigError, DeployError
from mlcicd.kube import check_connection, pod_operator, resource_name, token_env
from mlcicd.release import Release
from mlcicd.serving.auth import token_header
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

log = logging.getLogger("mlcicd")

DEPLOY_SCRIPT = K8S_DIR / "deploy.sh"


def service_url(settings: Settings, model_name: str, *, canary: bool = False) -> str:
    suffix = "-canary" if canary else ""
    return f"http://{resource_name(model_name)}{suffix}.{settings.kube_namespace}.svc:{SERVICE_PORT}"


def deploy_operator(
    settings: Settings, release: Release, smoke: SmokeTest, action: str = "switch", canary: bool = False
) -> KubernetesPodOperator:
    """The pod that applies, checks and, on failure, rolls back ``release``: as the stable version
    (``switch``; ``canary`` also removes the canary), or as the canary (``stage``)."""
    name = resource_name(release.model_name)
    staged = action == "stage"
    return _pod(
        settings,
        action,
        f"v{release.version}",
        {
            "SERVICE_URL": service_url(settings, release.model_name, canary=staged),
            "MODEL_VERSION": str(release.version),
            "MANIFESTS": render_manifests(settings, release, canary=staged),
            "SMOKE_PAYLOAD": json.dumps(smoke.payload),
            "SMOKE_EXPECTED": json.dumps(smoke.expected),
            **({"CANARY": f"{name}-canary"} if staged or canary else {}),
        },
        release.model_name,
    )


def canary_operator(
    settings: Settings, model_name: str, action: str, replicas: int = 0
) -> KubernetesPodOperator:
    """The pod that shifts traffic to the canary (``replicas`` pods in the Service) or removes it."""
    name = resource_name(model_name)
    env = {"CANARY": f"{name}-canary", **({"REPLICAS": str(replicas)} if action == "shift" else {})}
    return _pod(settings, action, f"{replicas}" if action == "shift" else "", env, model_name)


def _pod(
    settings: Settings, action: str, suffix: str, env: dict[str, str], model_name: str
) -> KubernetesPodOperator:
    from kubernetes.client import models as k8s

    name = resource_name(model_name)
    return pod_operator(
        settings,
        task_id="deploy_model_pod",
        service_account_name=deployer_account(settings, model_name),
        name=f"{name}-{action}{'-' + suffix if suffix else ''}".replace(".", "-")[:63].rstrip("-"),
        image=settings.kube_deployer_image,
        cmds=["bash", "-c"],
        arguments=[DEPLOY_SCRIPT.read_text()],
        env_vars=[
            *(
                k8s.V1EnvVar(name=k, value=v)
                for k, v in {
                    "ACTION": action,
                    "NAMESPACE": settings.kube_namespace,
                    "DEPLOYMENT": name,
                    "ROLLOUT_TIMEOUT": f"{int(settings.health_timeout_s * 3)}s",
                    **env,
                }.items()
            ),
            *token_env(k8s),
        ],
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


class KubernetesTarget(DeployTarget):
    name = "kubernetes"
    rollouts = ("switch", "canary")  # shadow needs a mirroring proxy: the local and docker fronts
    can_stage = True
    stages_switch = False  # a switch is the Deployment's own rolling update

    @classmethod
    def preflight(cls, settings: Settings) -> None:
        check_connection(settings.kube_conn_id)

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.settings = settings
        self.model_name = model_name
        self.resource = resource_name(model_name)

    @property
    def endpoint(self) -> str:
        return service_url(self.settings, self.model_name)

    # -- reading the cluster (through the provider's hook) -------------------------------------

    def _api(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.settings.kube_conn_id).api_client

    def _read(self, deployment: str) -> Any:
        from kubernetes.client import AppsV1Api
        from kubernetes.client.exceptions import ApiException

        try:
            return AppsV1Api(self._api()).read_namespaced_deployment(deployment, self.settings.kube_namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _deployment(self, d: Any, endpoint: str) -> Deployment:
        # The pod template's: `rollout undo` restores the template, not the Deployment's annotations.
        version = (d.spec.template.metadata.annotations or {}).get(VERSION_ANNOTATION)
        created = getattr(d.metadata, "creation_timestamp", None)
        return Deployment(
            self.name,
            endpoint,
            str(version),
            {
                "deployment": d.metadata.name,
                "namespace": self.settings.kube_namespace,
                "replicas": d.spec.replicas,
                STAGED_BY: (d.metadata.annotations or {}).get(RUN_ANNOTATION) or None,
                STAGED_AT: created.timestamp() if created else None,
            },
        )

    def current(self) -> Deployment | None:
        """The version the stable Deployment runs; None if there is none."""
        d = self._read(self.resource)
        return None if d is None else self._deployment(d, self.endpoint)

    def candidate(self) -> Deployment | None:
        """The staged canary, if there is one."""
        d = self._read(f"{self.resource}-canary")
        return (
            None
            if d is None
            else self._deployment(d, service_url(self.settings, self.model_name, canary=True))
        )

    def servers(self) -> dict[str, dict[str, Any]]:
        """Role -> {version} of the stable and canary Deployments."""
        found = {"stable": self.current(), "candidate": self.candidate()}
        return {role: {"version": d.version} for role, d in found.items() if d is not None}

    def traffic(self) -> dict[str, Any]:
        """The canary's share of connections: its pods in the Service over all the Service's pods."""
        stable, cand = self._read(self.resource), self._read(f"{self.resource}-canary")
        labels = (cand.spec.template.metadata.labels or {}) if cand else {}
        serving = cand is not None and labels.get("app.kubernetes.io/instance") == self.resource
        weight = 0.0
        if serving and stable is not None:
            weight = round(100 * cand.spec.replicas / (cand.spec.replicas + stable.spec.replicas), 1)
        return {"weight": weight, "mirror": False, "mode": "canary" if cand is not None else None}

    def scrape(self) -> dict[str, dict[str, Any]]:
        """Role -> {version, sources: {pod: {text}}}: each ready pod's ``/metrics``, read through the
        API server's pod proxy (the connection needs ``pods/proxy: get`` in the namespace)."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        api, ns, out = CoreV1Api(self._api()), self.settings.kube_namespace, {}
        selectors = {
            "stable": f"app.kubernetes.io/instance={self.resource},!{CANARY_OF}",
            "candidate": f"{CANARY_OF}={self.resource}",
        }
        for role, d in (("stable", self.current()), ("candidate", self.candidate())):
            if d is None:
                continue
            sources = {}
            for pod in api.list_namespaced_pod(ns, label_selector=selectors[role]).items:
                version = (pod.metadata.annotations or {}).get(VERSION_ANNOTATION)
                ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
                if not ready or str(version) != d.version:
                    continue
                try:
                    # Unparsed: the client would give ``str(bytes)`` of the text, escapes and all.
                    text = api.connect_get_namespaced_pod_proxy_with_path(
                        f"{pod.metadata.name}:{SERVICE_PORT}",
                        ns,
                        "metrics",
                        _preload_content=False,
                        _headers=token_header(metrics=True),
                    ).data.decode()
                except ApiException as exc:
                    raise DeployError(
                        f"could not read /metrics of the {role} pod {pod.metadata.name} through the API server "
                        f"({exc.status} {exc.reason}); the {self.settings.kube_conn_id} connection needs "
                        f"pods/proxy: get in {ns!r}"
                    ) from exc
                sources[pod.metadata.name] = {"text": text}
            out[role] = {"version": d.version, "sources": sources}
        return out

    # -- changing it (in deploy pods) -------------------------------------------------------------

    def _run(self, op: KubernetesPodOperator, what: str) -> dict[str, Any]:
        from airflow.exceptions import AirflowException
        from airflow.sdk import get_current_context
        from kubernetes.client.exceptions import ApiException

        check_connection(self.settings.kube_conn_id)
        log.info("deploy pod %s: %s in %s", op.name, what, op.namespace)
        try:
            return op.execute(context=get_current_context()) or {}
        except ApiException as exc:
            raise DeployError(
                f"the Kubernetes API refused the deploy pod in {self.settings.kube_namespace!r} ({exc.status} "
                f"{exc.reason}). The deploy pods run as {deployer_account(self.settings, self.model_name)!r}: "
                f"create it with `python -m mlcicd k8s-rbac {self.model_name} | kubectl apply -f -` (or set "
                "MLCICD_KUBE_SERVICE_ACCOUNT), apply include/k8s/rbac.yaml, and check the "
                f"rights of the {self.settings.kube_conn_id} connection (pods: create, get, list, delete; "
                "pods/log; pods/exec for the XCom sidecar; pods/proxy for the canary analysis). Nothing was applied."
            ) from exc
        except AirflowException as exc:
            raise DeployError(
                f"the deploy pod failed to {what}: {exc}. If the pod ran, its log above says which check "
                "failed and what was undone (the stable version serves as before); if it never started, "
                "check the deployer image (MLCICD_KUBE_DEPLOYER_IMAGE) and pull secrets."
            ) from exc

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Roll the stable Deployment to ``release`` (and remove a canary once it serves)."""
        result = self._run(
            deploy_operator(self.settings, release, smoke, canary=True),
            f"apply {self.model_name} v{release.version}",
        )
        return Deployment(
            self.name,
            self.endpoint,
            release.version,
            {
                "deployment": self.resource,
                "namespace": self.settings.kube_namespace,
                "image": image_ref(release),
                "previous_version": result.get("previous_version") or None,
            },
        )

    def stage(self, release: Release, smoke: SmokeTest, mode: str) -> Deployment:
        """Start ``release`` as the canary (one pod, outside the stable Service), smoke-tested through
        its own Service; the pod removes it on failure."""
        if mode not in self.rollouts:
            raise ConfigError(
                f"rollout={mode} is not available on the kubernetes target ({', '.join(self.rollouts)})"
            )
        self._run(
            deploy_operator(self.settings, release, smoke, action="stage"),
            f"stage {self.model_name} v{release.version} as the canary",
        )
        return Deployment(
            self.name,
            service_url(self.settings, self.model_name, canary=True),
            release.version,
            {
                "deployment": f"{self.resource}-canary",
                "namespace": self.settings.kube_namespace,
                "image": image_ref(release),
                "release": release.to_dict(),
                "rollout": mode,
            },
        )

    def shift(self, percent: int) -> float:
        """Give the canary about ``percent`` % of connections (:func:`replica_split`); return the share."""
        stable = self._read(self.resource)
        if self._read(f"{self.resource}-canary") is None:
            raise DeployError("no canary is staged: nothing to shift traffic to")
        replicas, share = replica_split(percent, stable.spec.replicas if stable else 1)
        if share != percent:
            log.warning(
                "%s %% asked: %d canary pod(s) beside %s stable give %s %% of connections "
                "(MLCICD_KUBE_REPLICAS sets the stable pods)",
                percent,
                replicas,
                stable.spec.replicas if stable else 1,
                share,
            )
        self._run(
            canary_operator(self.settings, self.model_name, "shift", replicas),
            f"give the canary {replicas} pod(s) in the Service",
        )
        return share

    def promote(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Roll the stable Deployment to the canary's version, smoke-test it, then remove the canary."""
        return self.deploy(release, smoke)

    def abort(self) -> None:
        """Remove the canary: the stable pods serve everything."""
        if self.candidate() is not None:
            self._run(canary_operator(self.settings, self.model_name, "abort"), "remove the canary")

    def stop(self) -> None:
        raise ConfigError(
            f"stop the kubernetes target with kubectl: kubectl -n {self.settings.kube_namespace} "
            f"delete deployment,service {self.resource} {self.resource}-canary"
        )
