"""The scan's slice detectors: weak slices, over- and underconfidence, spurious correlation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcicd.scan.types import MAJOR, MINOR, Issue, Thresholds


@dataclass(frozen=True)
class Slice:
    name: str  # in words: "region = west", "tenure_months from 0 to 11"
    feature: str
    mask: np.ndarray
    # The rows its tests may use: a band chosen for its high loss on some rows is tested on others
    # (else it is found worse because it was picked for being worse).
    tested: np.ndarray | None = None

    def within(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """``arrays`` and the slice's mask, restricted to the rows its tests may use."""
        keep = self.tested if self.tested is not None else slice(None)
        return [a[keep] for a in arrays] + [self.mask[keep]]


# -- slices -------------------------------------------------------------------------------------


def slices(x: pd.DataFrame, loss: np.ndarray, t: Thresholds) -> list[Slice]:
    """Categories of categorical features and loss-tree bands of numeric ones, of a testable size."""
    from sklearn.tree import DecisionTreeRegressor

    n = len(x)
    low, high = max(math.ceil(0.05 * n), 20), 0.95 * n
    fit = np.zeros(n, dtype=bool)
    fit[np.random.default_rng(1).permutation(n)[: n // 2]] = True  # bands are learnt on half the rows
    out = []
    for col in x.columns:
        values = x[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            v = values.to_numpy(dtype=float)
            tree = DecisionTreeRegressor(
                min_samples_leaf=max(math.ceil(0.01 * n), 30), max_leaf_nodes=20, random_state=0
            )
            tree.fit(v[fit].reshape(-1, 1), loss[fit])
            leaves = tree.apply(v.reshape(-1, 1))
            for leaf in np.unique(leaves):
                mask = leaves == leaf
                inside = v[mask & ~np.isnan(v)]
                if len(inside) == 0:
                    name = f"{col} is missing"
                else:
                    name = f"{col} from {_num(inside.min())} to {_num(inside.max())}"
                    if np.isnan(v[mask]).any():
                        name += " or missing"
                out.append(Slice(name, col, mask, ~fit))
        else:
            for value in values.dropna().unique():
                out.append(Slice(f"{col} = {value}", col, (values == value).to_numpy()))
    return [s for s in out if low <= s.mask.sum() <= high]


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


def weak_slices(
    found: list[Slice], y: np.ndarray, pred: np.ndarray, classes: np.ndarray, t: Thresholds
) -> tuple[list[Issue], list[dict[str, Any]]]:
    """Slices whose metrics are worse than the whole's, significantly after BH across all tests."""
    from scipy.stats import false_discovery_control

    positive = classes[-1]
    shares = np.array([(y == c).mean() for c in classes])
    first = "balanced_accuracy" if shares.min() < t.unbalanced_share else "accuracy"
    tests = []  # (slice, metric, slice value, global value, rows, p of "worse by > issue", p of "> MAJOR")
    for s in found:
        ys, ps, mask = s.within(y, pred)
        for metric in (first, "precision", "recall"):
            got = _metric_test(metric, ys, ps, positive, mask, t.slice_drop)
            if got is not None:
                major = _metric_test(metric, ys, ps, positive, mask, t.major_slice_drop)
                tests.append((s, metric, *got, major[-1] if major else 1.0))
    if not tests:
        return [], []
    # One family per metric and per threshold: precision and recall differ between slices by their
    # base rates, and those real differences must not loosen the control of the accuracy tests.
    adjusted = np.ones((len(tests), 2))
    for metric in {m for _, m, *_ in tests}:
        at = [i for i, test in enumerate(tests) if test[1] == metric]
        for col, k in ((0, -2), (1, -1)):
            adjusted[at, col] = false_discovery_control([max(min(tests[i][k], 1.0), 0.0) for i in at])
    issues, tested = [], []
    for (s, metric, value, whole, rows, _, _), (p, p_major) in zip(tests, adjusted, strict=True):
        drop = (whole - value) / whole if whole > 0 else 0.0
        tested.append(
            {
                "slice": s.name,
                "metric": metric,
                "value": value,
                "overall": whole,
                "rows": rows,
                "p_adjusted": float(p),
                "p_major_adjusted": float(p_major),
                "drop": drop,
            }
        )
        if drop > t.slice_drop and p <= t.fdr:
            # MAJOR when the slice is surely worse by more than the MAJOR drop (a harder slice, such as
            # one whose classes are near even, is worse by a little; a weakness by a lot). Precision and
            # recall move with a slice's share of positives (few positives, low recall at the same
            # threshold): the base rate, not a weakness, so they are minor; the accuracy (balanced
            # when the classes are unbalanced) decides what is MAJOR.
            major = drop > t.major_slice_drop and p_major <= t.fdr and metric == first
            issues.append(
                Issue(
                    "weak_slice",
                    MAJOR if major else MINOR,
                    f"{s.name}: {metric} {value:.2f} against "
                    f"{whole:.2f} overall ({rows} rows, {drop:.0%} worse)",
                    s.name,
                    metric,
                    value,
                    whole,
                    rows,
                    float(p_major if major else p),
                )
            )
    return issues, tested


def _metric_test(
    metric: str, y: np.ndarray, pred: np.ndarray, positive: Any, mask: np.ndarray, margin: float
) -> tuple[float, float, int, float] | None:
    """(slice value, whole value, slice rows, one-sided p of "the slice is worse than the whole holdout
    by more than ``margin``, relative"): a slice is an issue when it is *surely* worse than the
    threshold, not merely surely different (slices differ in how hard they are, and a large slice's
    small difference is always significant)."""
    from scipy.stats import norm

    def share(hits: np.ndarray) -> tuple[float, float]:
        """A proportion and its variance, the variance from the Agresti-Coull adjusted proportion
        (a slice with 0 of 5 right is not *surely* at 0: the plain estimate's variance would be 0)."""
        n, k = len(hits), int(hits.sum())
        adjusted = (k + 2) / (n + 4)
        return k / n, adjusted * (1 - adjusted) / (n + 4)

    def parts(m: np.ndarray) -> tuple[float, float, float]:  # value, its variance, denominator
        if metric == "accuracy":
            sel = m
        elif metric == "precision":
            sel = m & (pred == positive)
        elif metric == "recall":
            sel = m & (y == positive)
        else:  # balanced accuracy: the mean of the classes' recalls
            recalls, var = [], 0.0
            for c in np.unique(y):
                sel = m & (y == c)
                if sel.sum() < 10:
                    return math.nan, math.nan, 0
                r, v = share(pred[sel] == c)
                recalls.append(r)
                var += v
            return float(np.mean(recalls)), var / len(recalls) ** 2, m.sum()
        n = sel.sum()
        if not n:
            return math.nan, math.nan, 0
        v, var = share(pred[sel] == y[sel])
        return v, var, n

    inside, rest, whole = parts(mask), parts(~mask), parts(np.ones_like(mask))
    if inside[2] < 10 or rest[2] < 10 or math.isnan(inside[0]) or math.isnan(rest[0]):
        return None
    # Against the whole holdout's value, as the drop is defined (the rest of an easy holdout can be
    # far better than the whole); the whole's own error is small beside the slice's.
    spread = math.sqrt(inside[1] + whole[1])
    bound = whole[0] * (1 - margin)
    if spread == 0:
        p = 1.0 if inside[0] >= bound else 0.0
    else:
        p = float(norm.sf((bound - inside[0]) / spread))
    return float(inside[0]), float(whole[0]), int(mask.sum()), p


# -- confidence and correlation -----------------------------------------------------------------


def confidence(
    found: list[Slice], y: np.ndarray, pred: np.ndarray, proba: np.ndarray, p_true: np.ndarray, t: Thresholds
) -> list[Issue]:
    from scipy.stats import false_discovery_control, norm

    top = np.sort(proba, axis=1)
    flags = {
        "overconfidence": (pred != y) & (top[:, -1] - p_true > 0.5),
        "underconfidence": top[:, -2] / np.maximum(top[:, -1], 1e-15) > 0.95,
    }
    tests = []
    for detector, flag in flags.items():
        whole = flag.mean()
        for s in found:
            f, mask = s.within(flag)
            if mask.sum() < 10 or (~mask).sum() < 10:
                continue
            inside, rest = f[mask].mean(), f[~mask].mean()
            spread = math.sqrt(inside * (1 - inside) / mask.sum() + rest * (1 - rest) / (~mask).sum())
            p = float(norm.sf((inside - rest) / spread)) if spread > 0 else 1.0
            tests.append((detector, s, inside, whole, int(mask.sum()), p))
    if not tests:
        return []
    adjusted = false_discovery_control([p for *_, p in tests])
    issues = []
    for (detector, s, inside, whole, rows, _), p in zip(tests, adjusted, strict=True):
        if whole > 0 and inside > whole * (1 + t.confidence_excess) and p <= t.fdr:
            issues.append(
                Issue(
                    detector,
                    MINOR,
                    f"{s.name}: {detector} rate {inside:.1%} against {whole:.1%} overall",
                    s.name,
                    f"{detector}_rate",
                    float(inside),
                    float(whole),
                    rows,
                    float(p),
                )
            )
    return issues


def spurious(found: list[Slice], pred: np.ndarray, t: Thresholds) -> list[Issue]:
    issues = []
    for s in found:
        u = theils_u(pred, s.mask)
        if u > t.spurious_u:
            issues.append(
                Issue(
                    "spurious_correlation",
                    MINOR,
                    f"{s.name}: membership alone tells the prediction (Theil's U {u:.2f})",
                    s.name,
                    "theils_u",
                    u,
                    t.spurious_u,
                    int(s.mask.sum()),
                )
            )
    return issues


def theils_u(target: np.ndarray, given: np.ndarray) -> float:
    """U(target | given): the share of the target's entropy that knowing ``given`` removes."""

    def entropy(values: np.ndarray) -> float:
        _, counts = np.unique(values, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())

    h = entropy(target)
    if h == 0:
        return 0.0
    conditional = sum((given == g).mean() * entropy(target[given == g]) for g in np.unique(given))
    return (h - conditional) / h
