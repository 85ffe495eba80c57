"""The Params' choices and defaults: one source for the DAGs, the stages, the CLI and the tests.

Cheap to import (no third-party imports): the DAG files build their Params from it at parse time.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_MODEL_NAME = "mlcicd_churn"
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # no ".", "..", hidden or over-long names
# JSON Schema's "$" (Python's re.search under jsonschema) lets a trailing newline through: the stages
# check names again with a full match.
NAME_RE = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))


def is_name(value: object) -> bool:
    """Whether ``value`` is a model or dataset name, matched in full (no trailing newline)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


ESTIMATORS = ("hist_gradient_boosting", "random_forest", "logistic_regression")
PROJECT_FAMILY = "project"  # a model project's entry point, as a search family
CORRUPTIONS = (
    "none", "missing_column", "wrong_dtype", "nulls", "out_of_range", "unseen_category", "duplicates",
)  # fmt: skip
METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall")
GATED_METRICS = ("roc_auc", "accuracy", "f1")  # those with a threshold param, and the comparable ones
DEPLOY_TARGETS = ("local", "docker", "kubernetes")
IMAGE_BUILDERS = ("docker", "kaniko", "none")
ROLLOUTS = ("switch", "canary", "shadow")
DISTRIBUTIONS = ("uniform", "loguniform", "randint")  # a search space's draws, beside lists of values
SEARCH_PRESETS = ("none", "quick", "wide")  # the search param's names; a JSON object of spaces also goes
SCAN_MAJOR = ("reject", "warn")  # what a new MAJOR scan issue does to the candidate

# ml_retrain's defaults (the trigger form, `mlcicd run`, and the stages' own defaults).
RETRAIN_DEFAULTS: dict[str, Any] = {
    "dataset_uri": "synthetic:",
    "target_column": "churned",
    "dataset_name": None,
    "synthetic_rows": 5000,
    "synthetic_seed": None,
    "synthetic_drift": 0.0,
    "synthetic_corruption": "none",
    "estimator": "hist_gradient_boosting",
    "n_estimators": 150,
    "max_depth": 3,
    "learning_rate": 0.05,
    "regularization_c": 1.0,
    "search": "none",
    "search_max_candidates": None,  # the installation's ceiling (MLCICD_SEARCH_MAX_CANDIDATES)
    "search_timeout_s": None,  # the installation's ceiling (MLCICD_SEARCH_TIMEOUT_S)
    "test_size": 0.25,
    "random_seed": 42,
    "model_name": DEFAULT_MODEL_NAME,
    "primary_metric": "roc_auc",
    "min_roc_auc": 0.8,
    "min_accuracy": 0.75,
    "min_f1": 0.5,
    "max_degradation": 0.01,
    "confidence": 0.95,
    "bootstrap_resamples": 1000,
    "deploy_target": None,
    "rollout": "switch",
    "rollout_steps": [10, 50],
    "rollout_interval_s": 30,
    "rollout_checks": 2,
    "rollout_failure_limit": 0,
    "rollout_min_requests": 20,
    "rollout_max_error_rate": 0.01,
    "rollout_max_p99_ms": 500.0,
    "rollout_max_prediction_shift": 0.1,
    "rollout_max_accuracy_drop": 0.05,
    "approval": False,
    "scan_major": "reject",
    "scan_allow_major_without_champion": False,
    "scan_slice_drop": 0.05,
    "scan_major_slice_drop": 0.10,
}

# ml_monitor's defaults.
MONITOR_DEFAULTS: dict[str, Any] = {
    "model_name": DEFAULT_MODEL_NAME,
    "window_minutes": 60,
    "window_end": None,
    "consecutive_windows": 3,
    "cooldown_hours": 24.0,
    "min_predictions": 500,
    "retrain_conf": {},
}
