"""The promotion gate: a pure function from metrics and a policy to a decision with reasons.

A candidate is promoted only when every absolute threshold holds and, when a champion exists,
the candidate is not worse than it by more than ``max_degradation``, judged on the lower bound of
a confidence interval of the paired metric difference (candidate - champion; DeLong's for ROC AUC,
a paired bootstrap for the others: see :mod:`mlcicd.evaluation`) rather than on a point
comparison, so that holdout noise neither blocks nor sneaks in a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlcicd.choices import RETRAIN_DEFAULTS
from mlcicd.names import Outcome


@dataclass(frozen=True)
class Policy:
    """What a candidate must meet. All metrics are "higher is better" (AUC, accuracy, F1...)."""

    thresholds: dict[str, float]
    primary_metric: str = RETRAIN_DEFAULTS["primary_metric"]
    max_degradation: float = RETRAIN_DEFAULTS["max_degradation"]
    confidence: float = RETRAIN_DEFAULTS["confidence"]
    # What the run's params asked and the installation's floors (MLCICD_GATE_*) that bound them.
    asked: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.max_degradation < 0:
            raise ValueError(f"max_degradation must be >= 0, got {self.max_degradation}")


@dataclass(frozen=True)
class Comparison:
    """Candidate against champion on the same holdout, with an interval of the paired difference."""

    metric: str
    champion_version: str
    candidate: float
    champion: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    method: str = "paired bootstrap"  # how the interval was made (records before issue 16 have none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        return Outcome.PROMOTED if self.promote else Outcome.REJECTED

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.verdict, **asdict(self)}


@dataclass(frozen=True)
class ScanFindings:
    """The scan's word for the gate: the candidate's MAJOR issues the champion does not have."""

    new_major: list[str]
    champion_version: str | None
    reject: bool = True  # False: new MAJOR issues are warnings (the scan_major=warn param)
    allow_without_champion: bool = False
    minor: int = 0
    report: str | None = None


def decide(
    candidate_metrics: dict[str, float],
    comparison: Comparison | None,
    policy: Policy,
    scan: ScanFindings | None = None,
) -> Decision:
    """Decide whether to promote the candidate.

    Args:
        candidate_metrics: the candidate's holdout metrics by name.
        comparison: candidate against the serving champion, or None when there is no champion.
        policy: thresholds, the metric compared with the champion, margin and confidence.

    Returns:
        The decision; ``reasons`` lists every check, passed or failed, so that the record explains
        a promotion as well as a rejection.
    """
    reasons: list[str] = [
        f"note {name} {value:g} was asked; the installation's {'ceiling' if name == 'max_degradation' else 'floor'} "
        f"{policy.floors[name]:g} applies"
        for name, value in sorted(policy.asked.items())
        if name in policy.floors
        and (value > policy.floors[name] if name == "max_degradation" else value < policy.floors[name])
    ]
    ok = True
    for metric, minimum in sorted(policy.thresholds.items()):
        value = candidate_metrics.get(metric)
        if value is None or not math.isfinite(value):
            ok = False
            reasons.append(f"FAIL {metric} was not computed; it is required to be >= {minimum:g}")
        elif value < minimum:
            ok = False
            reasons.append(f"FAIL {metric} {value:.4f} is below the minimum {minimum:g}")
        else:
            reasons.append(f"pass {metric} {value:.4f} >= {minimum:g}")

    if comparison is None:
        reasons.append("pass no champion yet: the thresholds alone decide")
    else:
        c = comparison
        interval = f"{c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] ({c.method})"
        if c.confidence < policy.confidence:
            ok = False
            reasons.append(
                f"FAIL the comparison's interval is at {c.confidence:.0%}; the policy needs {policy.confidence:.0%}"
            )
        elif not all(map(math.isfinite, (c.difference, c.ci_low, c.ci_high))):
            ok = False
            reasons.append(f"FAIL {c.metric} difference with champion v{c.champion_version} is undefined")
        elif c.ci_low < -policy.max_degradation:
            ok = False
            reasons.append(
                f"FAIL {c.metric} may be worse than champion v{c.champion_version} by more than "
                f"{policy.max_degradation:g}: difference {c.difference:+.4f}, {interval}"
            )
        else:
            reasons.append(
                f"pass {c.metric} not worse than champion v{c.champion_version} by more than "
                f"{policy.max_degradation:g}: difference {c.difference:+.4f}, {interval}"
            )
    if scan is not None:
        ok = _judge_scan(scan, reasons) and ok
    return Decision(
        promote=ok,
        reasons=reasons,
        policy=asdict(policy),
        comparison=comparison.to_dict() if comparison else None,
    )


def _judge_scan(scan: ScanFindings, reasons: list[str]) -> bool:
    """Append the scan's reasons; False when its new MAJOR issues reject the candidate."""
    where = f" (report: {scan.report})" if scan.report else ""
    if not scan.new_major:
        against = f"that champion v{scan.champion_version} does not have" if scan.champion_version else ""
        reasons.append(f"pass scan: no MAJOR issue {against}".rstrip() + f" ({scan.minor} minor){where}")
        return True
    if scan.champion_version:
        why, rejects = f"a MAJOR issue champion v{scan.champion_version} does not have", scan.reject
        allow = "scan_major=warn"
    else:
        why, rejects = "a MAJOR issue, and no champion to compare with", not scan.allow_without_champion
        allow = "scan_allow_major_without_champion=true"
    for message in scan.new_major:
        reasons.append(
            f"FAIL scan: {message}: {why}{where}"
            if rejects
            else f"warn scan: {message}: {why}; a warning because {allow}"
        )
    return not rejects
