"""Scan a model for hidden weaknesses on the holdout: weak slices, fragility, over- and
underconfidence, leakage or non-determinism, spurious correlation.

Giskard's open-source scan (the reference for this) is unmaintained and pins ``numpy<2``, and
deepchecks fails to import on numpy 2, so the detectors are written here on scikit-learn, numpy
and scipy, following those tools' published rules; each threshold is a named field of
:class:`Thresholds`, and the gate's params can override the main ones.

- **Weak slices**: each category of each categorical feature, and for each numeric feature the
  leaves of a shallow decision tree fitted on the per-row log loss (``min_samples_leaf`` =
  max(1 % of rows, 30), at most 20 leaves), kept between max(5 % of rows, 20) and 95 % of rows.
  A slice's accuracy (balanced accuracy when classes are unbalanced), precision and recall are
  compared with the whole holdout's: surely worse by more than ``slice_drop`` (relative) is an
  issue, surely worse by more than ``major_slice_drop`` MAJOR (for the accuracy; precision and
  recall, which follow a slice's base rate, are minor). "Surely": a one-sided test of the shifted
  null "no worse than the threshold", on rows other than those a band was learnt on, with false
  discoveries controlled across the slices per metric and threshold (Benjamini-Hochberg). A slice
  that is merely harder (classes near even) is worse by a little; on the default synthetic data,
  40 seeds give no MAJOR issue, while a category and a band with 40 % of labels flipped are found.
- **Fragility**: each numeric feature x1.01, x0.99 and with noise of 1 % of its spread, on up to
  ``perturb_rows`` rows; the share of changed predictions is an issue at ``fragile_rate``, MAJOR
  at ``major_fragile_rate``.
- **Overconfidence** (wrong, with p_max - p_true > 0.5) and **underconfidence** (p2/p1 > 0.95)
  by slice: minor when a slice's rate exceeds the whole's by more than ``confidence_excess``
  (relative), significantly.
- **Leakage and determinism**: ``determinism_rows`` rows predicted one at a time against in one
  batch, and twice: any difference is MAJOR.
- **Spurious correlation**: Theil's U of the prediction given slice membership above
  ``spurious_u``: minor.

Holdouts under ``min_rows`` skip the loss-based detectors (slices, confidence) with a note;
above ``max_rows`` rows the slice detectors use a seeded uniform sample, and the result says so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from mlcicd.scan.robustness import determinism, fragility
from mlcicd.scan.slices import confidence, slices, spurious, weak_slices
from mlcicd.scan.types import MAJOR, MINOR, Issue, ScanResult, Thresholds, new_major

__all__ = ["MAJOR", "MINOR", "Issue", "ScanResult", "Thresholds", "new_major", "scan"]


def scan(
    model: Any, x: pd.DataFrame, y: np.ndarray, thresholds: Thresholds | None = None, seed: int = 0
) -> ScanResult:
    """Run every detector on ``model`` (a fitted classifier with ``predict_proba``) and the holdout."""
    t = thresholds or Thresholds()
    started = time.perf_counter()
    y = np.asarray(y)
    result = ScanResult(rows=len(x))
    rng = np.random.default_rng(seed)
    result.issues += determinism(model, x, t, rng)
    result.issues += fragility(model, x, t, rng)
    if len(x) < t.min_rows:
        result.notes.append(
            f"{len(x)} holdout rows, fewer than {t.min_rows}: the slice, confidence and "
            "correlation detectors were skipped"
        )
    else:
        if len(x) > t.max_rows:
            keep = np.sort(rng.choice(len(x), t.max_rows, replace=False))
            x, y = x.iloc[keep].reset_index(drop=True), y[keep]
            result.sampled_from = result.rows
            result.notes.append(
                f"the slice detectors used a uniform sample of {t.max_rows:,} of {result.rows:,} rows"
            )
        classes = np.asarray(model.classes_)
        proba = np.asarray(model.predict_proba(x))
        pred = classes[proba.argmax(axis=1)]
        p_true = proba[np.arange(len(y)), np.searchsorted(classes, y)]
        loss = -np.log(np.clip(p_true, 1e-15, 1))
        found = slices(x, loss, t)
        issues, tested = weak_slices(found, y, pred, classes, t)
        result.issues += issues
        result.slices = tested
        result.issues += confidence(found, y, pred, proba, p_true, t)
        result.issues += spurious(found, pred, t)
    order = {MAJOR: 0, MINOR: 1}
    result.issues.sort(key=lambda i: (order[i.severity], i.detector, -(i.reference or 0) + (i.value or 0)))
    result.seconds = round(time.perf_counter() - started, 3)
    return result
