"""``mlcicd rebuild MODEL VERSION``: train a registered version again from its record, and say whether
the rebuilt model predicts what the served one does on the recorded holdout.

From the version's signed record and its MLflow run: the batch (its stored copy on this machine, or
its URI, read again; either way its content digest must be the recorded one), the code (a model
project's folder when it still has the recorded digest, else the recorded commit taken from git, whose
digest must match too), the hyperparameters, the split and the seed. The holdout is the same split of
the same batch, so the comparison is on the rows the gate judged. Exact equality is asked, unless the
project file (at that commit) states a ``rebuild_tolerance`` for a non-deterministic estimator.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd import record, registry, trust
from mlcicd.errors import MlcicdError, UsageError
from mlcicd.settings import Settings
from mlcicd.training import HYPERPARAMETERS_ARTIFACT

if TYPE_CHECKING:
    import pandas as pd

    from mlcicd.project import Project


class RebuildFailed(MlcicdError):
    """What the version's record names cannot be had again (the batch or the code), so nothing was compared."""

    kind = "rebuild"


def rebuild(settings: Settings, model_name: str, version: str) -> dict[str, Any]:
    """Train ``model_name`` ``version`` again and compare; return the report (``match`` says it all).

    Raises:
        UsageError: no such model or version.
        UntrustedArtifact: the version's record fails its signature.
        RebuildFailed: the batch or the code the record names cannot be had with their digests.
    """
    import numpy as np

    from mlcicd import training

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    try:
        c.get_model_version(model_name, str(version))
    except Exception as exc:  # MLflow's not-found, whatever its class
        raise UsageError(f"{model_name} v{version} is not a registered version here ({exc})") from None
    mv = trust.trusted_version(c, settings.signing_key(create=False), model_name, str(version))
    run = c.get_run(mv.run_id)
    params, tags = run.data.params, run.data.tags
    code = trust.code_of(mv.tags or {})
    report: dict[str, Any] = {"model_name": model_name, "version": str(version), "mlflow_run_id": mv.run_id}
    with ExitStack() as stack:
        df, report["data"] = batch_of(settings, tags, params)
        target = report["data"]["target"]
        seed, test_size = int(params["random_seed"]), float(params["test_size"])
        train, holdout = training.split(df, target, test_size, seed)
        if int(params["train_rows"]) < int(params["train_rows_available"]):  # fitted on a sample, as then
            train = training.sample_rows(train, target, int(params["train_rows"]), seed)
        x, y = train.drop(columns=[target]), train[target]
        tolerance = 0.0
        if code:
            project, report["code"] = code_of(settings, model_name, code, stack)
            tolerance = project.spec.training.rebuild_tolerance
            from mlcicd.project import entry

            where = stack.enter_context(tempfile.TemporaryDirectory())
            given = json.loads(
                Path(c.download_artifacts(mv.run_id, HYPERPARAMETERS_ARTIFACT, where)).read_text()
            )
            model, _ = entry.fit(project, x, y, given, seed)
        else:
            report["code"] = {"built_in": params.get("estimator"), "commit": tags.get("mlcicd.code_version")}
            model = training.build_pipeline(x, built_in_params(params)).fit(x, y)
        served = registry.load_verified(
            f"models:/{model_name}/{version}",
            (mv.tags or {}).get("mlcicd.model_digest"),
            settings.tracking_uri,
            f"{model_name} v{version}",
        )
        features = holdout.drop(columns=[target])
        method = "predict_proba" if hasattr(served, "predict_proba") else "predict"
        before = np.asarray(getattr(served, method)(features), dtype=float)
        after = np.asarray(getattr(model, method)(features), dtype=float)
    difference = float(np.max(np.abs(before - after))) if before.shape == after.shape else float("inf")
    report.update(
        holdout_rows=len(holdout),
        compared=method,
        max_difference=difference,
        tolerance=tolerance,
        exact=difference == 0.0,
        match=difference <= tolerance,
        libraries=library_changes(c, mv.run_id),
    )
    report["differences"] = differences(report, before, after)
    return report


