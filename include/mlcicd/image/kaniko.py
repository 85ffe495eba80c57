"""In-cluster image builds: Kaniko in a KubernetesPodOperator pod, for clusters without a Docker socket.

The build context (the same one :func:`mlcicd.image.make_context` makes) is uploaded as a tar.gz to
``MLCICD_KANIKO_CONTEXT_URI`` (s3://, gs://, any URI Airflow's ObjectStoragePath writes and Kaniko
reads), then the pod builds and pushes ``<registry>/<model>:<version>-<context digest>`` and hands
the pushed digest back through the KubernetesPodOperator's XCom sidecar.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlcicd.errors import BuildError, ConfigError
from mlcicd.image import Image, Registry, make_context, repository
from mlcicd.kube import check_connection, pod_operator, resource_name
from mlcicd.release import Release
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

log = logging.getLogger("mlcicd")

# Kaniko's debug image has a busybox shell (wget, sha256sum, tar). The pod fetches the context through a
# short-lived signed URL and builds it only if it is the tarball Airflow uploaded (its sha256): write
# access to the bucket is not enough to change what is built. The build's digest is the pod's XCom.
BUILD_SCRIPT = """set -eu
kaniko="${KANIKO_DIR:-/kaniko}" xcom="${XCOM_DIR:-/airflow/xcom}" tmp="${WORK_DIR:-/tmp}"
wget -q -O "$tmp/context.tar.gz" "$CONTEXT_URL"
if ! echo "$CONTEXT_SHA256  $tmp/context.tar.gz" | sha256sum -c - >/dev/null 2>&1; then
  echo "the build context at $CONTEXT is not the one Airflow uploaded (sha256 $CONTEXT_SHA256): not built" >&2
  exit 3
fi
mkdir -p "$kaniko/buildcontext" && tar -xzf "$tmp/context.tar.gz" -C "$kaniko/buildcontext"
"$kaniko/executor" --context="dir://$kaniko/buildcontext" --destination="$DESTINATION" \\
  --digest-file="$tmp/digest" --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg MODEL_NAME="$MODEL_NAME" \\
  --build-arg MODEL_VERSION="$MODEL_VERSION" --build-arg CODE_COMMIT="$CODE_COMMIT" --snapshot-mode=redo --cache=true
mkdir -p "$xcom" && printf '{"digest": "%s"}' "$(cat "$tmp/digest")" > "$xcom/return.json"
"""
CONTEXT_URL_SECONDS = 3600  # the signed URL's life: the pod starts well within it


@dataclass(frozen=True)
class Context:
    """The uploaded build context: where it is, a signed URL the pod fetches it by, its sha256."""

    uri: str
    url: str
    sha256: str


def build_operator(
    settings: Settings, release: Release, destination: str, context: Context
) -> KubernetesPodOperator:
    from kubernetes.client import models as k8s

    # Kaniko reads its push credentials from /kaniko/.docker/config.json: a dockerconfigjson secret.
    volumes, mounts = [], []
    if settings.kaniko_push_secret:
        volumes.append(
            k8s.V1Volume(
                name="push-credentials",
                secret=k8s.V1SecretVolumeSource(
                    secret_name=settings.kaniko_push_secret,
                    items=[k8s.V1KeyToPath(key=".dockerconfigjson", path="config.json")],
                ),
            )
        )
        mounts.append(
            k8s.V1VolumeMount(name="push-credentials", mount_path="/kaniko/.docker", read_only=True)
        )
    return pod_operator(
        settings,
        task_id="build_image_pod",
        volumes=volumes,
        volume_mounts=mounts,
        name=f"{resource_name(release.model_name)}-build-v{release.version}",
        image=settings.kaniko_image,
        cmds=["/busybox/sh", "-c"],
        arguments=[BUILD_SCRIPT],
        env_vars={
            "CONTEXT": context.uri,
            "CONTEXT_URL": context.url,
            "CONTEXT_SHA256": context.sha256,
            "DESTINATION": destination,
            "BASE_IMAGE": settings.base_image,
            "MODEL_NAME": release.model_name,
            "MODEL_VERSION": str(release.version),
            "CODE_COMMIT": release.code_commit or "none",
        },
        labels={"app.kubernetes.io/name": "mlcicd-builder"},
        # The build calls no Kubernetes API: the namespace's default account, and no token mounted.
        service_account_name="default",
        automount_service_account_token=False,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"}
        ),
    )


def upload_context(context_dir: Path, context_root: str, name: str) -> Context:
    """Pack ``context_dir`` as tar.gz under ``context_root``; return where it is, a signed URL to it
    and its sha256 (the build pod checks it before building)."""
    from airflow.sdk import ObjectStoragePath

    packed = context_dir.parent / "context.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(context_dir, arcname=".")
    data = packed.read_bytes()
    try:
        dest = ObjectStoragePath(context_root.rstrip("/")) / name
        with dest.open("wb") as out:
            out.write(data)
    except (ValueError, ImportError) as exc:  # no filesystem for the scheme: its provider is missing
        raise ConfigError(
            f"cannot write the build context to {context_root!r}: {exc}. Install the provider of that "
            "scheme (apache-airflow-providers-amazon for s3://, -google for gs://) and set its connection"
        ) from exc
    try:
        url = dest.sign(expiration=CONTEXT_URL_SECONDS)
    except NotImplementedError as exc:
        raise ConfigError(
            f"the build context at {context_root!r} cannot be handed to the build pod by a signed URL (its "
            "store has none): use an s3:// or gs:// prefix for MLCICD_KANIKO_CONTEXT_URI"
        ) from exc
    return Context(str(dest), url, hashlib.sha256(data).hexdigest())


def build(settings: Settings, release: Release, registry: Registry | None) -> Image:
    """Build and push the image of ``release`` in a Kaniko pod."""
    from airflow.exceptions import AirflowException
    from airflow.sdk import get_current_context

    if registry is None:
        raise ConfigError(
            f"Kaniko pushes the image it builds, and no registry is set: define the {settings.docker_conn_id} "
            "connection (host = the registry the cluster pulls from)"
        )
    if not settings.kaniko_context_uri:
        raise ConfigError(
            "MLCICD_KANIKO_CONTEXT_URI is not set: give a bucket prefix both Airflow and the cluster "
            "can reach (for example s3://my-bucket/mlcicd/contexts)"
        )
    check_connection(settings.kube_conn_id)
    started = time.monotonic()
    work = settings.images_dir / release.model_name / f"v{release.version}"
    digest = make_context(settings, release, work / "context")
    reference = f"{repository(release.model_name, registry)}:{release.version}-{digest[:12]}"
    context = upload_context(
        work / "context", settings.kaniko_context_uri, f"{reference.rsplit('/', 1)[-1]}.tar.gz"
    )
    op = build_operator(settings, release, reference, context)
    log.info("Kaniko pod %s builds %s from %s (sha256 %s)", op.name, reference, context.uri, context.sha256)
    try:
        result = op.execute(context=get_current_context()) or {}
    except AirflowException as exc:
        raise BuildError(f"the Kaniko build of {reference} failed (its log is above): {exc}") from exc
    pushed = result.get("digest")
    return Image(
        builder="kaniko",
        reference=reference,
        context_digest=f"sha256:{digest}",
        repo_digest=f"{reference.rsplit(':', 1)[0]}@{pushed}" if pushed else None,
        seconds=round(time.monotonic() - started, 2),
    )
