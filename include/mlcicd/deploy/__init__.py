"""Deploy targets: one module per target behind the interface in :mod:`.base`.

``local`` (a server process on this machine), ``docker`` (a container on a Docker engine) and
``kubernetes`` (a Deployment applied by a KubernetesPodOperator pod). Targets are imported only when
asked for, so that choosing one never imports another's client library.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path

from mlcicd.deploy.base import (
    Deployment,
    DeployTarget,
    SmokeTest,
    check_target_class,
    held_by_another,
    own_candidate,
)
from mlcicd.errors import ConfigError, DeployBusy, NotSupported
from mlcicd.settings import Settings

__all__ = [
    "Deployment", "DeployTarget", "SmokeTest", "check_target", "get_target", "held_by_another", "held_elsewhere", "lease_seconds",
    "lease_until", "lock", "own_candidate", "preflight", "stop_all", "take_lease",
]  # fmt: skip

TARGETS = {
    "local": "mlcicd.deploy.local:LocalProcessTarget",
    "docker": "mlcicd.deploy.docker:DockerTarget",
    "kubernetes": "mlcicd.deploy.kubernetes:KubernetesTarget",
}


def check_target(name: str) -> str:
    """``name`` if it is a deploy target; a ConfigError that lists them otherwise."""
    if name not in TARGETS:
        raise ConfigError(
            f"unknown deploy target {name!r}; choose one of {', '.join(TARGETS)} "
            "(the deploy_target param or the MLCICD_DEPLOY_TARGET setting)"
        )
    return name


def _target_class(name: str) -> type[DeployTarget]:
    """The target's class, held to the interface (:func:`~.base.check_target_class`) as it is loaded."""
    module, cls = TARGETS[check_target(name)].split(":")
    found = getattr(importlib.import_module(module), cls)
    check_target_class(found)
    return found


def get_target(name: str, settings: Settings, model_name: str) -> DeployTarget:
    """The target ``name`` for ``model_name``, at the endpoint its model project declares (if any)."""
    return _target_class(name)(endpoint_settings(settings, model_name), model_name)


def endpoint_settings(settings: Settings, model_name: str) -> Settings:
    """``settings`` with the stable ports of the configured project that owns ``model_name``, where it
    declares one: each project's endpoint is its own on the local and docker targets."""
    import dataclasses

    from mlcicd import project
    from mlcicd.settings import PROJECT_ROOT

    owner = project.of_model(model_name, settings.projects, PROJECT_ROOT)
    if owner is None or owner.spec.deploy.port is None:
        return settings
    port = owner.spec.deploy.port
    return dataclasses.replace(settings, local_port=port, docker_port=port)


def preflight(name: str, settings: Settings) -> None:
    """Checks a target can make before any work is spent (its connection is defined, say)."""
    _target_class(name).preflight(settings)


def stop_all(name: str, settings: Settings) -> list[str]:
    """Stop what the target serves for every model (where the target can); return the models' names."""
    try:
        return _target_class(name).stop_all(settings)
    except NotSupported as exc:
        raise ConfigError(str(exc)) from exc


@contextlib.contextmanager
def lock(settings: Settings, target: str, model_name: str) -> Iterator[None]:
    """Hold the (target, model) deploy lock: one deploy of a model to a target at a time.

    An OS file lock in the state folder (released by the kernel if its holder dies), so two runs
    on one machine, or on workers sharing the state folder, queue instead of tearing each other's
    servers down.
    """
    from filelock import FileLock, Timeout

    path = settings.state_dir / "locks" / f"deploy-{target}-{model_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    held = FileLock(path)
    try:
        held.acquire(timeout=settings.deploy_lock_timeout_s)
    except Timeout:
        raise DeployBusy(
            f"another deploy of {model_name} to the {target} target held the lock {path} for "
            f"{settings.deploy_lock_timeout_s:.0f} s; nothing was changed. Retry when it has ended "
            "(MLCICD_DEPLOY_LOCK_TIMEOUT_S sets how long to wait)"
        ) from None
    try:
        yield
    finally:
        held.release()


def _lease_path(settings: Settings, target: str, model_name: str) -> Path:
    return settings.state_dir / "locks" / f"rollout-{target}-{model_name}.json"


def take_lease(settings: Settings, target: str, model_name: str, run_id: str, seconds: float) -> None:
    """Record that ``run_id``'s staged candidate is its own for ``seconds`` from now (renewed by each of
    the analysis' pokes), beside the deploy lock in the shared state folder."""
    import json
    import time

    path = _lease_path(settings, target, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "until": time.time() + seconds}))
    tmp.replace(path)


def lease_until(settings: Settings, target: str, model_name: str, owner: str | None) -> float | None:
    """When ``owner``'s lease on the staged candidate ends (None: it took none, or it is another run's)."""
    import json

    try:
        lease = json.loads(_lease_path(settings, target, model_name).read_text())
    except (OSError, ValueError):
        return None
    return float(lease["until"]) if owner and lease.get("run_id") == owner else None


def lease_seconds(settings: Settings, interval_s: float) -> float:
    """A staged candidate's lease: the setting, or long enough for the approval and three analysis
    intervals between the pokes that renew it."""
    return max(
        settings.rollout_lease_minutes * 60, settings.approval_timeout_minutes * 60 + 3 * interval_s + 600
    )


def held_elsewhere(settings: Settings, target: DeployTarget, run_id: str | None) -> str | None:
    """Why ``run_id`` may not replace ``target``'s staged candidate (see :func:`held_by_another`), its
    owner's lease read from the state folder; None when it may."""
    candidate = target.candidate()
    owner = candidate.detail.get("staged_by") if candidate is not None else None
    until = lease_until(settings, target.name, target.model_name, owner)
    return held_by_another(candidate, run_id, settings.rollout_lease_minutes * 60, until=until)
