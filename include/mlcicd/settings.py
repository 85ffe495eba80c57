"""Deployment settings, read from the environment in one place.

Run-time knobs (thresholds, hyperparameters, the dataset) are DAG Params; what differs between
installations (where state lives, which MLflow server, which deploy target) is read here.
Every value has a local default so that a fresh checkout runs with no configuration.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mlcicd.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Where the Airflow plugin serves the GX Data Docs, under the API server's base URL.
DATA_DOCS_URL_PREFIX = "/mlcicd/data-docs"


# The installation's gate floors: the param they bound, and their defaults. A min_* param or
# confidence below its floor is raised to it; a max_degradation above its ceiling is lowered to it.
GATE_FLOORS = {
    "min_roc_auc": 0.7, "min_accuracy": 0.7, "min_f1": 0.4, "max_degradation": 0.05, "confidence": 0.9,
}  # fmt: skip
CEILINGS = ("max_degradation",)


def floor_variable(param: str) -> str:
    """The environment variable of a param's floor: min_roc_auc -> MLCICD_GATE_MIN_ROC_AUC."""
    return f"MLCICD_GATE_{param.upper()}"


@dataclass(frozen=True)
class Settings:
    """Installation settings; build with :func:`load` so that the environment is read at call time."""

    state_dir: Path
    tracking_uri: str
    registry_uri: str
    experiment_name: str
    deploy_target: str
    local_host: str
    local_port: int
    local_server_module: str
    health_timeout_s: float
    haproxy_bin: str
    deploy_lock_timeout_s: float
    approval_timeout_minutes: float
    rollout_lease_minutes: (
        float  # how long a staged candidate is its run's (then another run may take it out)
    )
    suites_dir: Path
    retrain_schedule: str | None
    monitor_schedule: str | None
    mlflow_ui_url: str
    airflow_url: str
    prediction_log_dir: Path | None
    labels_dir: Path | None
    data_roots: tuple[str, ...]  # where batches may be read from: folders and URI prefixes
    # Images and the docker / kubernetes targets
    image_builder: str
    base_image: str
    docker_url: str
    docker_conn_id: str
    docker_network: str
    search_parallelism: int  # candidates of one run trained at once (max_active_tis_per_dagrun)
    search_max_candidates: int  # ceiling of the search_max_candidates param
    search_timeout_s: int  # ceiling of the search_timeout_s param
    bootstrap_max_resamples: int  # ceiling of the bootstrap_resamples param (a larger ask is lowered to it)
    train_max_rows: int  # a larger training part is sampled down to this many rows (stratified)
    memory_limit_mb: int  # what a run may use; 0: the machine's (or container's) available memory
    deploy_queue: str  # the Celery queue of the tasks that build, deploy and switch traffic
    docker_port: int
    docker_memory_mb: int  # each model-server container's limits, as the Kubernetes template's
    docker_cpus: float
    docker_pids: int
    build_timeout_s: float
    kube_conn_id: str
    kube_namespace: str
    kube_replicas: int
    kube_image_pull_secrets: tuple[str, ...]
    kube_service_account: str  # empty: each model's deploy pods run as its own account (k8s-rbac MODEL)
    kube_deployer_image: str
    kaniko_image: str
    kaniko_context_uri: str | None
    kaniko_push_secret: str | None
    # What protects production is the installation's (mlcicd.policy): params may only tighten it.
    require_approval: bool = False
    scan_major: str = "reject"
    scan_allow_major_without_champion: bool = False
    allowed_models: tuple[str, ...] = ()  # empty: any model name
    allowed_targets: tuple[str, ...] = ()  # empty: any deploy target
    approvers: tuple[
        str, ...
    ] = ()  # Airflow user ids who may answer an approval; empty: any allowed by Airflow
    approval_four_eyes: bool = False  # who triggered a run may not approve it (needs approvers)
    # The gate's floors: a run's params may tighten them, never loosen them.
    gate_floors: dict[str, float] = field(default_factory=lambda: dict(GATE_FLOORS))
    configured_signing_key: str | None = field(default=None, repr=False)  # MLCICD_SIGNING_KEY

    def signing_key(self, create: bool = True) -> bytes:
        """The key that signs what runs read back from MLflow (:mod:`mlcicd.signing`); ``create``: make
        the state folder's on first use (a command run elsewhere must not make a key of its own)."""
        from mlcicd.signing import installation_key

        return installation_key(self.configured_signing_key, self.state_dir, create)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def inferred_suites_dir(self) -> Path:
        return self.state_dir / "suites"

    @property
    def data_docs_dir(self) -> Path:
        return self.state_dir / "data_docs"

    @property
    def deployments_dir(self) -> Path:
        return self.state_dir / "deployments"

    def data_docs_url(self, report_path: str | None) -> str | None:
        """The report's address as the Airflow plugin serves it, or None when outside the docs folder."""
        if not report_path:
            return None
        try:
            relative = Path(report_path).resolve().relative_to(self.data_docs_dir.resolve())
        except ValueError:
            return None
        from urllib.parse import quote

        return f"{self.airflow_url}{DATA_DOCS_URL_PREFIX}/{quote(relative.as_posix())}"

    def predictions_for(self, model_name: str) -> Path:
        """Where the served model's prediction log is (the local target's default beside its state)."""
        return self.prediction_log_dir or self.deployments_dir / "local" / model_name / "predictions"

    def labels_for(self, model_name: str) -> Path:
        return self.labels_dir or self.state_dir / "labels" / model_name

    def monitor_dir(self, model_name: str) -> Path:
        return self.state_dir / "monitor" / model_name

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def artifact_root(self) -> Path:
        return self.state_dir / "mlflow" / "artifacts"


