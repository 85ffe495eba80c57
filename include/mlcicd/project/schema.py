"""The model project file's schema: ``mlcicd.toml``, or ``[tool.mlcicd]`` in the project's pyproject.

One pydantic model per table; every table refuses keys it does not know, so that a misspelt key is an
error rather than a silently ignored default. The task names every stage's contract (its target, its
metrics and their direction); binary is what trains today, multiclass and regression are declared
here so that a project file written now stays valid when they land.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlcicd.choices import DEPLOY_TARGETS, NAME_PATTERN, ROLLOUTS

TASKS = ("binary", "multiclass", "regression")
# Each task's gated metrics and their direction: a floor for scores, a ceiling for errors.
TASK_METRICS: dict[str, dict[str, str]] = {
    "binary": {"roc_auc": "min", "accuracy": "min", "f1": "min"},
    "multiclass": {"accuracy": "min", "f1_macro": "min", "f1_weighted": "min", "roc_auc_ovr": "min"},
    "regression": {"rmse": "max", "mae": "max", "r2": "min"},
}
ENTRY_POINT = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*")
CLASS_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+")
Scalar = bool | int | float | str | None


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelTable(Table):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="the MLflow registered model")]
    task: Literal["binary", "multiclass", "regression"]
    target: Annotated[str, Field(min_length=1, description="the label column")]


class DataTable(Table):
    batches: Annotated[str, Field(min_length=1, description="the default dataset_uri of a run")]
    dataset_name: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None
    # A declared GX suite, relative to the project folder; without one, the contract is inferred.
    suite: str | None = None


class SearchTable(Table):
    """Today's search format for one family: the candidates drawn and the space they are drawn from."""

    candidates: Annotated[int, Field(ge=1, le=10_000)]
    space: dict[str, Any]


class TrainingTable(Table):
    entry_point: Annotated[str, Field(description="package.module:function returning an unfitted estimator")]
    hyperparameters: dict[str, Scalar] = {}
    # Classes of the project's own code that its model file holds: the loader trusts these, no others.
    trusted_types: list[str] = []
    search: SearchTable | None = None
    test_size: Annotated[float, Field(ge=0.05, le=0.5)] = 0.25
    random_seed: Annotated[int, Field(ge=0)] = 42
    # How far a rebuilt model's predictions may be from the served one's (0: exactly equal); for an
    # estimator that is not deterministic for a seed (threads summing in another order, say).
    rebuild_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.0

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: str) -> str:
        if not ENTRY_POINT.fullmatch(value):
            raise ValueError(f"{value!r} is not package.module:function")
        return value

    @field_validator("trusted_types")
    @classmethod
    def _trusted(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not CLASS_PATH.fullmatch(v)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a dotted class path (package.module.Class)")
        return values


class GateTable(Table):
    primary_metric: str | None = None  # the task's first metric when left out
    # Bounds this project's runs may tighten and never loosen: floors of scores, ceilings of errors.
    thresholds: dict[str, float] = {}
    max_degradation: Annotated[float, Field(ge=0, le=1)] = 0.01
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95


class DeployTable(Table):
    target: Literal[DEPLOY_TARGETS] | None = None  # type: ignore[valid-type]
    rollout: Literal[ROLLOUTS] = "switch"  # type: ignore[valid-type]
    rollout_steps: Annotated[list[Annotated[int, Field(ge=1, le=99)]], Field(min_length=1, max_length=10)] = [
        10,
        50,
    ]
    approval: bool = False
    # The stable port of the model's endpoint on the local and docker targets; empty: the installation's
    # (MLCICD_LOCAL_PORT, MLCICD_DOCKER_PORT). Two projects never share one.
    port: Annotated[int, Field(ge=1024, le=65535)] | None = None


class MonitorTable(Table):
    window_minutes: Annotated[int, Field(ge=1, le=10_080)] = 60
    consecutive_windows: Annotated[int, Field(ge=1, le=100)] = 3
    cooldown_hours: Annotated[float, Field(ge=0, le=720)] = 24.0
    min_predictions: Annotated[int, Field(ge=1)] = 500


class TestsTable(Table):
    paths: list[str] = ["tests"]  # relative to the project folder; pytest runs them in `mlcicd check`


class ProjectFile(Table):
    model: ModelTable
    data: DataTable
    training: TrainingTable
    gate: GateTable = GateTable()
    deploy: DeployTable = DeployTable()
    monitor: MonitorTable = MonitorTable()
    tests: TestsTable = TestsTable()