def batch_of(
    settings: Settings, tags: dict[str, str], params: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The batch that trained the version, with its recorded content digest, and where it was found."""
    from mlcicd import data

    digest, uri = tags.get("mlcicd.dataset_digest"), tags.get("mlcicd.dataset_uri", "")
    stored = record.read(settings.runs_dir / record.run_key(tags.get("mlcicd.airflow_run_id", ""))).get(
        "batch"
    )
    tried = []
    if stored and Path(stored["path"]).exists():
        ref = data.BatchRef.from_dict(stored)
        df = data.load_stored(ref)
        if data.content_digest(df) == digest:
            return df, {"uri": uri, "digest": digest, "source": ref.path, "target": ref.target}
        tried.append(f"{ref.path} (another digest)")
    if uri and not uri.startswith(data.SYNTHETIC_SCHEME):
        try:
            owner = trust.project_folder(tags.get("mlcicd.model_name", ""))
            roots = (*settings.data_roots, *([owner] if owner else []))  # a project's own data, as at ingest
            df = data.read_batch(uri, roots=roots, memory_limit_mb=settings.memory_limit_mb)
        except MlcicdError as exc:
            tried.append(f"{uri} ({exc})")
        else:
            if data.content_digest(df) == digest:
                target = tags.get("mlcicd.target") or (stored or {}).get("target", "")
                return df, {"uri": uri, "digest": digest, "source": uri, "target": target}
            tried.append(f"{uri} (its content changed since: another digest)")
    raise RebuildFailed(
        f"the batch that trained this version (digest {digest}) is not to be had: tried "
        f"{'; '.join(tried) or 'nothing: no stored copy and no readable URI'}"
    )


def code_of(
    settings: Settings, model_name: str, code: dict[str, str], stack: ExitStack
) -> tuple[Project, dict[str, Any]]:
    """The model project at the recorded code: its folder if unchanged, else the recorded commit from git."""
    from mlcicd import project
    from mlcicd.project import code as versions

    folder = trust.project_folder(model_name)
    if folder is None:
        raise RebuildFailed(f"no model project of {model_name} is configured here (MLCICD_PROJECTS)")
    root = Path(folder)
    if versions.digest(root) == code["digest"]:
        return project.load(root), {**code, "source": str(root)}
    if code.get("commit", versions.UNKNOWN) == versions.UNKNOWN:
        raise RebuildFailed(
            f"{root} holds other code than {model_name} was trained on, and no commit was recorded"
        )
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlcicd-rebuild-")))
    try:
        top = Path(versions.git(root, "rev-parse", "--show-toplevel"))
        sub = root.resolve().relative_to(top.resolve()).as_posix()
        archive = subprocess.run(
            ["git", "archive", "--format=tar", code["commit"], sub or "."],
            cwd=top,
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RebuildFailed(
            f"commit {code['commit'][:12]} of {root} cannot be read from git: {exc}"
        ) from None
    (tmp / "code.tar").write_bytes(archive.stdout)
    shutil.unpack_archive(tmp / "code.tar", tmp / "tree")
    checkout = tmp / "tree" / sub if sub else tmp / "tree"
    if versions.digest(checkout) != code["digest"]:
        raise RebuildFailed(
            f"commit {code['commit'][:12]} does not hold the code {model_name} was trained on (another digest): "
            "it was trained with uncommitted changes, which cannot be had again"
        )
    return project.load(checkout), {**code, "source": f"git archive {code['commit'][:12]}"}


def built_in_params(params: dict[str, str]) -> Any:
    """The TrainParams of a version of ``ml_retrain``'s built-in families, from its MLflow run's params."""
    from mlcicd.training import TrainParams

    def number(key: str, kind: type) -> Any:
        value = params.get(key)
        return None if value in (None, "None") else kind(value)

    return TrainParams(
        estimator=params["estimator"],
        n_estimators=number("n_estimators", int),
        max_depth=number("max_depth", int),
        learning_rate=number("learning_rate", float),
        regularization_c=number("regularization_c", float),
        test_size=float(params["test_size"]),
        random_seed=int(params["random_seed"]),
    )


def library_changes(c: Any, run_id: str) -> dict[str, list[str]]:
    """{library: [recorded, installed]} for each of the model's requirements whose version differs here."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            text = Path(c.download_artifacts(run_id, "model/requirements.txt", tmp)).read_text()
        except Exception:  # a model logged without requirements: nothing to compare
            return {}
    changes = {}
    for line in text.splitlines():
        name, sep, recorded = line.strip().partition("==")
        if sep:
            try:
                installed = md.version(name)
            except md.PackageNotFoundError:
                installed = "(not installed)"
            if installed != recorded:
                changes[name] = [recorded, installed]
    return changes


def differences(report: dict[str, Any], before: Any, after: Any) -> list[str]:
    """What differs, in words, when the rebuilt model does not match."""
    if report["match"]:
        return []
    out = []
    if before.shape != after.shape:
        out.append(f"{report['compared']} gives shape {after.shape} rebuilt against {before.shape} served")
    else:
        rows = int((abs(before - after) > report["tolerance"]).reshape(len(before), -1).any(axis=1).sum())
        out.append(
            f"{rows} of {len(before)} holdout rows differ, by up to {report['max_difference']:.3g} "
            f"(tolerance {report['tolerance']:g})"
        )
    out += [f"{name} was {was}, is {now} here" for name, (was, now) in report["libraries"].items()]
    return out
