"""The scan's robustness detectors: fragility under small perturbations, leakage and determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlcicd.scan.types import MAJOR, MINOR, Issue, Thresholds


def fragility(model: Any, x: pd.DataFrame, t: Thresholds, rng: np.random.Generator) -> list[Issue]:
    rows = x.sample(min(len(x), t.perturb_rows), random_state=int(rng.integers(2**31))) if len(x) else x
    if rows.empty:
        return []
    base = np.asarray(model.predict(rows))
    issues = []
    for col in rows.columns:
        values = rows[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        v = values.to_numpy(dtype=float)
        spread = np.nanstd(v) if np.isfinite(np.nanstd(v)) else 0.0
        changed = np.zeros(len(rows), dtype=bool)
        for variant in (v * 1.01, v * 0.99, v + rng.normal(0, 0.01 * spread, len(v))):
            shifted = rows.copy()
            shifted[col] = variant  # floats even for an integer column: the pipeline takes them
            changed |= np.asarray(model.predict(shifted)) != base
        rate = float(changed.mean())
        if rate >= t.fragile_rate:
            severity = MAJOR if rate >= t.major_fragile_rate else MINOR
            issues.append(
                Issue(
                    "fragility",
                    severity,
                    f"{col}: a 1 % change flips {rate:.1%} of predictions",
                    f"{col} perturbed",
                    "flip_rate",
                    rate,
                    t.fragile_rate,
                    len(rows),
                )
            )
    return issues


def determinism(model: Any, x: pd.DataFrame, t: Thresholds, rng: np.random.Generator) -> list[Issue]:
    rows = x.head(t.determinism_rows)
    if rows.empty:
        return []
    batch = np.asarray(model.predict_proba(rows))
    again = np.asarray(model.predict_proba(rows))
    single = np.vstack([np.asarray(model.predict_proba(rows.iloc[[i]])) for i in range(len(rows))])
    issues = []
    # Rounding differs between a matrix product and a vector one: only differences beyond it count.
    if not np.allclose(batch, again, rtol=0, atol=1e-9):
        issues.append(
            Issue("determinism", MAJOR, "the same rows predicted twice give different probabilities")
        )
    differ = ~np.isclose(batch, single, rtol=0, atol=1e-9).all(axis=1)
    if differ.any():
        issues.append(
            Issue(
                "leakage",
                MAJOR,
                f"{int(differ.sum())} of {len(rows)} rows get other probabilities "
                "alone than in a batch: rows influence each other",
                metric="rows_differing",
                value=float(differ.sum()),
                rows=len(rows),
            )
        )
    return issues
