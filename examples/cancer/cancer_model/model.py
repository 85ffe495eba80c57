"""The training entry point: ratios, scaling and a logistic regression."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cancer_model.features import Ratios


def build(hyperparameters: dict[str, Any], schema: Any) -> Pipeline:
    if schema.categorical:
        raise ValueError(f"expected numeric measurements only, got categories {list(schema.categorical)}")
    return Pipeline(
        [
            ("ratios", Ratios()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=float(hyperparameters.get("c", 1.0)), max_iter=2000)),
        ]
    )