def load() -> Settings:
    """Read the settings from ``MLCICD_*`` environment variables, with local defaults."""
    state_dir = Path(os.getenv("MLCICD_STATE_DIR", PROJECT_ROOT / ".state")).resolve()
    default_tracking = f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}"
    tracking_uri = os.getenv("MLCICD_TRACKING_URI", os.getenv("MLFLOW_TRACKING_URI", default_tracking))
    return Settings(
        state_dir=state_dir,
        tracking_uri=tracking_uri,
        registry_uri=os.getenv("MLCICD_REGISTRY_URI", tracking_uri),
        experiment_name=os.getenv("MLCICD_EXPERIMENT", "ml_retrain"),
        deploy_target=os.getenv("MLCICD_DEPLOY_TARGET", "local"),
        local_host=os.getenv("MLCICD_LOCAL_HOST", "127.0.0.1"),
        local_port=_port("MLCICD_LOCAL_PORT", 5100),
        local_server_module=os.getenv("MLCICD_LOCAL_SERVER_MODULE", "mlcicd.serving"),
        health_timeout_s=_number("MLCICD_HEALTH_TIMEOUT_S", 90.0, float, minimum=1),
        haproxy_bin=os.getenv("MLCICD_HAPROXY") or _haproxy(),
        deploy_lock_timeout_s=_number("MLCICD_DEPLOY_LOCK_TIMEOUT_S", 1800.0, float, minimum=0),
        approval_timeout_minutes=_number("MLCICD_APPROVAL_TIMEOUT_MINUTES", 60.0, float, minimum=0.1),
        rollout_lease_minutes=_number("MLCICD_ROLLOUT_LEASE_MINUTES", 240.0, float, minimum=1),
        suites_dir=Path(os.getenv("MLCICD_SUITES_DIR", PROJECT_ROOT / "include" / "suites")).resolve(),
        retrain_schedule=_schedule(os.getenv("MLCICD_RETRAIN_SCHEDULE", "@daily")),
        monitor_schedule=_schedule(os.getenv("MLCICD_MONITOR_SCHEDULE", "@hourly")),
        mlflow_ui_url=os.getenv("MLCICD_MLFLOW_URL", "http://127.0.0.1:5000").rstrip("/"),
        airflow_url=os.getenv("AIRFLOW__API__BASE_URL", "http://localhost:8080").rstrip("/"),
        prediction_log_dir=_path(os.getenv("MLCICD_PREDICTION_LOG_DIR")),
        labels_dir=_path(os.getenv("MLCICD_LABELS_DIR")),
        data_roots=tuple(
            r.strip()
            for r in (os.getenv("MLCICD_DATA_ROOTS") or str(state_dir / "data")).split(",")
            if r.strip()
        ),
        image_builder=os.getenv("MLCICD_IMAGE_BUILDER", "auto").strip().lower(),
        base_image=os.getenv("MLCICD_BASE_IMAGE", "python:3.11.14-slim-bookworm"),
        docker_url=os.getenv("MLCICD_DOCKER_URL", os.getenv("DOCKER_HOST", "unix:///var/run/docker.sock")),
        docker_conn_id=os.getenv("MLCICD_DOCKER_CONN_ID", "docker_default"),
        docker_network=os.getenv("MLCICD_DOCKER_NETWORK", "host"),
        search_parallelism=_number("MLCICD_SEARCH_PARALLELISM", 2, int, minimum=1),
        search_max_candidates=_number("MLCICD_SEARCH_MAX_CANDIDATES", 100, int, minimum=1),
        search_timeout_s=_number("MLCICD_SEARCH_TIMEOUT_S", 1800, int, minimum=1),
        bootstrap_max_resamples=_number("MLCICD_BOOTSTRAP_MAX_RESAMPLES", 20_000, int, minimum=100),
        train_max_rows=_number("MLCICD_TRAIN_MAX_ROWS", 1_000_000, int, minimum=100),
        memory_limit_mb=_number("MLCICD_MEMORY_LIMIT_MB", 0, int, minimum=0),
        deploy_queue=os.getenv("MLCICD_DEPLOY_QUEUE", "deploy").strip() or "deploy",
        docker_port=_port("MLCICD_DOCKER_PORT", 5200),
        docker_memory_mb=_number("MLCICD_DOCKER_MEMORY_MB", 1024, int, minimum=128),
        docker_cpus=_number("MLCICD_DOCKER_CPUS", 1.0, float, minimum=0.1),
        docker_pids=_number("MLCICD_DOCKER_PIDS", 256, int, minimum=16),
        build_timeout_s=_number("MLCICD_BUILD_TIMEOUT_S", 1800.0, float, minimum=1),
        kube_conn_id=os.getenv("MLCICD_KUBE_CONN_ID", "kubernetes_default"),
        kube_namespace=os.getenv("MLCICD_KUBE_NAMESPACE", "mlcicd-models"),
        kube_replicas=_number("MLCICD_KUBE_REPLICAS", 2, int, minimum=1),
        kube_image_pull_secrets=tuple(
            s.strip() for s in os.getenv("MLCICD_KUBE_IMAGE_PULL_SECRETS", "").split(",") if s.strip()
        ),
        kube_service_account=os.getenv("MLCICD_KUBE_SERVICE_ACCOUNT", ""),
        kube_deployer_image=os.getenv("MLCICD_KUBE_DEPLOYER_IMAGE", "alpine/k8s:1.31.4"),
        # Google archived Kaniko in 2025; osscontainertools/kaniko is the maintained fork (its debug image
        # keeps busybox: sh, wget, sha256sum, tar, which the build script uses).
        kaniko_image=os.getenv("MLCICD_KANIKO_IMAGE", "ghcr.io/osscontainertools/kaniko:v1.28.3-debug"),
        kaniko_context_uri=os.getenv("MLCICD_KANIKO_CONTEXT_URI") or None,
        kaniko_push_secret=os.getenv("MLCICD_KANIKO_PUSH_SECRET") or None,
        gate_floors={
            param: _number(
                floor_variable(param),
                default,
                float,
                minimum=0.5 if param == "confidence" else 0.0,
                maximum=0.999 if param == "confidence" else 1.0,
            )
            for param, default in GATE_FLOORS.items()
        },  # fmt: skip
        configured_signing_key=os.getenv("MLCICD_SIGNING_KEY", "").strip() or None,
        **_policy(),
    )


