"""Deployment settings, read from the environment in one place.

Run-time knobs (thresholds, hyperparameters, the dataset) are DAG Params; what differs between
installations (where state lives, which MLflow server, which deploy target) is read here.
Every value has a local default so that a fresh checkout runs with no configuration. Each variable
is declared once, in :data:`VARIABLES`, which :func:`load` reads and ``python -m mlcicd docs`` prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
    rollout_lease_minutes: float  # how long a staged candidate is its run's alone
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
    approvers: tuple[str, ...] = ()  # Airflow user ids who may answer an approval; empty: any
    approval_four_eyes: bool = False  # who triggered a run may not approve it (needs approvers)
    # The gate's floors: a run's params may tighten them, never loosen them.
    gate_floors: dict[str, float] = field(default_factory=lambda: dict(GATE_FLOORS))
    configured_signing_key: str | None = field(default=None, repr=False)  # MLCICD_SIGNING_KEY
    projects: tuple[str, ...] = ()  # model project folders: one retrain and one monitor DAG each

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


# A reader turns a variable's raw value into the field's value: reader(name, default).
Reader = Callable[[str, Any], Any]
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


def _num(kind: Callable[[str], N], minimum: N | None = None, maximum: N | None = None) -> Reader:
    return lambda var, default: _number(var, default, kind, minimum, maximum)


def _text(var: str, default: Any) -> Any:
    return os.getenv(var, default)


def _given(var: str, default: Any) -> Any:
    """The value without surrounding spaces, or ``default`` when unset or blank."""
    return os.getenv(var, "").strip() or default


def _word(var: str, default: str) -> str:
    return os.getenv(var, default).strip().lower()


def _url(var: str, default: str) -> str:
    return os.getenv(var, default).rstrip("/")


def _dir(var: str, default: Path | None) -> Path | None:
    """A folder, resolved: ``default`` when unset or empty (None: no folder)."""
    value = os.getenv(var) or default
    return Path(value).resolve() if value else None


def _schedule(var: str, default: str) -> str | None:
    """A cron expression or preset; ``none`` (or empty) means manual and API-triggered runs only."""
    value = os.getenv(var, default)
    return None if value.strip().lower() in ("", "none", "manual") else value.strip()


def _list(var: str, default: str = "") -> tuple[str, ...]:
    """Comma-separated values (``default``, also comma-separated, when unset or empty)."""
    return tuple(v.strip() for v in (os.getenv(var) or default).split(",") if v.strip())


def _flag(var: str, default: bool = False) -> bool:
    raw = os.getenv(var, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{var}={raw!r} is not true or false")


def _haproxy(values: dict[str, Any]) -> str:
    """The HAProxy that `make install` unpacked (tools/haproxy.sh), else the one on PATH."""
    import shutil

    installed = PROJECT_ROOT / ".state" / "haproxy" / "bin" / "haproxy"
    return str(installed) if installed.exists() else shutil.which("haproxy") or str(installed)


@dataclass(frozen=True)
class Variable:
    """An environment variable: the Settings field it fills (``gate_floors.min_f1``: a dict's key), its
    default (or a function of the fields read before it), a variable read instead when it is unset, and
    the default as the docs show it where the value would not say it."""

    name: str
    field: str
    doc: str
    default: Any = None
    read: Reader = _text
    fallback: str | None = None
    shown: str | None = None


V = Variable
# Read in this order (a default may use the fields above it); the docs list them in this order too.
VARIABLES: tuple[Variable, ...] = (
    V("MLCICD_STATE_DIR", "state_dir", "where all local state lives: the Airflow home, the MLflow store, runs, suites, reports, deployed servers", PROJECT_ROOT / ".state", _dir, shown="`.state` in the project folder"),
    V("MLCICD_TRACKING_URI", "tracking_uri", "MLflow tracking server", lambda s: f"sqlite:///{s['state_dir'] / 'mlflow' / 'mlflow.db'}", fallback="MLFLOW_TRACKING_URI", shown="`sqlite:///<state>/mlflow/mlflow.db`"),
    V("MLCICD_REGISTRY_URI", "registry_uri", "MLflow model registry", lambda s: s["tracking_uri"], shown="the tracking URI"),
    V("MLCICD_EXPERIMENT", "experiment_name", "MLflow experiment of the runs", "ml_retrain"),
    V("MLCICD_DEPLOY_TARGET", "deploy_target", "deploy target when a run's `deploy_target` param is empty: `local`, `docker` or `kubernetes`", "local"),
    V("MLCICD_LOCAL_HOST", "local_host", "host of the local target's stable endpoint", "127.0.0.1"),
    V("MLCICD_LOCAL_PORT", "local_port", "port of the local target's stable endpoint (its traffic front)", 5100, _num(int, 1, 65535)),
    V("MLCICD_LOCAL_SERVER_MODULE", "local_server_module", "the module the local target runs (`python -m`) as each model server; the tests point it at a broken one", "mlcicd.serving"),
    V("MLCICD_HEALTH_TIMEOUT_S", "health_timeout_s", "how long a new model server may take to become healthy", 90.0, _num(float, 1)),
    V("MLCICD_HAPROXY", "haproxy_bin", "the traffic front's HAProxy (2.6+; `make install` provides it)", _haproxy, _given, shown="`.state/haproxy/bin/haproxy`, else `haproxy` on PATH"),
    V("MLCICD_DEPLOY_LOCK_TIMEOUT_S", "deploy_lock_timeout_s", "how long a deploy waits for another deploy of the same model to the same target (one at a time per target and model); past it the task fails, changes nothing, and Airflow retries it", 1800.0, _num(float, 0)),
    V("MLCICD_APPROVAL_TIMEOUT_MINUTES", "approval_timeout_minutes", "an unanswered approval rejects after this long (read when the DAG is parsed)", 60.0, _num(float, 0.1)),
    V("MLCICD_ROLLOUT_LEASE_MINUTES", "rollout_lease_minutes", "how long a staged candidate is its run's alone; after it, the next run may take out a dead run's candidate", 240.0, _num(float, 1)),
    V("MLCICD_SUITES_DIR", "suites_dir", "declared GX suites, one JSON file per dataset", PROJECT_ROOT / "include" / "suites", _dir, shown="`include/suites`"),
    V("MLCICD_RETRAIN_SCHEDULE", "retrain_schedule", "schedule of `ml_retrain` (cron or preset, read when the DAG is parsed); `none` for API and manual runs only", "@daily", _schedule),
    V("MLCICD_MONITOR_SCHEDULE", "monitor_schedule", "schedule of `ml_monitor`; `none` for manual runs only", "@hourly", _schedule),
    V("MLCICD_MLFLOW_URL", "mlflow_ui_url", "MLflow UI base URL, for links from the Airflow UI and the trigger client", "http://127.0.0.1:5000", _url),
    V("AIRFLOW__API__BASE_URL", "airflow_url", "Airflow's own setting, read for the addresses of the reports the plugin serves", "http://localhost:8080", _url),
    V("MLCICD_PREDICTION_LOG_DIR", "prediction_log_dir", "where the served model logs predictions (the server's `--prediction-log`) and `ml_monitor` reads them", None, _dir, shown="`<state>/deployments/local/<model>/predictions`"),
    V("MLCICD_LABELS_DIR", "labels_dir", "ground-truth labels, JSON lines `{\"request_id\", \"row\", \"label\"}`", None, _dir, shown="`<state>/labels/<model>`"),
    V("MLCICD_DATA_ROOTS", "data_roots", "where batches may be read from: comma-separated folders (symlinks resolved) and URI prefixes (`s3://bucket/batches`); anything else is refused before it is opened", lambda s: str(s["state_dir"] / "data"), _list, shown="`<state>/data`"),
    V("MLCICD_PROJECTS", "projects", "model project folders (comma-separated), each holding an `mlcicd.toml`: one `ml_retrain__<model>` and one `ml_monitor__<model>` DAG each, beside `ml_retrain` and `ml_monitor` (read when the DAGs are parsed); see [Model projects](projects.md)", "", _list, shown="(none)"),
    V("MLCICD_IMAGE_BUILDER", "image_builder", "`docker` (the Docker provider's hook), `kaniko` (a pod in the cluster), `none`; `auto` builds for the docker and kubernetes targets only", "auto", _word),
    V("MLCICD_BASE_IMAGE", "base_image", "base of the model-server image (any Debian-based Python 3.11 with venv)", "python:3.11.14-slim-bookworm"),
    V("MLCICD_DOCKER_URL", "docker_url", "the Docker engine for builds and the docker target", "unix:///var/run/docker.sock", fallback="DOCKER_HOST"),
    V("MLCICD_DOCKER_CONN_ID", "docker_conn_id", "Airflow connection of the registry; when it exists, images are pushed there (with its login, if it has one)", "docker_default"),
    V("MLCICD_DOCKER_NETWORK", "docker_network", "`host`: the containers listen on the host's network; else a Docker network to join (the front's port 8080 published)", "host"),
    V("MLCICD_SEARCH_PARALLELISM", "search_parallelism", "candidates of one run's search trained at once (`max_active_tis_per_dagrun` of `train_candidate`; read when the DAG is parsed)", 2, _num(int, 1)),
    V("MLCICD_SEARCH_MAX_CANDIDATES", "search_max_candidates", "ceiling of the `search_max_candidates` param, and its value when a run leaves it empty", 100, _num(int, 1)),
    V("MLCICD_SEARCH_TIMEOUT_S", "search_timeout_s", "ceiling of the `search_timeout_s` param, and its value when a run leaves it empty", 1800, _num(int, 1)),
    V("MLCICD_BOOTSTRAP_MAX_RESAMPLES", "bootstrap_max_resamples", "ceiling of the `bootstrap_resamples` param: a run asking more is lowered to it (the decision record's `comparison.resamples` says how many were drawn)", 20_000, _num(int, 100)),
    V("MLCICD_TRAIN_MAX_ROWS", "train_max_rows", "a larger training part is fitted on a stratified sample of this many rows (the holdout stays whole); the run record and the MLflow run keep `train_rows` and `train_rows_available`", 1_000_000, _num(int, 100)),
    V("MLCICD_MEMORY_LIMIT_MB", "memory_limit_mb", "a batch whose run would need more (about 6 times its in-memory size, estimated from the file before it is read) is refused at ingest with a message, rather than killed by the kernel half-way; 0: the machine's or container's available memory", 0, _num(int, 0)),
    V("MLCICD_DEPLOY_QUEUE", "deploy_queue", "the Celery queue of the tasks that build, deploy and switch traffic (only its workers need the Docker socket or the cluster's rights); ignored by the Local and Kubernetes executors", "deploy", _given),
    V("MLCICD_DOCKER_PORT", "docker_port", "stable port of the docker target (its traffic front)", 5200, _num(int, 1, 65535)),
    V("MLCICD_DOCKER_MEMORY_MB", "docker_memory_mb", "each model-server container's memory on the docker target (no swap beyond)", 1024, _num(int, 128)),
    V("MLCICD_DOCKER_CPUS", "docker_cpus", "each model-server container's CPUs on the docker target", 1.0, _num(float, 0.1)),
    V("MLCICD_DOCKER_PIDS", "docker_pids", "each model-server container's process limit on the docker target", 256, _num(int, 16)),
    V("MLCICD_BUILD_TIMEOUT_S", "build_timeout_s", "image build timeout", 1800.0, _num(float, 1)),
    V("MLCICD_KUBE_CONN_ID", "kube_conn_id", "Airflow connection of the cluster", "kubernetes_default"),
    V("MLCICD_KUBE_NAMESPACE", "kube_namespace", "where the models, their build and deploy pods run (a namespace with none of Airflow's Secrets)", "mlcicd-models"),
    V("MLCICD_KUBE_REPLICAS", "kube_replicas", "the stable Deployment's replicas on the kubernetes target", 2, _num(int, 1)),
    V("MLCICD_KUBE_IMAGE_PULL_SECRETS", "kube_image_pull_secrets", "comma-separated secret names, for the model pods and the deploy pod", "", _list),
    V("MLCICD_KUBE_SERVICE_ACCOUNT", "kube_service_account", "the deploy pods' account: by default the model's own, `mlcicd-<model>-deployer`, which `python -m mlcicd k8s-rbac MODEL` renders (rights on that model's Deployments and Services only); set it only to share one account between models", "", shown="(each model's own)"),
    V("MLCICD_KUBE_DEPLOYER_IMAGE", "kube_deployer_image", "the deploy pod's image: bash, kubectl, curl and jq", "alpine/k8s:1.31.4"),
    V("MLCICD_KANIKO_IMAGE", "kaniko_image", "the Kaniko builder: osscontainertools' fork (Google archived Kaniko in 2025), whose debug image has the busybox tools the build script uses (sh, wget, sha256sum, tar)", "ghcr.io/osscontainertools/kaniko:v1.28.3-debug"),
    V("MLCICD_KANIKO_CONTEXT_URI", "kaniko_context_uri", "the bucket prefix (`s3://…`, `gs://…`) Kaniko's build context is uploaded to; the pod fetches it by a signed URL and builds it only if its sha256 is the one Airflow uploaded", None, _given),
    V("MLCICD_KANIKO_PUSH_SECRET", "kaniko_push_secret", "a `kubernetes.io/dockerconfigjson` secret mounted as Kaniko's `/kaniko/.docker/config.json`, for registries that need a login", None, _given),
    V("MLCICD_GATE_MIN_ROC_AUC", "gate_floors.min_roc_auc", "the installation's floor under the `min_roc_auc` param: a run may ask for more, never less (a lower param is raised to the floor, and the decision says so)", GATE_FLOORS["min_roc_auc"], _num(float, 0.0, 1.0)),
    V("MLCICD_GATE_MIN_ACCURACY", "gate_floors.min_accuracy", "the floor under the `min_accuracy` param, likewise", GATE_FLOORS["min_accuracy"], _num(float, 0.0, 1.0)),
    V("MLCICD_GATE_MIN_F1", "gate_floors.min_f1", "the floor under the `min_f1` param, likewise", GATE_FLOORS["min_f1"], _num(float, 0.0, 1.0)),
    V("MLCICD_GATE_MAX_DEGRADATION", "gate_floors.max_degradation", "the ceiling over the `max_degradation` param: a larger one is lowered to it", GATE_FLOORS["max_degradation"], _num(float, 0.0, 1.0)),
    V("MLCICD_GATE_CONFIDENCE", "gate_floors.confidence", "the floor under the `confidence` param", GATE_FLOORS["confidence"], _num(float, 0.5, 0.999)),
    V("MLCICD_SIGNING_KEY", "configured_signing_key", "the key that signs each version's record (model digest, image, reference suite and sample); 32 characters or more; see [Security](security.md)", None, _given, shown="a key made once in `<state>/keys/signing.key`"),
    V("MLCICD_SCAN_MAJOR", "scan_major", "the installation's rule for a new MAJOR scan issue (`reject` or `warn`); the `scan_major` param may only tighten it", "reject", lambda v, d: _word(v, d) or d),
    V("MLCICD_ALLOWED_MODELS", "allowed_models", "comma-separated model names a run may use; others are refused at `reconcile_serving`", "", _list, shown="(any)"),
    V("MLCICD_ALLOWED_TARGETS", "allowed_targets", "comma-separated deploy targets a run may use; others are refused at `reconcile_serving`", "", _list, shown="(any)"),
    V("MLCICD_APPROVERS", "approvers", "Airflow user ids who may answer an approval", "", _list, shown="(anyone Airflow allows)"),
    V("MLCICD_APPROVAL_FOUR_EYES", "approval_four_eyes", "the user who triggered a run may not answer its approval (needs `MLCICD_APPROVERS`)", False, _flag),
    V("MLCICD_REQUIRE_APPROVAL", "require_approval", "every promotion waits for a human answer, whatever the `approval` param says", False, _flag),
    V("MLCICD_SCAN_ALLOW_MAJOR_WITHOUT_CHAMPION", "scan_allow_major_without_champion", "the installation's rule for MAJOR scan issues with no champion; the `scan_allow_major_without_champion` param may only tighten it", False, _flag),
)  # fmt: skip


def load() -> Settings:
    """Read the settings from the environment (:data:`VARIABLES`), with local defaults."""
    values: dict[str, Any] = {}
    for var in VARIABLES:
        default = var.default(values) if callable(var.default) else var.default
        if var.fallback:
            default = os.getenv(var.fallback, default)
        value = var.read(var.name, default)
        group, _, key = var.field.partition(".")
        if key:
            values.setdefault(group, {})[key] = value
        else:
            values[group] = value
    _check_policy(values)
    return Settings(**values)


def _check_policy(values: dict[str, Any]) -> None:
    """The installation's production rules (see mlcicd.policy), each checked and named when wrong."""
    from mlcicd.choices import DEPLOY_TARGETS, SCAN_MAJOR, is_name

    if (scan_major := values["scan_major"]) not in SCAN_MAJOR:
        raise ConfigError(f"MLCICD_SCAN_MAJOR={scan_major!r}: use one of {', '.join(SCAN_MAJOR)}")
    if bad := [m for m in values["allowed_models"] if not is_name(m)]:
        raise ConfigError(f"MLCICD_ALLOWED_MODELS names {bad!r}, which are not model names")
    if bad := [t for t in values["allowed_targets"] if t not in DEPLOY_TARGETS]:
        raise ConfigError(
            f"MLCICD_ALLOWED_TARGETS names {bad!r}; the targets are {', '.join(DEPLOY_TARGETS)}"
        )
    if values["approval_four_eyes"] and not values["approvers"]:
        raise ConfigError(
            "MLCICD_APPROVAL_FOUR_EYES=true needs MLCICD_APPROVERS: the Airflow user ids who may "
            "approve (the one who triggered a run is then left out of its approvers)"
        )


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
