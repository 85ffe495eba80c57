"""The model-server image: its build context, tag and registry; builders in :mod:`.docker` and :mod:`.kaniko`.

The context holds the Dockerfile (``include/docker/model-server.Dockerfile``), the server's
requirements and the project's constraints, the server code and the model bundle (the MLflow
model and ``release.json``), so the image never reads the registry at start-up. Its tag is
``<model>:<version>-<short digest>``, the digest being that of the context: a rebuild of the same
version gives the same tag, and a retried task reuses the image instead of building it again.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcicd.choices import IMAGE_BUILDERS as BUILDERS
from mlcicd.errors import ConfigError
from mlcicd.release import Release, prepare_bundle
from mlcicd.settings import PROJECT_ROOT, Settings

DOCKERFILE = PROJECT_ROOT / "include" / "docker" / "model-server.Dockerfile"
REQUIREMENTS = PROJECT_ROOT / "include" / "docker" / "model-server.requirements.txt"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
SERVER_PACKAGE = Path(__file__).resolve().parents[1] / "serving"  # all the image runs of mlcicd


@dataclass(frozen=True)
class Image:
    builder: str
    reference: str | None  # repository:tag, what targets run
    context_digest: str | None = None
    image_id: str | None = None  # the engine's config digest
    repo_digest: str | None = None  # repository@sha256:..., once pushed
    size_bytes: int | None = None
    seconds: float | None = None
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Registry:
    """Where images are pushed: the host of the Docker connection, with or without a login."""

    host: str
    login: bool


def resolve_builder(setting: str, target: str) -> str:
    """The builder for this target: ``auto`` builds for the targets that run images only."""
    if setting == "auto":
        return "none" if target == "local" else "docker"
    if setting not in BUILDERS:
        raise ConfigError(f"MLCICD_IMAGE_BUILDER={setting!r} is unknown; choose auto, {', '.join(BUILDERS)}")
    if setting == "none" and target != "local":
        raise ConfigError(
            f"the {target} target runs the model-server image, but MLCICD_IMAGE_BUILDER=none; "
            "set it to docker or kaniko (or auto)"
        )
    return setting


def repository(model_name: str, registry: Registry | None) -> str:
    """A valid image repository for the model: lower case, ``[a-z0-9._-]``, under the registry host."""
    name = re.sub(r"[^a-z0-9._-]+", "-", model_name.lower()).strip("._-") or "model"
    return f"{registry.host}/{name}" if registry else name


def registry_from_connection(conn_id: str) -> Registry | None:
    """The registry of the Airflow connection ``conn_id``; None when it is not defined (keep images local)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    if not conn.host:
        raise ConfigError(f"the {conn_id} connection has no host: set the registry's host (and port) in it")
    host = conn.host.removeprefix("https://").removeprefix("http://").rstrip("/")
    return Registry(host=f"{host}:{conn.port}" if conn.port else host, login=bool(conn.login))


def make_context(settings: Settings, release: Release, dest: Path) -> str:
    """Write the build context to ``dest``; return its digest (see :func:`context_digest`)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copyfile(DOCKERFILE, dest / "Dockerfile")
    shutil.copyfile(REQUIREMENTS, dest / "requirements.txt")
    shutil.copyfile(CONSTRAINTS, dest / "constraints.txt")
    shutil.copytree(SERVER_PACKAGE, dest / "mlcicd" / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(SERVER_PACKAGE.parent / "__init__.py", dest / "mlcicd" / "__init__.py")
    prepare_bundle(settings, release.without_image(), dest / "bundle")
    return context_digest(dest, base_image=settings.base_image)


def context_digest(root: Path, base_image: str) -> str:
    """sha256 of the base image's name and every path and byte of the context: what the image is made of."""
    h = hashlib.sha256(base_image.encode() + b"\0")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()
