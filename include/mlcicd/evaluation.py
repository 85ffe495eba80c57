"""Evaluation: candidate and champion scored on the same holdout, and their paired bootstrap."""

from __future__ import annotations

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
    import numpy as np

    return Scores(labels=np.asarray(model.predict(x)), proba=np.asarray(model.predict_proba(x))[:, 1])


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
    cand, champ = metric(metric_name, y, candidate), metric(metric_name, y, champion)
    alpha = (1 - confidence) / 2
    if kept.size:
        low, high = (float(v) for v in np.quantile(kept, [alpha, 1 - alpha]))
    else:
        low = high = float("nan")
    return Comparison(
        metric=metric_name,
        champion_version=champion_version,
        candidate=cand,
        champion=champ,
        difference=cand - champ,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        resamples=int(kept.size),
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
