"""Ratios of each cell's worst measurement to its mean: how far the worst cell is from the typical one."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class Ratios(TransformerMixin, BaseEstimator):
    """Adds ``ratio_<m>`` = ``worst_<m>`` / ``mean_<m>`` for each measurement with both columns."""

    def fit(self, x: pd.DataFrame, y: object = None) -> Ratios:
        self.measurements_ = sorted(
            c.removeprefix("mean_") for c in x.columns if c.startswith("mean_") and f"worst_{c[5:]}" in x
        )
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        ratios = {
            f"ratio_{m}": x[f"worst_{m}"] / x[f"mean_{m}"].replace(0, np.nan) for m in self.measurements_
        }
        return x.assign(**ratios).fillna(0.0)
