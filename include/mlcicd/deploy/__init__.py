"""Deploy targets: one module per target behind the interface in :mod:`.base`.

``local`` (a server process on this machine), ``docker`` (a container on a Docker engine) and
``kubernetes`` (a Deployment applied by a KubernetesPodOperator pod). Targets are imported only when
asked for, so that choosing one never imports another's client library.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from mlcicd.deploy.base import Deployment, DeployTarget, SmokeTest, held_by_another, own_candidate
from mlcicd.errors import ConfigError, DeployBusy
from mlcicd.settings import Settings

__all__ = [
    "Deployment", "DeployTarget", "SmokeTest", "check_target", "get_target", "held_by_another", "lock",
    "own_candidate", "preflight", "stop_all",
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
    module, cls = TARGETS[check_target(name)].split(":")
    return getattr(importlib.import_module(module), cls)


def get_target(name: str, settings: Settings, model_name: str) -> DeployTarget:
    return _target_class(name)(settings, model_name)


def preflight(name: str, settings: Settings) -> None:
    """Checks a target can make before any work is spent (its connection is defined, say)."""
    check = getattr(_target_class(name), "preflight", None)
    if check is not None:
        check(settings)


def stop_all(name: str, settings: Settings) -> list[str]:
    """Stop what the target serves for every model (where the target can); return the models' names."""
    cls = _target_class(name)
    if not hasattr(cls, "stop_all"):
        raise ConfigError(f"the {name} target cannot be stopped from here; see the README's {name} section")
    return cls.stop_all(settings)


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
