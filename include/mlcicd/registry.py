"""MLflow tracking and registry helpers: experiments, the champion alias, registration, tags."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
RUN_ID_TAG = "mlcicd.airflow_run_id"
# Served = champion: a deploy tags the version it serves with the version it replaced ("none" for the
# first), and with the time the alias moved once it has. A version that serves, was deployed to
# replace the champion and has no promoted_at tag is an interrupted promotion.
REPLACES_TAG = "mlcicd.replaces"
PROMOTED_AT_TAG = "mlcicd.promoted_at"
NONE = "none"


@dataclass(frozen=True)
class ChampionRef:
    name: str
    version: str
    model_uri: str
    run_id: str | None
    digest: str | None = None  # of the model's files, recorded when it was trained


def client(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def ensure_experiment(c: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, creating it with an explicit artifact location when it is new."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None and "://" not in str(artifact_root):
        artifact_root.mkdir(parents=True, exist_ok=True)
        location = (artifact_root / name).resolve().as_uri()
    return c.create_experiment(name, artifact_location=location)


def check_distinct(c: MlflowClient, model_name: str) -> None:
    """Refuse a model name whose deployed resources would be another registered model's: Kubernetes
    names fold case and punctuation (``mlcicd_churn``, ``MLCICD_CHURN``, ``mlcicd.churn`` and
    ``mlcicd-churn`` are one Deployment), so a new name would be applied over that model's.

    Raises:
        ConfigError: the registered model it collides with, and what to do.
    """
    from mlcicd.errors import ConfigError
    from mlcicd.kube import resource_name

    mine = resource_name(model_name)
    for registered in _all_registered(c):
        if registered.name != model_name and resource_name(registered.name) == mine:
            raise ConfigError(
                f"model_name {model_name!r} names the same deployed resources ({mine}) as the registered model "
                f"{registered.name!r}: use {registered.name!r} itself, or a name that differs in more than case "
                "and punctuation"
            )


def _all_registered(c: MlflowClient) -> Iterator[Any]:
    """Every registered model, page by page."""
    token = None
    while True:
        page = c.search_registered_models(max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def champion(c: MlflowClient, model_name: str) -> ChampionRef | None:
    """The version holding the ``champion`` alias, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        mv = c.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    from mlcicd.serving.modelfile import DIGEST_TAG

    uri = f"models:/{model_name}/{mv.version}"
    return ChampionRef(model_name, str(mv.version), uri, mv.run_id, (mv.tags or {}).get(DIGEST_TAG))


class ChampionMoved(Exception):
    """The alias no longer names the version a deploy replaced: someone else moved it meanwhile."""


def move_champion(c: MlflowClient, model_name: str, version: str, *, expected: str | None) -> None:
    """Point ``champion`` at ``version`` only if it still names ``expected`` (None: no champion).

    Raises:
        ChampionMoved: it names another version now; nothing was changed.
    """
    now = champion(c, model_name)
    if (now.version if now else None) != expected:
        raise ChampionMoved(
            f"{model_name}@{CHAMPION} names v{now.version if now else '(none)'}, not v{expected or '(none)'}"
        )
    c.set_registered_model_alias(model_name, CHAMPION, version)


def mark_promoted(c: MlflowClient, model_name: str, version: str) -> None:
    """Tag the time the alias moved to ``version`` (best effort: the alias is what counts)."""
    from datetime import UTC, datetime

    try:
        c.set_model_version_tag(model_name, version, PROMOTED_AT_TAG, datetime.now(UTC).isoformat())
    except Exception as exc:
        import logging

        logging.getLogger("mlcicd").warning(
            "could not tag %s v%s %s: %s", model_name, version, PROMOTED_AT_TAG, exc
        )


def version_tags(c: MlflowClient, model_name: str, version: str) -> dict[str, str]:
    return dict(c.get_model_version(model_name, version).tags or {})


