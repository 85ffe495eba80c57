"""The ``docker`` image builder: the Docker provider's client builds on a Docker engine, then pushes.

A rebuild of the same context gives the same tag, so a retried task reuses the image instead of
building it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.errors import BuildError, ConfigError
from mlcicd.image import Image, Registry, make_context, repository
from mlcicd.release import Release
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("mlcicd")


def docker_client(settings: Settings, registry: Registry | None) -> APIClient:
    """The Docker provider's client for the engine at ``docker_url``, logged in to the registry if it has a login."""
    from airflow.exceptions import AirflowException
    from airflow.providers.docker.hooks.docker import DockerHook
    from docker.errors import APIError

    socket = (
        settings.docker_url.removeprefix("unix://") if settings.docker_url.startswith("unix://") else None
    )
    if socket and os.path.exists(socket) and not os.access(socket, os.R_OK | os.W_OK):
        raise ConfigError(
            f"the Docker socket {socket} is there but this process (uid {os.getuid()}, groups "
            f"{sorted(os.getgroups())}) may not use it: add its group (`stat -c %g {socket}` on the "
            "host; DOCKER_GID in the Compose stack's .env) or point MLCICD_DOCKER_URL at an engine it may use"
        )
    conn_id = settings.docker_conn_id if registry and registry.login else None
    hook = DockerHook(
        docker_conn_id=conn_id, base_url=settings.docker_url, timeout=int(settings.build_timeout_s)
    )
    try:
        return hook.get_conn()
    except APIError as exc:
        raise BuildError(
            f"login to the registry {registry.host if registry else '?'} failed: {exc.explanation or exc}; "
            f"check the {settings.docker_conn_id} connection's host, login and password"
        ) from exc
    except AirflowException as exc:
        raise ConfigError(
            f"no Docker engine answers at {settings.docker_url} ({exc}); start one, or point "
            "MLCICD_DOCKER_URL (or DOCKER_HOST) at it. Without a Docker socket, set "
            "MLCICD_IMAGE_BUILDER=kaniko to build in the cluster."
        ) from exc


def build(settings: Settings, release: Release, registry: Registry | None = None) -> Image:
    """Build (or reuse) the image of ``release`` on the Docker engine and push it when a registry is set."""
    started = time.monotonic()
    work = settings.images_dir / release.model_name / f"v{release.version}"
    digest = make_context(settings, release, work / "context")
    reference = f"{repository(release.model_name, registry)}:{release.version}-{digest[:12]}"
    client = docker_client(settings, registry)
    info = _inspect(client, reference)
    reused = info is not None
    if reused:
        log.info("image %s already exists (same context digest): not rebuilt", reference)
    else:
        log.info("building %s from %s on %s", reference, settings.base_image, settings.docker_url)
        _build(client, settings, release, work, reference)
    info = info or client.inspect_image(reference)
    repo_digest = push(client, reference, registry) if registry else None
    image = Image(
        builder="docker",
        reference=reference,
        context_digest=f"sha256:{digest}",
        image_id=info["Id"],
        repo_digest=repo_digest,
        size_bytes=int(info.get("Size") or 0),
        seconds=round(time.monotonic() - started, 2),
        reused=reused,
    )
    log.info(
        "image %s (%s, %.0f MB) ready in %.1f s",
        reference,
        info["Id"][:19],
        image.size_bytes / 1e6,
        image.seconds,
    )
    return image


def _inspect(client: APIClient, reference: str) -> dict[str, Any] | None:
    """The engine's record of the image, or None when it has no such image."""
    from docker.errors import ImageNotFound

    try:
        return client.inspect_image(reference)
    except ImageNotFound:
        return None


def _build(client: APIClient, settings: Settings, release: Release, work: Path, reference: str) -> None:
    from docker.errors import APIError

    build_log = work / "build.log"
    lines: list[str] = []
    network = "host" if settings.docker_network == "host" else None
    try:
        stream = client.build(
            path=str(work / "context"),
            tag=reference,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            network_mode=network,
            timeout=int(settings.build_timeout_s),
            buildargs={
                "BASE_IMAGE": settings.base_image,
                "MODEL_NAME": release.model_name,
                "MODEL_VERSION": str(release.version),
                "CODE_COMMIT": release.code_commit or "none",
            },
            labels={
                "io.mlcicd.mlflow-run-id": release.mlflow_run_id,
                "io.mlcicd.airflow-run-id": release.airflow_run_id,
            },
        )
        with build_log.open("w") as out:
            for line in _stream_lines(stream):
                out.write(line + "\n")
                lines.append(line)
                if line.startswith("Step ") or line.startswith("Successfully"):
                    log.info("docker build: %s", line)
    except APIError as exc:
        raise BuildError(
            f"the Docker engine refused the build of {reference}: {exc.explanation or exc}. "
            f"Build log: {build_log}"
        ) from exc
    except _StreamError as exc:
        tail = "\n".join(lines[-15:])
        hint = ""
        if lines and " : FROM " in lines[-1]:  # it stopped at the base image
            hint = (
                f" The base image {settings.base_image!r} is neither on the engine nor pullable: pull or "
                "build it, or set MLCICD_BASE_IMAGE (tools/docker-engine.sh base makes a local one)."
            )
        raise BuildError(
            f"the image build of {reference} failed: {exc}.{hint} Last lines:\n{tail}\nBuild log: {build_log}"
        ) from exc


class _StreamError(Exception):
    pass


def _stream_lines(stream: Iterator[dict[str, Any]]) -> Iterator[str]:
    for chunk in stream:
        if "error" in chunk:
            raise _StreamError(str(chunk.get("error")).strip())
        text = chunk.get("stream")
        if text:
            yield from (line for line in str(text).rstrip("\n").split("\n") if line.strip())


def push(client: APIClient, reference: str, registry: Registry) -> str:
    """Push ``reference`` and return its repository digest (``repository@sha256:...``)."""
    from docker.errors import APIError

    repo, tag = reference.rsplit(":", 1)
    log.info("pushing %s to %s", reference, registry.host)
    try:
        for chunk in client.push(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise BuildError(
                    f"pushing {reference} to the registry {registry.host} failed: {chunk['error']}. "
                    "Check that the registry is reachable from the Docker engine and the docker_default "
                    "connection (host, port, login); delete that connection to keep images local."
                )
            digest = (chunk.get("aux") or {}).get("Digest")
            if digest:
                return f"{repo}@{digest}"
    except APIError as exc:
        raise BuildError(f"pushing {reference} to {registry.host} failed: {exc.explanation or exc}") from exc
    raise BuildError(f"the registry {registry.host} accepted {reference} but reported no digest")
