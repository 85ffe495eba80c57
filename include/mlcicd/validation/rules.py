"""The contract's and the profile's bounds, and the shape of one expectation: shared by inference
and validation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "Int64", "float32", "float64", "Float64"]
CONTRACT = "critical"  # GX FailureSeverity: a failure stops the run
PROFILE = "warning"  # a failure is shift: reported, the run goes on
# Suites of an older format are re-inferred (from the champion's training sample): 2 split the contract
# and the profile; 3 made a column with no missing values in the reference required (TFX's min_fraction 1).
SUITE_FORMAT = 3

# Contract bounds.
MAX_CATEGORIES = 50  # categorical columns with more distinct values are free text (no set check)
PLAUSIBLE_RANGES = 1.0  # values beyond min - 1 x range or max + 1 x range are implausible...
MAX_IMPLAUSIBLE = 0.001  # ...and at most 0.1 % of a column's values may be
MAX_UNSEEN_CATEGORIES = 0.01  # share of values outside the reference's categories
NULL_SLACK = 0.05  # null share may exceed the reference's by 5 points (and at least double it)
MAX_DUPLICATE_FRACTION = 0.02
# Profile bounds: beyond them the batch has shifted.
ROW_COUNT_FACTOR = 10
RANGE_MARGIN = 0.1  # the observed range, widened by 10 %...
PROFILE_MOSTLY = 0.99  # ...holds 99 % of the values
MEAN_SHIFT_SD = 0.25  # a column's mean moved by more than a quarter standard deviation
MAX_SHARE_KL = 0.02  # KL divergence of category shares from the reference's, in nats
PROFILE_SAMPLE_ROWS = 1_000_000  # the profile of a larger batch is checked on a sample of this many rows


def domain(e: dict[str, Any]) -> tuple[str, str | None]:
    return e["type"], e["kwargs"].get("column")


def expectation(severity: str, expectation_type: str, /, **kwargs: Any) -> dict[str, Any]:
    return {"type": expectation_type, "kwargs": kwargs, "severity": severity}


def mostly_of(bad_share: float) -> float:
    return max(0.0, round(1 - bad_share, 4))


def observed_values(s: pd.Series) -> list[Any]:
    return sorted(v.item() if hasattr(v, "item") else v for v in s.dropna().unique())


def rounded(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x
