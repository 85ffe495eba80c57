"""The model server's Kubernetes manifests, rendered from ``include/k8s/*.j2`` for a release: the
stable Deployment and Service, or a canary's; and how a canary share maps to pods."""

from __future__ import annotations

from mlcicd.errors import ConfigError
from mlcicd.kube import TOKEN_SECRET, resource_name
from mlcicd.release import Release
from mlcicd.settings import PROJECT_ROOT, Settings

K8S_DIR = PROJECT_ROOT / "include" / "k8s"
TEMPLATES = ("deployment.yaml.j2", "service.yaml.j2")
SERVICE_PORT = 8080
CANARY_OF = "mlcicd.io/canary-of"  # the label that marks a canary's pods (and selects them)
VERSION_ANNOTATION = "mlcicd.io/model-version"
# The run that rendered the Deployment (a canary's: the run that staged it, so its owner).
RUN_ANNOTATION = "mlcicd.io/airflow-run-id"


def replica_split(percent: float, stable_replicas: int) -> tuple[int, float]:
    """Canary pods beside ``stable_replicas`` stable ones for about ``percent`` % of connections,
    and the share that gives. The stable pods stay as they are (the champion keeps its capacity);
    at least one canary pod, so a small share on few pods is larger than asked: 10 % beside 2 pods
    is 1 pod, 33 %. Exact small shares need more stable replicas (9 for 10 %)."""
    if not 0 < percent < 100:
        raise ValueError(f"a canary share is between 0 and 100 %, not {percent}")
    canary = max(1, round(stable_replicas * percent / (100 - percent)))
    return canary, round(100 * canary / (stable_replicas + canary), 1)


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


def render_manifests(settings: Settings, release: Release, *, canary: bool = False) -> str:
    """The Deployment and Service of ``release`` as one multi-document YAML string: the stable ones,
    or the canary's (``<name>-canary``, one pod outside the stable Service until it is shifted)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(K8S_DIR), undefined=jinja2.StrictUndefined, autoescape=False
    )
    name = resource_name(release.model_name)
    own = f"{name}-canary" if canary else name
    labels = {
        "app.kubernetes.io/name": "mlcicd-model-server",
        "app.kubernetes.io/instance": own,
        "app.kubernetes.io/version": str(release.version),
    }
    selector = {CANARY_OF: name} if canary else {"app.kubernetes.io/instance": name}
    values = {
        "deployment": own,
        "service": own,
        "selector": selector,
        "service_selector": selector,
        "pod_labels": {**labels, **selector} if canary else labels,
        "namespace": settings.kube_namespace,
        "model_name": release.model_name,
        "version": str(release.version),
        "airflow_run_id": release.airflow_run_id,
        "image": image_ref(release),
        "model_digest": release.model_digest or "",
        "token_secret": TOKEN_SECRET,
        "replicas": 1 if canary else settings.kube_replicas,
        "image_pull_secrets": list(settings.kube_image_pull_secrets),
    }
    return "\n---\n".join(env.get_template(t).render(**values) for t in TEMPLATES) + "\n"


def deployer_account(settings: Settings, model_name: str) -> str:
    """The account the model's deploy pods run as: its own (see :func:`render_rbac`), unless
    MLCICD_KUBE_SERVICE_ACCOUNT names one shared by every model (with the broader rights you gave it)."""
    return settings.kube_service_account or f"{resource_name(model_name)}-deployer"


def render_rbac(settings: Settings, model_name: str) -> str:
    """The model's ServiceAccount, Role and RoleBinding (``include/k8s/model-rbac.yaml.j2``): rights on
    its own Deployments and Services only, in the models' namespace."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(K8S_DIR), undefined=jinja2.StrictUndefined, autoescape=False
    )
    return env.get_template("model-rbac.yaml.j2").render(
        account=deployer_account(settings, model_name),
        namespace=settings.kube_namespace,
        resource=resource_name(model_name),
        label=model_name,
    )
