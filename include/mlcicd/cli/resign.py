"""``resign``: sign a model version's record with this installation's key, deliberately.

A run stops when a version's record in MLflow (model digest, image, reference artifacts) is not
vouched for by the key (:mod:`mlcicd.signing`): after a key rotation, for a version from before
signatures, or because someone changed it. This command shows the record as MLflow holds it now,
with the artifacts' digests computed from the store and the reference suite held to its schema,
and signs it only with ``--yes`` (and, when the version is ``@champion``, its promotion).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from mlcicd.names import ExitCode


def register(sub: Any) -> None:
    resign = sub.add_parser(
        "resign",
        help="sign a model version's record with this installation's key (after checking it)",
        description="Shows what would be signed; signs only with --yes. Exit status: 0 signed, "
        "1 the record cannot be signed (a suite outside its schema, MLflow unreachable), 2 shown, not signed.",
    )
    resign.add_argument("model", help="registered model name")
    resign.add_argument("version", help="the version to sign")
    resign.add_argument("--yes", action="store_true", help="sign it (without: only show the record)")
    resign.add_argument("--json", action="store_true", help="print one JSON object")
    resign.set_defaults(func=resign_command)


def resign_command(args: argparse.Namespace) -> int:
    from mlcicd import settings as settings_module
    from mlcicd.cli.env import prepare_environment
    from mlcicd.errors import MlcicdError

    settings = settings_module.load()
    prepare_environment(settings)
    try:
        shown = _record(settings, args.model, str(args.version))
        if args.yes:
            _sign(settings, args.model, str(args.version), shown)
    except Exception as exc:
        message = str(exc) if isinstance(exc, MlcicdError) else f"{type(exc).__name__}: {exc}"
        print(json.dumps({"signed": False, "error": message}) if args.json else f"error: {message}")
        return ExitCode.FAILED
    shown["signed"] = bool(args.yes)
    if args.json:
        print(json.dumps(shown))
    else:
        lines = [f"{args.model} v{args.version}, as MLflow holds it now:"]
        lines += [f"  {k}: {v}" for k, v in shown.items() if k not in ("artifacts", "signed", "warnings")]
        lines += [f"  artifact {path}: sha256 {digest}" for path, digest in shown["artifacts"].items()]
        lines += [f"  warning: {w}" for w in shown["warnings"]]
        lines.append(
            "signed with this installation's key" if args.yes else "not signed: check it, then add --yes"
        )
        print("\n".join(lines))
    return ExitCode.OK if args.yes else ExitCode.USAGE


def _record(settings: Any, model: str, version: str) -> dict[str, Any]:
    import mlflow.artifacts

    from mlcicd import registry, signing, trust
    from mlcicd.serving.modelfile import DIGEST_TAG
    from mlcicd.suite_schema import check_suite
    from mlcicd.training import REFERENCE_ARTIFACT
    from mlcicd.validation.reference import REFERENCE_SUITE_ARTIFACT

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    mv = c.get_model_version(model, version)
    tags = mv.tags or {}
    artifacts, warnings = {}, []
    with tempfile.TemporaryDirectory(prefix="mlcicd-resign-") as tmp:
        for path in (REFERENCE_ARTIFACT, REFERENCE_SUITE_ARTIFACT):
            folder = path.rpartition("/")[0]
            if path not in {f.path for f in c.list_artifacts(mv.run_id, folder)}:
                continue
            local = Path(mlflow.artifacts.download_artifacts(f"runs:/{mv.run_id}/{path}", dst_path=tmp))
            if path == REFERENCE_SUITE_ARTIFACT:  # never sign a suite that could not be read safely
                check_suite(json.loads(local.read_text()), origin=f"runs:/{mv.run_id}/{path}")
            artifacts[path] = signing.file_digest(local)
    signed = trust.version_record(mv)["artifacts"]
    for path in sorted(set(signed) | set(artifacts)):
        if signed.get(path) != artifacts.get(path):
            now = (
                "gone from the store"
                if path not in artifacts
                else "not in the signed record"
                if path not in signed
                else (f"changed since it was signed (signed sha256 {signed[path]})")
            )
            warnings.append(f"{path}: {now}")
    files = registry.model_digest(f"models:/{model}/{version}", settings.tracking_uri)
    if files != tags.get(DIGEST_TAG):
        warnings.append(
            f"the model files' digest is {files}, not the recorded {tags.get(DIGEST_TAG)}: "
            "loads will refuse them whatever the signature says"
        )
    was = signing.problem(
        settings.signing_key(create=False), trust.version_record(mv), tags.get(trust.SIGNATURE_TAG)
    )
    return {
        "run_id": mv.run_id,
        "source": mv.source,
        "model_digest": tags.get(DIGEST_TAG),
        "image": tags.get(trust.IMAGE_TAG),
        "image_digest": tags.get(trust.IMAGE_DIGEST_TAG),
        "signature_now": f"the record {was}" if was else "valid",
        "key_id": signing.fingerprint(settings.signing_key(create=False)),
        "artifacts": artifacts,
        "warnings": warnings,
    }


def _sign(settings: Any, model: str, version: str, shown: dict[str, Any]) -> None:
    """Sign the record that was shown, and only it: a change made meanwhile fails."""
    from mlcicd import registry, trust

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    key = settings.signing_key(create=False)
    expect = {k: shown[k] or "" for k in ("run_id", "source", "model_digest", "image", "image_digest")}
    trust.sign_version(
        c, key, model, version, shown["artifacts"], expect={**expect, "artifacts": shown["artifacts"]}
    )
    champion = registry.champion(c, model)
    if champion is not None and champion.version == str(version):  # it serves: its promotion too
        trust.sign_promotion(c, key, model, version)