def register(
    c: MlflowClient,
    model_name: str,
    model_uri: str,
    run_id: str,
    airflow_run_id: str,
    digest: str,
    model_id: str | None = None,
) -> str:
    """Register the candidate once per Airflow run (a retried task finds the version it made),
    with the digest of its files that every later load checks. ``model_id`` (the logged model's):
    a tracking server refuses a ``models:/m-...`` source without it; a local store does not check."""
    from mlflow.exceptions import MlflowException

    from mlcicd.serving.modelfile import DIGEST_TAG

    try:
        c.create_registered_model(model_name, description="Trained and gated by the mlcicd ml_retrain DAG.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    for mv in c.search_model_versions(f"name = '{model_name}'"):
        if (mv.tags or {}).get(RUN_ID_TAG) == airflow_run_id:
            return str(mv.version)
    mv = c.create_model_version(
        model_name,
        source=model_uri,
        run_id=run_id,
        tags={RUN_ID_TAG: airflow_run_id, DIGEST_TAG: digest},
        model_id=model_id,
    )
    return str(mv.version)


def tag_decision(
    c: MlflowClient,
    *,
    run_id: str,
    model_id: str,
    decision: dict[str, Any],
    model_name: str | None = None,
    version: str | None = None,
) -> None:
    """Record the gate's decision on the run (JSON artifact), the logged model and the version."""
    import mlflow

    c.log_dict(run_id, decision, "gate/decision.json")
    c.set_tag(run_id, "mlcicd.gate", decision["decision"])
    tags = {"mlcicd.gate": decision["decision"], "mlcicd.gate_reasons": json.dumps(decision["reasons"])}
    mlflow.set_logged_model_tags(model_id, tags)
    if model_name and version:
        for k, v in tags.items():
            c.set_model_version_tag(model_name, version, k, v)


def log_validation(c: MlflowClient, run_id: str, validated: dict[str, Any], suite_artifact: str) -> None:
    """Log a batch's validation with the model trained on it: outcome, shift, and the suite inferred
    from the batch (the reference of the next batches should this model be promoted)."""
    folder, _, _ = suite_artifact.rpartition("/")
    c.log_dict(run_id, validated, f"{folder}/outcome.json")
    if validated.get("reference_suite_path"):
        c.log_artifact(run_id, validated["reference_suite_path"], folder)
    c.log_metric(run_id, "validation_shift", len(validated.get("shift", [])))
    c.set_tag(run_id, "mlcicd.validation_reference", validated.get("reference", ""))


@contextmanager
def _downloaded_model(model_uri: str, tracking_uri: str) -> Iterator[Path]:
    """A logged model's files, downloaded to a temporary folder for the ``with`` block.

    Raises:
        FileNotFoundError: the store has no model files there (MLflow returns an empty folder).
    """
    import tempfile

    import mlflow
    import mlflow.artifacts

    # models:/ URIs resolve through the global tracking URI (each task is a process).
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mlcicd-model-") as tmp:
        path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri
            )
        )
        if not (path / "MLmodel").is_file():
            raise FileNotFoundError(f"the artifact store has no model files for {model_uri}")
        yield path


def model_digest(model_uri: str, tracking_uri: str) -> str:
    """The digest of a logged model's files as the artifact store holds them now."""
    from mlcicd.serving import modelfile

    with _downloaded_model(model_uri, tracking_uri) as path:
        return modelfile.digest(path)


def load_verified(model_uri: str, expected_digest: str | None, tracking_uri: str, what: str) -> Any:
    """Load a logged scikit-learn model, once its files match ``expected_digest`` (see
    :mod:`mlcicd.serving.modelfile`); ``what`` names it in errors, e.g. ``mlcicd_churn v3``.

    Raises:
        UntrustedModel: tampered files, a pickle, or types this project does not train.
    """
    from mlcicd.serving import modelfile

    with _downloaded_model(model_uri, tracking_uri) as path, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return modelfile.load(path, expected_digest, what)
