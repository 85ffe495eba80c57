from __future__ import annotations

import numpy as np
import pytest

from mlcicd.evaluation import (
    METRICS,
    Scores,
    all_metrics,
    cell_bootstrap,
    compare,
    delong,
    metric,
    paired_bootstrap,
    weighted_metric,
)


def _scores(y: np.ndarray, noise: float, seed: int) -> Scores:
    rng = np.random.default_rng(seed)
    proba = np.clip(y * 0.6 + 0.2 + rng.normal(0, noise, len(y)), 0, 1)
    return Scores(labels=(proba >= 0.5).astype(int), proba=proba)


@pytest.fixture
def y():
    return np.random.default_rng(0).integers(0, 2, 800)


def test_identical_models_interval_contains_zero(y):
    s = _scores(y, 0.3, 1)
    c = paired_bootstrap(y, s, s, metric_name="roc_auc", champion_version="1", resamples=200)
    assert c.difference == 0 and c.ci_low == 0 and c.ci_high == 0
    assert c.resamples == 200


def test_clearly_better_candidate_interval_above_zero(y):
    better, worse = _scores(y, 0.15, 1), _scores(y, 0.6, 2)
    c = paired_bootstrap(y, better, worse, metric_name="roc_auc", champion_version="1", resamples=300)
    assert c.difference > 0.05
    assert 0 < c.ci_low <= c.difference <= c.ci_high


def test_interval_is_reproducible_for_a_seed(y):
    a, b = _scores(y, 0.3, 1), _scores(y, 0.35, 2)
    first = paired_bootstrap(y, a, b, metric_name="accuracy", champion_version="1", resamples=200, seed=7)
    again = paired_bootstrap(y, a, b, metric_name="accuracy", champion_version="1", resamples=200, seed=7)
    assert first == again


def test_wider_confidence_gives_wider_interval(y):
    a, b = _scores(y, 0.3, 1), _scores(y, 0.35, 2)
    narrow = paired_bootstrap(
        y, a, b, metric_name="roc_auc", champion_version="1", resamples=400, confidence=0.8
    )
    wide = paired_bootstrap(
        y, a, b, metric_name="roc_auc", champion_version="1", resamples=400, confidence=0.99
    )
    assert wide.ci_low < narrow.ci_low and wide.ci_high > narrow.ci_high


def test_metrics_match_definitions():
    y = np.array([0, 0, 1, 1])
    s = Scores(labels=np.array([0, 1, 1, 1]), proba=np.array([0.1, 0.6, 0.7, 0.9]))
    m = all_metrics(y, s)
    assert m["accuracy"] == 0.75 and m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["roc_auc"] == 1.0


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'brier'"):
        metric("brier", np.array([0, 1]), Scores(np.array([0, 1]), np.array([0.2, 0.8])))


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_metrics_equal_sklearn_on_the_resampled_rows(name, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    # Rounded scores make ties, which the rank-based AUC must count as sklearn does.
    proba = np.round(np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1), 1)
    s = Scores(labels=(proba >= 0.5).astype(int), proba=proba)
    idx = rng.integers(0, 300, (4, 300))
    weights = np.stack([np.bincount(row, minlength=300) for row in idx])
    fast = weighted_metric(name, y, s, weights)
    for row, value in zip(idx, fast, strict=True):
        assert value == pytest.approx(metric(name, y[row], Scores(s.labels[row], s.proba[row])), abs=1e-12)


# -- the gate's comparison: DeLong for ROC AUC, the cell bootstrap for the label metrics (issue 16) ----


def test_compare_uses_delong_for_roc_auc_and_the_cell_bootstrap_for_the_others(y):
    a, b = _scores(y, 0.3, 1), _scores(y, 0.35, 2)
    auc = compare(y, a, b, metric_name="roc_auc", champion_version="1")
    assert auc.method == "DeLong" and auc.resamples == 0
    assert auc.candidate == metric("roc_auc", y, a) and auc.champion == metric("roc_auc", y, b)
    f1 = compare(y, a, b, metric_name="f1", champion_version="1", resamples=500)
    assert f1.method.startswith("paired bootstrap") and f1.resamples == 500


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_agrees_with_the_row_bootstrap_on_moderate_holdouts(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 3000)
    # Rounded scores: ties, which both count half.
    a = Scores(np.zeros(3000, int), np.round(np.clip(y * 0.3 + rng.normal(0.35, 0.25, 3000), 0, 1), 2))
    b = Scores(np.zeros(3000, int), np.clip(y * 0.25 + rng.normal(0.37, 0.25, 3000), 0, 1))
    exact = delong(y, a, b, champion_version="1")
    ref = paired_bootstrap(y, a, b, metric_name="roc_auc", champion_version="1", resamples=4000, seed=seed)
    assert exact.difference == pytest.approx(ref.difference, abs=1e-12)
    assert exact.ci_low == pytest.approx(ref.ci_low, abs=0.004) and exact.ci_high == pytest.approx(
        ref.ci_high, abs=0.004
    )
    assert exact.ci_high - exact.ci_low > 0.01  # a real interval, not a point


@pytest.mark.parametrize("name", [m for m in METRICS if m != "roc_auc"])
def test_the_cell_bootstrap_agrees_with_the_row_bootstrap(name):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 3000)
    a, b = _scores(y, 0.45, 1), _scores(y, 0.5, 2)
    cells = cell_bootstrap(y, a, b, metric_name=name, champion_version="1", resamples=4000, seed=1)
    rows = paired_bootstrap(y, a, b, metric_name=name, champion_version="1", resamples=4000, seed=2)
    assert cells.difference == rows.difference
    assert cells.ci_low == pytest.approx(rows.ci_low, abs=0.004) and cells.ci_high == pytest.approx(
        rows.ci_high, abs=0.004
    )


def test_identical_models_and_one_class_holdouts():
    y = np.random.default_rng(3).integers(0, 2, 500)
    s = _scores(y, 0.3, 1)
    same = delong(y, s, s, champion_version="1")
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0
    one_class = np.ones(50, int)
    t = _scores(one_class, 0.3, 2)
    assert np.isnan(delong(one_class, t, t, champion_version="1").ci_low)  # the gate fails closed on NaN
    assert np.isnan(cell_bootstrap(one_class, t, t, metric_name="f1", champion_version="1").ci_low)
    with pytest.raises(ValueError, match="use delong"):
        cell_bootstrap(y, s, s, metric_name="roc_auc", champion_version="1")


def test_the_comparison_at_two_million_rows_stays_in_bounded_memory():
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 2_000_000
    y = rng.integers(0, 2, n).astype(np.int8)
    a = Scores((rng.random(n) < 0.5).astype(np.int8), rng.random(n))
    b = Scores((rng.random(n) < 0.5).astype(np.int8), rng.random(n))
    tracemalloc.start()
    try:
        compare(y, a, b, metric_name="roc_auc", champion_version="1")
        compare(y, a, b, metric_name="f1", champion_version="1", resamples=20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The inputs are 34 MB; a row-level bootstrap of 1,000 resamples would hold gigabytes.
    assert peak < 400 * 2**20, f"{peak / 2**20:.0f} MB"
