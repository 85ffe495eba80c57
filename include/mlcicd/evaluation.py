"""Evaluation: candidate and champion scored on the same holdout, and the interval of their difference.

The interval's cost must not grow with the holdout times the resamples (a 500,000-row holdout and
1,000 row-level resamples took 115 s and gigabytes):

- ROC AUC: DeLong's method for two correlated AUCs (DeLong, DeLong and Clarke-Pearson 1988, in the
  O(n log n) form of Sun and Xu 2014): the variance of the paired difference from the placement
  values, no resampling.
- accuracy, precision, recall, f1: these depend on a row only through (label, candidate's
  prediction, champion's prediction), eight cells. Drawing rows with replacement is drawing the
  eight cells' counts from a multinomial: the paired bootstrap, exactly, in memory of the resamples
  times eight.

:func:`paired_bootstrap` (rows resampled, any metric, in chunks of bounded memory) is the reference
the two are checked against (tests/unit/test_evaluation.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlcicd.choices import METRICS
from mlcicd.gate import Comparison

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Scores:
    """A model's holdout outputs: predicted labels and the positive-class score."""

    labels: np.ndarray
    proba: np.ndarray


@dataclass
class EvaluationResult:
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    comparison: dict[str, Any] | None
    champion_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(model: Any, x: pd.DataFrame) -> Scores:
    """One ``predict_proba`` pass; the labels are its most probable class, which is what ``predict``
    returns for the three families trained here (a second pass cost seconds on large holdouts)."""
    import numpy as np

    proba = np.asarray(model.predict_proba(x))
    return Scores(labels=np.asarray(model.classes_)[proba.argmax(axis=1)], proba=proba[:, 1])


def metric(name: str, y: np.ndarray, s: Scores) -> float:
    from sklearn import metrics as m

    if name == "roc_auc":
        return float(m.roc_auc_score(y, s.proba))
    if name == "accuracy":
        return float(m.accuracy_score(y, s.labels))
    if name == "f1":
        return float(m.f1_score(y, s.labels, zero_division=0))
    if name == "precision":
        return float(m.precision_score(y, s.labels, zero_division=0))
    if name == "recall":
        return float(m.recall_score(y, s.labels, zero_division=0))
    raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def weighted_metric(name: str, y: np.ndarray, s: Scores, weights: np.ndarray) -> np.ndarray:
    """:func:`metric` under each row of ``weights`` (resample counts), vectorised over resamples.

    A bootstrap resample is a vector of counts over the rows, so all resamples are computed at
    once. ROC AUC is the Mann-Whitney statistic with ties counted half, as sklearn does.
    """
    import numpy as np

    y = np.asarray(y)
    w = np.asarray(weights, dtype=float)
    pos, labels = (y == 1), np.asarray(s.labels)
    if name == "roc_auc":
        order = np.argsort(s.proba, kind="mergesort")
        scores, pos_sorted, w_sorted = s.proba[order], pos[order], w[:, order]
        starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
        p = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)
        n = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
        below = np.cumsum(n, axis=1) - n
        with np.errstate(invalid="ignore", divide="ignore"):
            return (p * (below + 0.5 * n)).sum(axis=1) / (p.sum(axis=1) * n.sum(axis=1))
    if name == "accuracy":
        return (w * (labels == y)).sum(axis=1) / w.sum(axis=1)
    tp = (w * ((labels == 1) & pos)).sum(axis=1)
    predicted, actual = (w * (labels == 1)).sum(axis=1), (w * pos).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "precision":
            return np.where(predicted > 0, tp / predicted, 0.0)
        if name == "recall":
            return np.where(actual > 0, tp / actual, 0.0)
        if name == "f1":
            return np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
    raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def all_metrics(y: np.ndarray, s: Scores) -> dict[str, float]:
    return {name: metric(name, y, s) for name in METRICS}


def paired_bootstrap(
    y: np.ndarray,
    candidate: Scores,
    champion: Scores,
    *,
    metric_name: str,
    champion_version: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Percentile interval of metric(candidate) - metric(champion) over paired resamples of rows.

    Both models are scored on the same resamples (multinomial row counts); resamples holding a
    single class (possible on tiny holdouts) are dropped and ``resamples`` reports how many were kept.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    n = len(y)
    chunk = max(1, 4_000_000 // max(n, 1))
    diffs: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start))
        positives = (weights * (y == 1)).sum(axis=1)
        weights = weights[(positives > 0) & (positives < n)]
        diff = weighted_metric(metric_name, y, candidate, weights) - weighted_metric(
            metric_name, y, champion, weights
        )
        diffs.append(diff[np.isfinite(diff)])
    kept = np.concatenate(diffs) if diffs else np.array([])
    return _percentile_interval(
        y, candidate, champion, kept, metric_name, champion_version, confidence, "paired bootstrap of rows"
    )


def _percentile_interval(
    y: np.ndarray,
    candidate: Scores,
    champion: Scores,
    kept: np.ndarray,
    metric_name: str,
    champion_version: str,
    confidence: float,
    method: str,
) -> Comparison:
    """The comparison from the kept resampled differences: their percentile interval (NaN if none)."""
    import numpy as np

    cand, champ = metric(metric_name, y, candidate), metric(metric_name, y, champion)
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(kept, [alpha, 1 - alpha])) if kept.size else (math.nan,) * 2
    return Comparison(
        metric_name,
        champion_version,
        cand,
        champ,
        cand - champ,
        low,
        high,
        confidence,
        int(kept.size),
        f"{method}, {int(kept.size)} resamples",
    )


