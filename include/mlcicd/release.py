"""A model version on its way to being served: the :class:`Release` and its bundle on disk.

The bundle (``<dir>/model``, an MLflow model, beside ``<dir>/release.json``) is all a model server
reads; the local target serves it from disk and the image bakes it in.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from mlcicd.settings import Settings

CODE_DIR = "code"  # a model project's code in a version's bundle


@dataclass(frozen=True)
class Release:
    model_name: str
    version: str
    model_uri: str
    mlflow_run_id: str
    airflow_run_id: str
    image: str | None = None  # the model-server image (repository:tag), for the targets that run one
    image_digest: str | None = None  # repository@sha256:..., once pushed to a registry
    model_digest: str | None = None  # of the model's files (serving.modelfile), checked before each load
    # A model project's version: the folder its code is read from, and the digest that code had in training
    code_path: str | None = None
    code_digest: str | None = None
    code_commit: str | None = None  # shown by the server's /version

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_image(self, image: dict[str, Any]) -> Release:
        """This release with the image ``build_image`` made (an :class:`~mlcicd.image.Image` dict)."""
        return replace(self, image=image.get("reference"), image_digest=image.get("repo_digest"))

    def without_image(self) -> Release:
        return replace(self, image=None, image_digest=None)


def prepare_bundle(settings: Settings, release: Release, version_dir: Path) -> Path:
    """Download the version's model to ``version_dir/model`` beside a ``release.json``: all the server reads.

    Raises:
        UntrustedModel: the files (downloaded now or found from before) are not the ones recorded.
    """
    import mlflow.artifacts

    from mlcicd.serving import modelfile

    model_dir = version_dir / "model"
    if not (model_dir / "MLmodel").exists():
        version_dir.mkdir(parents=True, exist_ok=True)
        tmp = version_dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=release.model_uri, dst_path=str(tmp), tracking_uri=settings.tracking_uri
        )
        tmp.rename(model_dir)
    modelfile.verify(model_dir, release.model_digest, f"{release.model_name} v{release.version}")
    prepare_code(release, version_dir / CODE_DIR)
    (version_dir / "release.json").write_text(json.dumps(release.to_dict(), indent=2))
    return version_dir


def prepare_code(release: Release, dest: Path) -> None:
    """A model project's code, copied to ``dest`` beside the model once it has the digest it had in
    training: what the version's server imports (the image bakes it in, the local target puts it on
    ``PYTHONPATH``). A folder whose code has changed since is refused, never served with the new code.

    Raises:
        UntrustedModel: the project folder no longer holds the code the version was trained with.
    """
    from mlcicd.project import code
    from mlcicd.serving.modelfile import UntrustedModel

    if not release.code_digest:
        return
    what = f"{release.model_name} v{release.version}"
    if dest.is_dir() and code.digest(dest) == release.code_digest:
        return
    if not release.code_path:
        raise UntrustedModel(
            f"{what} was trained on a model project's code, and no project folder of {release.model_name} "
            "is configured here (MLCICD_PROJECTS): its server could not import it"
        )
    found = code.digest(Path(release.code_path))
    if found != release.code_digest:
        raise UntrustedModel(
            f"{what} was trained on the code with digest {str(release.code_digest)[:19]}…, but "
            f"{release.code_path} now holds {found[:19]}…: its server would import other code than it "
            "was trained with. Serve it from the image built for it, or retrain on the current code"
        )
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(release.code_path, tmp, ignore=shutil.ignore_patterns(*code.IGNORED_DIRS, "*.pyc"))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
