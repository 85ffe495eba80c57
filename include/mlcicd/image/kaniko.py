"""In-cluster image builds: Kaniko in a KubernetesPodOperator pod, for clusters without a Docker socket.

The build context (the same one :func:`mlcicd.image.make_context` makes) is uploaded as a tar.gz to
``MLCICD_KANIKO_CONTEXT_URI`` (s3://, gs://, any URI Airflow's ObjectStoragePath writes and Kaniko
reads), then the pod builds and pushes ``<registry>/<model>:<version>-<context digest>`` and hands
the pushed digest back through the KubernetesPodOperator's XCom sidecar.
"""

from __future__ import annotations

import logging
import tarfile
import time
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

# Kaniko's debug image has a busybox shell: the build's digest is written as the pod's XCom.
BUILD_SCRIPT = (
    '/kaniko/executor --context="$CONTEXT" --destination="$DESTINATION" --digest-file=/tmp/digest '
    '--build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg MODEL_NAME="$MODEL_NAME" '
    '--build-arg MODEL_VERSION="$MODEL_VERSION" --snapshot-mode=redo --cache=true '
    '&& mkdir -p /airflow/xcom && printf \'{"digest": "%s"}\' "$(cat /tmp/digest)" > /airflow/xcom/return.json'
)


def build_operator(
    settings: Settings, release: Release, destination: str, context_uri: str
) -> KubernetesPodOperator:
    from kubernetes.client import models as k8s

    # Kaniko reads its push credentials from /kaniko/.docker/config.json: a dockerconfigjson secret.
    volumes, mounts = [], []
    if settings.kaniko_push_secret:
        volumes.append(k8s.V1Volume(name="push-credentials", secret=k8s.V1SecretVolumeSource(
            secret_name=settings.kaniko_push_secret,
            items=[k8s.V1KeyToPath(key=".dockerconfigjson", path="config.json")])))  # fmt: skip
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
            "CONTEXT": context_uri,
            "DESTINATION": destination,
            "BASE_IMAGE": settings.base_image,
            "MODEL_NAME": release.model_name,
            "MODEL_VERSION": str(release.version),
        },
        labels={"app.kubernetes.io/name": "mlcicd-builder"},
        # The build calls no Kubernetes API: the namespace's default account, and no token mounted.
        service_account_name="default",
        automount_service_account_token=False,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"}
        ),
    )


def upload_context(context_dir: Path, context_root: str, name: str) -> str:
    """Pack ``context_dir`` as tar.gz under ``context_root``; return the object's URI."""
    from airflow.sdk import ObjectStoragePath

    packed = context_dir.parent / "context.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(context_dir, arcname=".")
    try:
        dest = ObjectStoragePath(context_root.rstrip("/")) / name
        with packed.open("rb") as src, dest.open("wb") as out:
            out.write(src.read())
    except (ValueError, ImportError) as exc:  # no filesystem for the scheme: its provider is missing
        raise ConfigError(
            f"cannot write the build context to {context_root!r}: {exc}. Install the provider of that "
            "scheme (apache-airflow-providers-amazon for s3://, -google for gs://) and set its connection"
        ) from exc
    return str(dest)


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
    context_uri = upload_context(
        work / "context", settings.kaniko_context_uri, f"{reference.rsplit('/', 1)[-1]}.tar.gz"
    )
    op = build_operator(settings, release, reference, context_uri)
    log.info("Kaniko pod %s builds %s from %s", op.name, reference, context_uri)
    try:
        result = op.execute(context=get_current_context()) or {}
    except AirflowException as exc:
        raise BuildError(f"the Kaniko build of {reference} failed (its log is above): {exc}") from exc
    pushed = result.get("digest")
    return Image(
        builder="kaniko", reference=reference, context_digest=f"sha256:{digest}",
        repo_digest=f"{reference.rsplit(':', 1)[0]}@{pushed}" if pushed else None,
        seconds=round(time.monotonic() - started, 2),
    )  # fmt: skip
