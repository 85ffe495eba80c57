"""What a run trusts of the registry: a version's record, signed with the installation's key.

The record (:func:`version_record`) is every field a later run acts on: the model files' digest, the
image, the digests of the run's artifacts a later run reads back (the reference suite, the training
sample). It is signed when the version is registered and again when the build records its image;
every reader checks it first (:func:`trusted_version`), so that write access to MLflow or its
artifact store is not enough to change what serves or what a batch is judged against.
``python -m mlcicd resign`` signs a record again, deliberately.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.registry import RUN_ID_TAG, ChampionRef, champion

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The signed record of a version (mlcicd.signing): these tags, the version's run and source.
SIGNATURE_TAG = "mlcicd.signature"
SIGNED_ARTIFACTS_TAG = "mlcicd.signed_artifacts"  # {artifact path in the run: sha256} a later run trusts
IMAGE_TAG, IMAGE_DIGEST_TAG = "mlcicd.image", "mlcicd.image_digest"
# The installation's signature on a promotion: a version may be @champion (served, judged against) only if
# mlcicd promoted it; a signed version that was rejected or rolled back is not a champion.
PROMOTION_TAG = "mlcicd.promotion"


def version_record(mv: Any) -> dict[str, Any]:
    """What a version's signature vouches for: every field of its registry entry a later run trusts."""
    from mlcicd.serving.modelfile import DIGEST_TAG

    tags = mv.tags or {}
    try:
        artifacts = json.loads(tags.get(SIGNED_ARTIFACTS_TAG) or "{}")
    except ValueError:
        artifacts = {"(unreadable)": tags.get(SIGNED_ARTIFACTS_TAG)}
    return {
        "name": mv.name,
        "version": str(mv.version),
        "run_id": mv.run_id or "",
        "source": mv.source or "",
        "model_digest": tags.get(DIGEST_TAG, ""),
        "image": tags.get(IMAGE_TAG, ""),
        "image_digest": tags.get(IMAGE_DIGEST_TAG, ""),
        "artifacts": artifacts,
        "airflow_run_id": tags.get(RUN_ID_TAG, ""),  # rendered into manifests: signed like the rest
        # A model project's version: the code it was trained on (absent for ml_retrain's built-in families)
        **({"code": code} if (code := code_of(tags)) else {}),
    }


def project_folder(model_name: str) -> str | None:
    """The folder of the configured model project (``MLCICD_PROJECTS``) that owns ``model_name``."""
    from mlcicd import project, settings

    owner = project.of_model(model_name, settings.load().projects, settings.PROJECT_ROOT)
    return str(owner.root) if owner else None


def code_of(tags: dict[str, str]) -> dict[str, str]:
    """The model project's code version a version's tags hold (``{}`` for none)."""
    from mlcicd.project.code import TAG_PREFIX

    return {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}


def sign_version(
    c: MlflowClient,
    key: bytes,
    model_name: str,
    version: str,
    artifacts: dict[str, str] | None = None,
    expect: dict[str, Any] | None = None,
) -> None:
    """Sign the version's record (with ``artifacts``' digests, when given), once MLflow holds what the
    signer knows it should: ``expect`` names those fields (what this run trained, what was shown).

    Raises:
        UntrustedArtifact: the record differs from ``expect``: nothing is signed.
    """
    from mlcicd import signing
    from mlcicd.errors import UntrustedArtifact

    if artifacts is not None:
        c.set_model_version_tag(
            model_name, version, SIGNED_ARTIFACTS_TAG, json.dumps(artifacts, sort_keys=True)
        )
    record = version_record(c.get_model_version(model_name, version))
    changed = sorted(k for k, v in (expect or {}).items() if record.get(k) != v)
    if changed:
        raise UntrustedArtifact(
            f"{model_name} v{version}: MLflow holds {', '.join(changed)} other than expected, so it was not "
            "signed. Check who changed the version meanwhile; nothing serves it"
        )
    c.set_model_version_tag(model_name, version, SIGNATURE_TAG, signing.sign(key, record))


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
    was = version_record(trusted_version(c, key, model_name, version))
    fields = {IMAGE_TAG: "image", IMAGE_DIGEST_TAG: "image_digest"}
    expect = {**was, **{fields[t]: v for t, v in tags.items() if t in fields and v}}
    for tag, value in tags.items():
        if value:
            c.set_model_version_tag(model_name, version, tag, value)
    sign_version(c, key, model_name, version, expect=expect)  # nothing else changed meanwhile


