"""The training entry point: an unfitted Pipeline for the batch's columns."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def build(hyperparameters: dict[str, Any], schema: Any) -> Pipeline:
    """Impute and scale the numbers, impute and one-hot encode the categories, then boost trees."""
    categories = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    )
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(schema.numeric),
            ),
            ("categorical", categories, list(schema.categorical)),
        ]
    )
    model = HistGradientBoostingClassifier(
        max_iter=int(hyperparameters.get("n_estimators", 150)),
        max_depth=hyperparameters.get("max_depth", 3),
        learning_rate=float(hyperparameters.get("learning_rate", 0.05)),
        random_state=int(hyperparameters.get("random_seed", 42)),
    )
    return Pipeline([("preprocess", preprocess), ("model", model)])