def compare(
    y: np.ndarray,
    candidate: Scores,
    champion: Scores,
    *,
    metric_name: str,
    champion_version: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """The gate's comparison: :func:`delong` for ROC AUC, :func:`cell_bootstrap` for the others."""
    if metric_name == "roc_auc":
        return delong(y, candidate, champion, champion_version=champion_version, confidence=confidence)
    return cell_bootstrap(
        y,
        candidate,
        champion,
        metric_name=metric_name,
        champion_version=champion_version,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )


def delong(
    y: np.ndarray, candidate: Scores, champion: Scores, *, champion_version: str, confidence: float = 0.95
) -> Comparison:
    """Normal interval of AUC(candidate) - AUC(champion) with DeLong's variance of the paired difference.

    Hand-written (30 lines): no well-kept Python library offers DeLong's test; scipy and scikit-learn do
    not. Ties count half, as in scikit-learn's ``roc_auc_score``; a holdout of one class gives NaN.
    """
    from statistics import NormalDist

    import numpy as np
    import pandas as pd

    def rankdata(a: np.ndarray) -> np.ndarray:  # midranks (pandas': scipy.stats costs 1-2 s to import)
        return pd.Series(a).rank(method="average").to_numpy()

    y = np.asarray(y)
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    if not (m and n):
        nan = float("nan")
        return Comparison("roc_auc", champion_version, nan, nan, nan, nan, nan, confidence, 0, "DeLong")
    v10, v01 = [], []
    for s in (candidate, champion):
        x, z = s.proba[pos], s.proba[~pos]
        tz = rankdata(np.concatenate([x, z]))  # midranks: ties count half
        tx, ty = rankdata(x), rankdata(z)
        v10.append((tz[:m] - tx) / n)  # each positive's share of negatives ranked below it
        v01.append(1.0 - (tz[m:] - ty) / m)  # each negative's share of positives ranked above it

    def covariance(v: list[np.ndarray]) -> np.ndarray:  # of the two models' placements; none for one row
        return np.cov(np.vstack(v)) if v[0].size > 1 else np.zeros((2, 2))

    cov = covariance(v10) / m + covariance(v01) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    # The AUCs as scikit-learn gives them (the run's metrics): the midrank ones up to rounding.
    cand, champ = metric("roc_auc", y, candidate), metric("roc_auc", y, champion)
    diff = cand - champ
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(max(var, 0.0))
    return Comparison(
        "roc_auc", champion_version, cand, champ, diff, diff - half, diff + half, confidence, 0, "DeLong"
    )


def cell_bootstrap(
    y: np.ndarray,
    candidate: Scores,
    champion: Scores,
    *,
    metric_name: str,
    champion_version: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """The paired bootstrap of a label metric (accuracy, precision, recall, f1), drawn on the eight
    cells of (label, candidate's prediction, champion's prediction) rather than on the rows: the same
    distribution, at a cost independent of the holdout's size. Resamples of one class are dropped."""
    import numpy as np

    if metric_name == "roc_auc":
        raise ValueError("roc_auc depends on the scores, not only on the labels: use delong()")
    y = np.asarray(y)
    bits = [(y == 1), (np.asarray(candidate.labels) == 1), (np.asarray(champion.labels) == 1)]
    cells = bits[0].astype(np.int64) * 4 + bits[1] * 2 + bits[2]
    n = len(y)
    counts = np.bincount(cells, minlength=8)
    code = np.arange(8)
    cell_y, cell_cand, cell_champ = (code >> 2) & 1, (code >> 1) & 1, code & 1
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, counts / max(n, 1), size=resamples) if n else np.zeros((0, 8))
    positives = weights[:, 4:].sum(axis=1)
    weights = weights[(positives > 0) & (positives < n)]
    none = np.zeros(8)
    diff = weighted_metric(metric_name, cell_y, Scores(cell_cand, none), weights) - weighted_metric(
        metric_name, cell_y, Scores(cell_champ, none), weights
    )
    return _percentile_interval(
        y,
        candidate,
        champion,
        diff[np.isfinite(diff)],
        metric_name,
        champion_version,
        confidence,
        "paired bootstrap",
    )


def plot_confusion_matrix(y: np.ndarray, s: Scores, title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(y, s.labels, ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_roc(y: np.ndarray, curves: dict[str, Scores]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, s in curves.items():
        RocCurveDisplay.from_predictions(y, s.proba, ax=ax, name=label)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set_title("ROC on the holdout")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def log_to_mlflow(
    mlflow_run_id: str, result: EvaluationResult, y: np.ndarray, curves: dict[str, Scores]
) -> None:
    """Log the holdout metrics, the interval of the difference and the plots to the candidate's run.

    ``curves`` holds the candidate's scores under ``"candidate"`` and the champion's, if any.
    """
    import mlflow

    with mlflow.start_run(run_id=mlflow_run_id):
        mlflow.log_metrics({f"holdout_{k}": v for k, v in result.candidate_metrics.items()})
        if result.champion_metrics:
            mlflow.log_metrics({f"champion_holdout_{k}": v for k, v in result.champion_metrics.items()})
        if result.comparison:
            mlflow.log_metrics(
                {"diff_ci_low": result.comparison["ci_low"], "diff_ci_high": result.comparison["ci_high"]}
            )
        mlflow.log_figure(
            plot_confusion_matrix(y, curves["candidate"], "Candidate on the holdout"),
            "plots/confusion_matrix.png",
        )
        mlflow.log_figure(plot_roc(y, curves), "plots/roc_curve.png")