def sign_promotion(c: MlflowClient, key: bytes, model_name: str, version: str) -> None:
    """Record, signed, that this installation promotes ``version`` (before the alias moves to it)."""
    from mlcicd import signing

    record = {"promoted": model_name, "version": str(version)}
    c.set_model_version_tag(model_name, str(version), PROMOTION_TAG, signing.sign(key, record))


def check_promoted(key: bytes, mv: Any) -> None:
    """Raise UntrustedArtifact unless ``mv`` carries this installation's signed promotion."""
    from mlcicd import signing
    from mlcicd.errors import UntrustedArtifact

    record = {"promoted": mv.name, "version": str(mv.version)}
    why = signing.problem(key, record, (mv.tags or {}).get(PROMOTION_TAG))
    if why:
        raise UntrustedArtifact(
            f"{mv.name} v{mv.version} is @champion, but its promotion {why}: the alias was moved outside mlcicd "
            "(a rejected or rolled-back version is signed, never promoted). Nothing was changed. Point the alias "
            f"back, or if v{mv.version} should serve, sign its promotion deliberately: python -m mlcicd resign "
            f"{mv.name} {mv.version}"
        )


def trusted_champion(c: MlflowClient, key: bytes, model_name: str) -> ChampionRef | None:
    """:func:`champion`, built from the version its signature vouches for (see :func:`trusted_version`)."""
    from mlcicd.serving.modelfile import DIGEST_TAG

    ref = champion(c, model_name)
    if ref is None:
        return None
    mv = trusted_version(c, key, model_name, ref.version)  # the digest below is the one verified
    check_promoted(key, mv)
    version = str(mv.version)
    return ChampionRef(
        model_name, version, f"models:/{model_name}/{version}", mv.run_id, (mv.tags or {}).get(DIGEST_TAG)
    )


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
        )
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{record['run_id']}/{path}", dst_path=str(dst)))
    if signing.file_digest(local) != expected:
        raise UntrustedArtifact(
            f"{where} changed after it was signed: nothing reads it and the champion stays. Restore it, or "
            f"if the new file is right, re-sign deliberately: python -m mlcicd resign {model_name} {version}"
        )
    return local


def release_of(
    c: MlflowClient, model_name: str, version: str, key: bytes, code_path: str | None = None
) -> Any:
    """The :class:`~mlcicd.release.Release` of a registered version, from its signed registry record;
    a model project's version reads its code from ``code_path`` (the project's folder).

    Raises:
        UntrustedArtifact: the record is not vouched for by the installation's key.
    """
    from mlcicd.release import Release
    from mlcicd.serving.modelfile import DIGEST_TAG

    mv = trusted_version(c, key, model_name, version)
    tags = mv.tags or {}
    image, code = tags.get(IMAGE_TAG), code_of(tags)
    return Release(
        model_name,
        str(version),
        f"models:/{model_name}/{version}",
        mv.run_id or "",
        tags.get(RUN_ID_TAG, ""),
        image=image if image and image != "build_failed" else None,
        image_digest=tags.get(IMAGE_DIGEST_TAG),
        model_digest=tags.get(DIGEST_TAG),
        code_path=code_path or (project_folder(model_name) if code else None),
        code_digest=code.get("digest"),
        code_commit=code.get("commit"),
    )
