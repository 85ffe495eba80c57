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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "__prediction__"
OTHER = "(other)"  # every category the reference never had, pooled: clients cannot grow the tests or plots
MAX_VALUE_CHARS = 100  # a longer categorical value is hostile (and pooled)


def window_frame(
    records: list[dict[str, Any]], reference: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The window's records as a frame of the reference's columns, with what clients sent counted.

    Only the reference's columns are taken (extra columns are counted, never tested or plotted);
    a numeric column keeps numbers (anything else is counted and becomes missing); a categorical
    column keeps the reference's categories, and pools the rest as ``(other)`` (values that are not
    short strings are counted as hostile). Bounded work: one pass per reference column.
    """
    import numbers

    import pandas as pd

    known = set(map(str, reference.columns))
    hostile = {
        "rows_with_unknown_columns": 0,
        "non_numeric_values": 0,
        "invalid_values": 0,
        "unseen_category_values": 0,
    }
    for r in records:
        if not known.issuperset(r["features"]):
            hostile["rows_with_unknown_columns"] += 1
    columns: dict[str, list[Any]] = {}
    for col in reference.columns:
        name = str(col)
        values = (
            [r.get("prediction") for r in records]
            if name == PREDICTION
            else [r["features"].get(name) for r in records]
        )
        if pd.api.types.is_numeric_dtype(reference[col]) and not pd.api.types.is_bool_dtype(reference[col]):
            ok = [
                v if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) else None
                for v in values
            ]
            hostile["non_numeric_values"] += sum(
                1 for v, o in zip(values, ok, strict=True) if o is None and v is not None
            )
            columns[name] = ok
        else:
            allowed = set(map(str, reference[col].dropna().unique()))
            kept = []
            for v in values:
                if v is None:
                    kept.append(None)
                    continue
                text = str(v) if isinstance(v, (str, int, bool)) else None
                if text is None or len(text) > MAX_VALUE_CHARS:
                    hostile["invalid_values"] += 1
                    kept.append(OTHER)
                elif text in allowed:
                    kept.append(text)
                else:
                    hostile["unseen_category_values"] += 1
                    kept.append(OTHER)
            columns[name] = kept
    frame = pd.DataFrame(columns)
    for col in reference.columns:  # numbers as floats, categories as strings, like the reference
        if pd.api.types.is_numeric_dtype(reference[col]) and not pd.api.types.is_bool_dtype(reference[col]):
            frame[str(col)] = pd.to_numeric(frame[str(col)], errors="coerce").astype(float)
    return frame, hostile


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
        return FeatureDrift(name, "numeric", "ks", stat, p, stat, bool(p < t.alpha and stat >= t.min_effect))
    ref_counts, cur_counts = ref.astype(str).value_counts(), cur.astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    counts = np.array(
        [
            ref_counts.reindex(categories, fill_value=0).to_numpy(),
            cur_counts.reindex(categories, fill_value=0).to_numpy(),
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
    share = float(sum(f.drifted for f in tested) / len(tested)) if tested else 0.0
    return DriftResult(len(current), len(reference), features, share, bool(share >= t.dataset_share))


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


@dataclass
class WindowReport:
    """Everything one monitoring run found, JSON-ready (XCom, MLflow, the run record)."""

    model_name: str
    champion_version: str | None
    window_start: str
    window_end: str
    predictions: int
    malformed_records: int
    hostile: dict[str, int]
    tested_rows: int  # the drift test's rows: a uniform sample when the window is larger
    drift: dict[str, Any] | None
    decay: dict[str, Any] | None
    decision: dict[str, Any]
    note: str
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def labels_for(records: list[dict[str, Any]], labels_dir: Path) -> dict[tuple[str, int], Any]:
    """Ground truth joined on (request_id, row) from ``labels_dir/*.jsonl`` ({"request_id", "row", "label"})."""
    import json

    wanted = {(r["request_id"], int(r["row"])) for r in records}
    found: dict[tuple[str, int], Any] = {}
    for path in sorted(labels_dir.glob("*.jsonl")) if labels_dir.exists() else []:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lab = json.loads(line)
                key = (str(lab["request_id"]), int(lab["row"]))
            except (ValueError, KeyError, TypeError):
                continue
            if key in wanted:
                found[key] = lab["label"]
    return found


def live_decay(
    records: list[dict[str, Any]],
    labels: dict[tuple[str, int], Any],
    promoted_accuracy: float | None,
    *,
    tolerance: float = 0.05,
    min_labels: int = 200,
) -> dict[str, Any] | None:
    """Live accuracy on labelled predictions against the accuracy recorded at promotion."""
    labelled = [
        (r["prediction"], labels[(r["request_id"], int(r["row"]))])
        for r in records
        if (r["request_id"], int(r["row"])) in labels
    ]
    if len(labelled) < min_labels or promoted_accuracy is None:
        return None
    accuracy = sum(1 for p, y in labelled if str(p) == str(y)) / len(labelled)
    return {
        "labelled": len(labelled),
        "live_accuracy": accuracy,
        "promoted_accuracy": promoted_accuracy,
        "decayed": accuracy < promoted_accuracy - tolerance,
        "tolerance": tolerance,
    }


def load_history(path: Path) -> tuple[list[WindowOutcome], datetime | None]:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return [], None
    history = [
        WindowOutcome(
            datetime.fromisoformat(w["end"]), w["predictions"], w["drift"], w["decay"], w.get("note", "")
        )
        for w in data.get("windows", [])
    ]
    last = data.get("last_retrain")
    return history, datetime.fromisoformat(last) if last else None


def save_history(path: Path, history: list[WindowOutcome], last_retrain: datetime | None) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "windows": [{**asdict(w), "end": w.end.isoformat()} for w in history[-500:]],
        "last_retrain": last_retrain.isoformat() if last_retrain else None,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def upsert(history: list[WindowOutcome], outcome: WindowOutcome) -> list[WindowOutcome]:
    """Replace the window with the same end (a rerun of the task), keep the history sorted."""
    return sorted([w for w in history if w.end != outcome.end] + [outcome], key=lambda w: w.end)
