from __future__ import annotations

import numpy as np
import pytest

from mlcicd.evaluation import METRICS, Scores, all_metrics, metric, paired_bootstrap, weighted_metric


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
