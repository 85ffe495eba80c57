"""Monitoring: drift of logged predictions against the training reference, and the retrain policy.

Drift per feature uses a two-sample test suited to its type (Kolmogorov-Smirnov for numeric,
chi-square on category counts for categorical) *and* an effect size (KS statistic, Cramér's V),
because with 10^5+ logged predictions any difference is "significant"; a feature drifts only when
both say so. The retrain policy is a pure function over the history of window outcomes, so that
persistence, cooldown and minimum-traffic rules are tested on their own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "__prediction__"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "numeric" or "categorical"
    test: str
    statistic: float
    p_value: float
    effect: float
    drifted: bool


@dataclass
class DriftResult:
    rows: int
    reference_rows: int
    features: list[FeatureDrift]
    drift_share: float
    dataset_drift: bool

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted_features": self.drifted_features}


@dataclass(frozen=True)
class DriftThresholds:
    alpha: float = 0.01
    min_effect: float = 0.1
    dataset_share: float = 0.3


def feature_drift(name: str, reference: pd.Series, current: pd.Series, t: DriftThresholds) -> FeatureDrift:
    """Test one column of the window against the same column of the reference."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    ref, cur = reference.dropna(), current.dropna()
    if pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(cur) and ref.nunique() > 10:
        res = stats.ks_2samp(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float))
        stat, p = float(res.statistic), float(res.pvalue)
        return FeatureDrift(name, "numeric", "ks", stat, p, stat, p < t.alpha and stat >= t.min_effect)
    categories = sorted(set(map(str, ref.unique())) | set(map(str, cur.unique())))
    counts = np.array(
        [
            [int((ref.astype(str) == c).sum()) for c in categories],
            [int((cur.astype(str) == c).sum()) for c in categories],
        ]
    )
    counts = counts[:, counts.sum(axis=0) > 0]
    if counts.shape[1] < 2:
        return FeatureDrift(name, "categorical", "chi2", 0.0, 1.0, 0.0, False)
    chi2, p, _, _ = stats.chi2_contingency(counts)
    cramers_v = math.sqrt(chi2 / (counts.sum() * (min(counts.shape) - 1)))
    return FeatureDrift(
        name,
        "categorical",
        "chi2",
        float(chi2),
        float(p),
        cramers_v,
        p < t.alpha and cramers_v >= t.min_effect,
    )


def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: DriftThresholds | None = None
) -> DriftResult:
    """Compare every column the two frames share (features, and ``__prediction__`` if present).

    Raises:
        ValueError: the window is empty or shares no column with the reference.
    """
    t = thresholds or DriftThresholds()
    if current.empty:
        raise ValueError("the window holds no predictions")
    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise ValueError(
            f"the window shares no column with the reference ({', '.join(map(str, reference.columns))})"
        )
    features = [feature_drift(str(c), reference[c], current[c], t) for c in columns]
    tested = [f for f in features if f.feature != PREDICTION]
    share = sum(f.drifted for f in tested) / len(tested) if tested else 0.0
    return DriftResult(len(current), len(reference), features, share, share >= t.dataset_share)


@dataclass(frozen=True)
class WindowOutcome:
    """What one monitoring window found (kept in the monitor's history)."""

    end: datetime
    predictions: int
    drift: bool
    decay: bool
    note: str = ""


@dataclass(frozen=True)
class RetrainPolicy:
    consecutive_windows: int = 3
    cooldown: timedelta = timedelta(hours=24)
    min_predictions: int = 500


@dataclass
class RetrainDecision:
    retrain: bool
    reason: str
    evidence: list[str] = field(default_factory=list)


def decide_retrain(
    history: list[WindowOutcome], now: datetime, last_retrain: datetime | None, policy: RetrainPolicy
) -> RetrainDecision:
    """Retrain only when drift or decay persisted over the last N windows with enough traffic,
    and the cooldown since the last retrain has passed. ``history`` is oldest first and includes
    the window just evaluated."""
    if not history:
        return RetrainDecision(False, "no window evaluated yet")
    latest = history[-1]
    if latest.predictions < policy.min_predictions:
        return RetrainDecision(
            False, f"only {latest.predictions} predictions in the window (minimum {policy.min_predictions})"
        )
    recent = history[-policy.consecutive_windows :]
    qualifying = [w for w in recent if w.predictions >= policy.min_predictions and (w.drift or w.decay)]
    if len(recent) < policy.consecutive_windows or len(qualifying) < policy.consecutive_windows:
        return RetrainDecision(
            False,
            f"drift/decay in {len(qualifying)} of the last {policy.consecutive_windows} windows; "
            f"{policy.consecutive_windows} consecutive are needed",
        )
    if last_retrain is not None and now - last_retrain < policy.cooldown:
        left = policy.cooldown - (now - last_retrain)
        return RetrainDecision(False, f"cooldown: last retrain {last_retrain.isoformat()}, {left} left")
    kinds = sorted({k for w in recent for k, on in (("drift", w.drift), ("decay", w.decay)) if on})
    return RetrainDecision(
        True,
        f"{' and '.join(kinds)} over {policy.consecutive_windows} consecutive windows",
        [
            f"{w.end.isoformat()}: {w.predictions} predictions, drift={w.drift}, decay={w.decay} {w.note}".strip()
            for w in recent
        ],
    )
