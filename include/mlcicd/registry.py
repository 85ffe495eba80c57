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
# The signed record of a version (mlcicd.signing): these tags, the version's run and source.
SIGNATURE_TAG = "mlcicd.signature"
SIGNED_ARTIFACTS_TAG = "mlcicd.signed_artifacts"  # {artifact path in the run: sha256} a later run trusts
IMAGE_TAG, IMAGE_DIGEST_TAG = "mlcicd.image", "mlcicd.image_digest"


@dataclass(frozen=True)
class ChampionRef:
    name: str
    version: str
    model_uri: str
    run_id: str | None
    digest: str | None = None  # of the model's files, recorded when it was trained


def version_record(mv: Any) -> dict[str, Any]:
    """What a version's signature vouches for: every field of its registry entry a later run trusts."""
    from mlcicd.serving.modelfile import DIGEST_TAG

    tags = mv.tags or {}
    try:
        artifacts = json.loads(tags.get(SIGNED_ARTIFACTS_TAG) or "{}")
    except ValueError:
        artifacts = {"(unreadable)": tags.get(SIGNED_ARTIFACTS_TAG)}
    return {
        "name": mv.name, "version": str(mv.version), "run_id": mv.run_id or "", "source": mv.source or "",
        "model_digest": tags.get(DIGEST_TAG, ""), "image": tags.get(IMAGE_TAG, ""),
        "image_digest": tags.get(IMAGE_DIGEST_TAG, ""), "artifacts": artifacts,
    }  # fmt: skip


def sign_version(
    c: MlflowClient, key: bytes, model_name: str, version: str, artifacts: dict[str, str] | None = None
) -> None:
    """Sign the version's record as MLflow holds it now (with ``artifacts``' digests, when given)."""
    from mlcicd import signing

    if artifacts is not None:
        c.set_model_version_tag(
            model_name, version, SIGNED_ARTIFACTS_TAG, json.dumps(artifacts, sort_keys=True)
        )
    mv = c.get_model_version(model_name, version)
    c.set_model_version_tag(model_name, version, SIGNATURE_TAG, signing.sign(key, version_record(mv)))


def trusted_version(c: MlflowClient, key: bytes, model_name: str, version: str) -> Any:
    """The version's registry entry, once its signature vouches for it.

    Raises:
        UntrustedArtifact: unsigned, signed with another key, or changed since it was signed.
    """
    from mlcicd import signing
    from mlcicd.errors import UntrustedArtifact

    mv = c.get_model_version(model_name, version)
    why = signing.problem(key, version_record(mv), (mv.tags or {}).get(SIGNATURE_TAG))
    if why:
        raise UntrustedArtifact(
            f"{model_name} v{version}: its record in MLflow (model digest, image, reference artifacts) {why}. "
            "Nothing was changed; the champion stays. If MLflow holds what you expect, re-sign it "
            f"deliberately with this installation's key: python -m mlcicd resign {model_name} {version}"
        )
    return mv


def record_tags(
    c: MlflowClient, key: bytes, model_name: str, version: str, tags: dict[str, str | None]
) -> None:
    """Set tags that are part of the signed record (the image's), once the record as it was is vouched
    for, and sign it again: a tampered record is never signed over."""
    trusted_version(c, key, model_name, version)
    for tag, value in tags.items():
        if value:
            c.set_model_version_tag(model_name, version, tag, value)
    sign_version(c, key, model_name, version)


def trusted_champion(c: MlflowClient, key: bytes, model_name: str) -> ChampionRef | None:
    """:func:`champion`, once its signature vouches for its record (see :func:`trusted_version`)."""
    ref = champion(c, model_name)
    if ref is not None:
        trusted_version(c, key, model_name, ref.version)
    return ref


def trusted_artifact(
    c: MlflowClient, key: bytes, model_name: str, version: str, path: str, dst: Path
) -> Path | None:
    """A signed artifact of the version's run, downloaded into ``dst`` and checked against its signed
    digest; None when the run has no such artifact and the record names none.

    Raises:
        UntrustedArtifact: the record is not vouched for, or the file is not the one signed.
    """
    import mlflow

    from mlcicd import signing
    from mlcicd.errors import UntrustedArtifact

    record = version_record(trusted_version(c, key, model_name, version))
    folder, _, _ = path.rpartition("/")
    present = path in {f.path for f in c.list_artifacts(record["run_id"], folder or None)}
    expected = record["artifacts"].get(path)
    if not present and expected is None:
        return None
    where = f"runs:/{record['run_id']}/{path} ({model_name} v{version})"
    if expected is None or not present:
        raise UntrustedArtifact(
            f"{where} is {'not in the signed record' if present else 'missing, yet its digest was signed'}: "
            f"nothing reads it. If that is expected, re-sign deliberately: python -m mlcicd resign {model_name} {version}"
        )  # fmt: skip
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{record['run_id']}/{path}", dst_path=str(dst)))
    if signing.file_digest(local) != expected:
        raise UntrustedArtifact(
            f"{where} changed after it was signed: nothing reads it and the champion stays. Restore it, or "
            f"if the new file is right, re-sign deliberately: python -m mlcicd resign {model_name} {version}"
        )
    return local


def trusted_reference(c: MlflowClient, key: bytes, model_name: str, version: str) -> Any:
    """The version's training sample (features and ``__prediction__``), checked against its signed
    digest; UntrustedArtifact otherwise, FileNotFoundError when the version logged none."""
    import tempfile

    import pandas as pd

    from mlcicd.training import REFERENCE_ARTIFACT

    with tempfile.TemporaryDirectory(prefix="mlcicd-reference-") as tmp:
        path = trusted_artifact(c, key, model_name, version, REFERENCE_ARTIFACT, Path(tmp))
        if path is None:
            raise FileNotFoundError(
                f"{model_name} v{version} logged no training sample ({REFERENCE_ARTIFACT})"
            )
        return pd.read_parquet(path)


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
    for registered in c.search_registered_models(max_results=1000):
        if registered.name != model_name and resource_name(registered.name) == mine:
            raise ConfigError(
                f"model_name {model_name!r} names the same deployed resources ({mine}) as the registered model "
                f"{registered.name!r}: use {registered.name!r} itself, or a name that differs in more than case "
                "and punctuation"
            )


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


def release_of(c: MlflowClient, model_name: str, version: str, key: bytes) -> Any:
    """The :class:`~mlcicd.release.Release` of a registered version, from its signed registry record.

    Raises:
        UntrustedArtifact: the record is not vouched for by the installation's key.
    """
    from mlcicd.release import Release
    from mlcicd.serving.modelfile import DIGEST_TAG

    mv = trusted_version(c, key, model_name, version)
    tags = mv.tags or {}
    image = tags.get(IMAGE_TAG)
    return Release(
        model_name, str(version), f"models:/{model_name}/{version}", mv.run_id or "", tags.get(RUN_ID_TAG, ""),
        image=image if image and image != "build_failed" else None, image_digest=tags.get(IMAGE_DIGEST_TAG),
        model_digest=tags.get(DIGEST_TAG),
    )  # fmt: skip


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

    mlflow.set_tracking_uri(
        tracking_uri
    )  # models:/ URIs resolve through the global one (each task is a process)
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
