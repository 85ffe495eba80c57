"""Every error of the project, in one place.

:class:`MlcicdError` and its kinds stop a run for a reason the user must fix (not retried by
Airflow); the ``kind`` names the outcome a run summary reports. :class:`TriggerError` carries the
exit code of the CI trigger client.
"""

from __future__ import annotations

from mlcicd.names import ExitCode


class MlcicdError(Exception):
    """A deterministic failure with a message that says what to do; ``details`` (e.g. the champion's
    version after a rollback) go into the error a run summary and REST clients show."""

    kind = "error"

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message)
        self.details = details


class DataError(MlcicdError):
    """The batch cannot be read or cannot be used (missing file, bad target, empty file)."""

    kind = "data"


class ValidationFailed(MlcicdError):
    """The batch failed its Great Expectations suite."""

    kind = "validation"


class TrainingFailed(MlcicdError):
    """No candidate could be trained: every candidate of the search failed (each one's error listed)."""

    kind = "training"


class ChampionUnusable(MlcicdError):
    """The serving champion cannot be loaded or cannot score the holdout: the gate fails closed."""

    kind = "champion"


class UntrustedArtifact(MlcicdError):
    """Something read back to steer a run (a suite, a profile, a model's record) is outside its
    schema or lacks a valid signature: the run stops and the champion stays as it is."""

    kind = "untrusted"


class DeployError(MlcicdError):
    """The new model could not be deployed; the previous champion keeps serving."""

    kind = "deploy"


class DeployBusy(Exception):
    """Another deploy of the model to the target holds its lock: nothing was changed. Transient,
    so not an :class:`MlcicdError`: Airflow retries the task."""


class NotSupported(DeployError):
    """The deploy target cannot do what was asked (stage, split or mirror traffic, stop every model)."""

    kind = "not_supported"


class ConfigError(MlcicdError):
    """A parameter or setting is invalid."""

    kind = "config"


class CodeMismatch(MlcicdError):
    """The project's code is not at the commit the run's trigger tested (or has uncommitted changes):
    the run is refused before it trains, exit 2 in ``mlcicd run`` and the trigger client."""

    kind = "code"


class BuildError(MlcicdError):
    """The model-server image could not be built or pushed; nothing was deployed."""

    kind = "build"


class UsageError(MlcicdError):
    """A command was called wrongly (bad flag, unknown or invalid param): nothing ran."""

    kind = "usage"


class TriggerError(Exception):
    """The trigger client failed: the exit code it maps to and a message that says what to do."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
