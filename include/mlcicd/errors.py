"""Errors that stop a run for a reason the user must fix (not retried by Airflow)."""

from __future__ import annotations


class MlcicdError(Exception):
    """A deterministic failure with a message that says what to do."""

    kind = "error"


class DataError(MlcicdError):
    """The batch cannot be read or cannot be used (missing file, bad target, empty file)."""

    kind = "data"


class ValidationFailed(MlcicdError):
    """The batch failed its Great Expectations suite."""

    kind = "validation"


class DeployError(MlcicdError):
    """The new model could not be deployed; the previous champion keeps serving."""

    kind = "deploy"


class ConfigError(MlcicdError):
    """A parameter or setting is invalid."""

    kind = "config"


class BuildError(MlcicdError):
    """The model-server image could not be built or pushed; nothing was deployed."""

    kind = "build"
