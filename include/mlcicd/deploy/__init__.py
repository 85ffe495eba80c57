"""Deploy targets: one module per target behind the interface in :mod:`.base`.

``local`` (a server process on this machine), ``docker`` (a container on a Docker engine) and
``kubernetes`` (a Deployment applied by a KubernetesPodOperator pod). Targets are imported only when
asked for, so that choosing one never imports another's client library.
"""

from __future__ import annotations

import importlib

from mlcicd.choices import DEPLOY_TARGETS
from mlcicd.deploy.base import Deployment, DeployTarget, SmokeTest
from mlcicd.errors import ConfigError
from mlcicd.settings import Settings

__all__ = [
    "Deployment",
    "DeployTarget",
    "SmokeTest",
    "check_target",
    "get_target",
    "preflight",
    "stop_all",
    "DEPLOY_TARGETS",
]

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