def _policy() -> dict[str, object]:
    """The installation's production rules (see mlcicd.policy), each checked and named when wrong."""
    from mlcicd.choices import DEPLOY_TARGETS, SCAN_MAJOR, is_name

    scan_major = os.getenv("MLCICD_SCAN_MAJOR", "reject").strip().lower() or "reject"
    if scan_major not in SCAN_MAJOR:
        raise ConfigError(f"MLCICD_SCAN_MAJOR={scan_major!r}: use one of {', '.join(SCAN_MAJOR)}")
    models, targets, approvers = (
        _list(v) for v in ("MLCICD_ALLOWED_MODELS", "MLCICD_ALLOWED_TARGETS", "MLCICD_APPROVERS")
    )
    if bad := [m for m in models if not is_name(m)]:
        raise ConfigError(f"MLCICD_ALLOWED_MODELS names {bad!r}, which are not model names")
    if bad := [t for t in targets if t not in DEPLOY_TARGETS]:
        raise ConfigError(
            f"MLCICD_ALLOWED_TARGETS names {bad!r}; the targets are {', '.join(DEPLOY_TARGETS)}"
        )
    four_eyes = _flag("MLCICD_APPROVAL_FOUR_EYES")
    if four_eyes and not approvers:
        raise ConfigError(
            "MLCICD_APPROVAL_FOUR_EYES=true needs MLCICD_APPROVERS: the Airflow user ids who may "
            "approve (the one who triggered a run is then left out of its approvers)"
        )
    return {
        "require_approval": _flag("MLCICD_REQUIRE_APPROVAL"),
        "scan_major": scan_major,
        "scan_allow_major_without_champion": _flag("MLCICD_SCAN_ALLOW_MAJOR_WITHOUT_CHAMPION"),
        "allowed_models": models,
        "allowed_targets": targets,
        "approvers": approvers,
        "approval_four_eyes": four_eyes,
    }


def _list(var: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.getenv(var, "").split(",") if v.strip())


def _flag(var: str) -> bool:
    raw = os.getenv(var, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{var}={raw!r} is not true or false")


N = TypeVar("N", int, float)


def _number(
    var: str, default: N, kind: Callable[[str], N], minimum: N | None = None, maximum: N | None = None
) -> N:
    """The number in ``var`` (``default`` when unset); a ConfigError naming the variable otherwise."""
    raw = os.getenv(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{var}={raw!r} is out of range: it must be {bounds}")
    return value


def _port(var: str, default: int) -> int:
    return _number(var, default, int, minimum=1, maximum=65535)


def _haproxy() -> str:
    """The HAProxy that `make install` unpacked (tools/haproxy.sh), else the one on PATH."""
    import shutil

    installed = PROJECT_ROOT / ".state" / "haproxy" / "bin" / "haproxy"
    return str(installed) if installed.exists() else shutil.which("haproxy") or str(installed)


def _path(value: str | None) -> Path | None:
    return Path(value).resolve() if value else None


def _schedule(value: str) -> str | None:
    """A cron expression or preset; ``none`` (or empty) means manual and API-triggered runs only."""
    return None if value.strip().lower() in ("", "none", "manual") else value.strip()


def airflow_env(home: Path) -> dict[str, str]:
    """The Airflow settings every embedded setup shares: home, SQLite DB, this project's DAGs and plugins."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
