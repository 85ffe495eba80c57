"""Rollout analysis: is the candidate as healthy as the stable version on live traffic?

In the manner of Argo Rollouts' analysis: at each traffic step the candidate is measured
``checks`` times, ``interval_s`` apart. A measurement compares what both versions served since the
previous one (counter deltas, so nothing before the step counts):

- **error rate**: the candidate's 5xx answers and the front's connection or response errors for
  its slot, over its requests, at most ``max_error_rate``;
- **p99 latency** of the candidate's successful requests (interpolated in the histogram's buckets,
  as Prometheus' ``histogram_quantile`` does), at most ``max_p99_ms``;
- **prediction shift**: the total variation distance between the candidate's and the stable
  version's class shares, at most ``max_prediction_shift``;
- **live accuracy**, where ground-truth labels arrive: the stable version's accuracy on its labelled
  rows minus the candidate's, over the step so far, at most ``max_accuracy_drop``. Judged only once
  both versions have ``min_requests`` labelled rows; until then it is shown and not held against
  the measurement (labels often come days later).

A measurement with fewer than ``min_requests`` candidate requests, or without a figure for a
condition (no successful answer to time, no prediction to compare), is *inconclusive*. A step fails
when more than ``failure_limit`` of its measurements failed, or when none of them succeeded (what
could not be judged is not promoted); it passes after ``checks`` measurements otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("switch", "canary", "shadow")


@dataclass(frozen=True)
class Plan:
    mode: str = "switch"
    steps: tuple[int, ...] = (10, 50)  # canary percentages before all traffic
    interval_s: int = 30
    checks: int = 2
    failure_limit: int = 0
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_p99_ms: float = 500.0
    max_prediction_shift: float = 0.1
    max_accuracy_drop: float = 0.05

    @property
    def analysed(self) -> bool:
        return self.mode != "switch"

    def stages(self) -> list[int]:
        """The traffic share of each analysed stage (shadow: one stage at 0 %)."""
        return [0] if self.mode == "shadow" else list(self.steps) if self.mode == "canary" else []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Figures:
    """What one version served over a measurement."""

    requests: int = 0
    errors: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count (2xx)
    classes: dict[str, float] = field(default_factory=dict)

    def plus(self, other: Figures) -> Figures:
        return Figures(
            self.requests + other.requests,
            self.errors + other.errors,
            {
                le: self.buckets.get(le, 0) + other.buckets.get(le, 0)
                for le in {*self.buckets, *other.buckets}
            },
            {c: self.classes.get(c, 0) + other.classes.get(c, 0) for c in {*self.classes, *other.classes}},
        )

    def minus(self, before: Figures) -> Figures:
        return Figures(
            self.requests - before.requests,
            self.errors - before.errors,
            {le: n - before.buckets.get(le, 0) for le, n in self.buckets.items()},
            {c: n - before.classes.get(c, 0) for c, n in self.classes.items()},
        )

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def p99_ms(self) -> float | None:
        return quantile(self.buckets, 0.99) * 1000 if self.buckets else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "classes": self.classes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figures:
        return cls(
            int(d["requests"]),
            int(d["errors"]),
            {float(k): v for k, v in d["buckets"].items()},
            dict(d["classes"]),
        )


def increase(after: dict[str, Figures], before: dict[str, Figures]) -> Figures:
    """What the sources of one version (servers, pods) served between two scrapes, summed.

    A source seen only in ``after`` (a new pod) counts from zero; one whose request counter went
    down restarted, and counts from zero too, as Prometheus' ``increase`` does.
    """
    total = Figures()
    for source, now in after.items():
        then = before.get(source)
        total = total.plus(now if then is None or now.requests < then.requests else now.minus(then))
    return total


def quantile(buckets: dict[float, float], q: float) -> float:
    """The ``q`` quantile from cumulative histogram buckets (``le`` -> count), linearly interpolated."""
    edges = sorted(buckets.items())
    total = edges[-1][1] if edges else 0
    if total <= 0:
        return math.nan
    rank, lower_edge, lower_count = q * total, 0.0, 0.0
    for le, count in edges:
        if count >= rank:
            if math.isinf(le):
                return lower_edge  # beyond the last finite bucket: its edge, as Prometheus does
            span = count - lower_count
            return lower_edge + (le - lower_edge) * ((rank - lower_count) / span if span else 1.0)
        lower_edge, lower_count = le, count
    return lower_edge


def shift(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Total variation distance between two class-count tables (None when either is empty)."""
    ta, tb = sum(a.values()), sum(b.values())
    if ta <= 0 or tb <= 0:
        return None
    return 0.5 * sum(abs(a.get(k, 0) / ta - b.get(k, 0) / tb) for k in set(a) | set(b))


def measure(
    plan: Plan, candidate: Figures, stable: Figures, accuracy: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One measurement's figures, conditions and verdict: successful | failed | inconclusive.

    ``accuracy``: role -> {labelled, accuracy} on the labelled rows of the step so far (or None).
    """
    conditions = []
    if candidate.requests < plan.min_requests:
        verdict = "inconclusive"
        note = f"{candidate.requests} candidate requests, fewer than {plan.min_requests}"
    else:
        rate, p99, tvd = (
            candidate.error_rate or 0.0,
            candidate.p99_ms(),
            shift(candidate.classes, stable.classes),
        )
        conditions = [
            _condition("error rate", rate, plan.max_error_rate, "{:.2%}"),
            _condition("p99 latency (ms)", p99, plan.max_p99_ms, "{:.1f}"),
            _condition("prediction shift (TVD)", tvd, plan.max_prediction_shift, "{:.3f}"),
        ]
        drop = accuracy_drop(plan, accuracy)
        if drop is not None:
            conditions.append(_condition("live accuracy drop", drop, plan.max_accuracy_drop, "{:+.3f}"))
        failed = [c for c in conditions if c["ok"] is False]
        unknown = [c["name"] for c in conditions if c["ok"] is None]
        verdict = "failed" if failed else "inconclusive" if unknown else "successful"
        note = "; ".join(f"{c['name']} {c['shown']} > {c['limit']}" for c in failed) or (
            f"no figure for {', '.join(unknown)} (no successful candidate answers?)"
            if unknown
            else "all conditions hold"
        )
    return {
        "verdict": verdict,
        "note": note,
        "conditions": conditions,
        "candidate": {
            "requests": candidate.requests,
            "errors": candidate.errors,
            "p99_ms": _round(candidate.p99_ms()),
            "classes": candidate.classes,
        },
        "stable": {
            "requests": stable.requests,
            "errors": stable.errors,
            "p99_ms": _round(stable.p99_ms()),
            "classes": stable.classes,
        },
        "accuracy": accuracy,
    }


def accuracy_drop(plan: Plan, accuracy: dict[str, dict[str, Any]] | None) -> float | None:
    """Stable accuracy minus candidate accuracy, once both have ``min_requests`` labelled rows."""
    if not accuracy:
        return None
    c, s = accuracy.get("candidate") or {}, accuracy.get("stable") or {}
    if min(c.get("labelled", 0), s.get("labelled", 0)) < plan.min_requests:
        return None
    return float(s["accuracy"]) - float(c["accuracy"])


def live_accuracy(records: list[dict[str, Any]], labels: dict[tuple[str, int], Any]) -> dict[str, Any]:
    """Accuracy of logged predictions on the rows whose label arrived (joined on request id and row)."""
    hits = [
        str(r["prediction"]) == str(labels[key])
        for r in records
        if (key := (str(r["request_id"]), int(r["row"]))) in labels
    ]
    return {"labelled": len(hits), "accuracy": round(sum(hits) / len(hits), 6) if hits else None}


def _condition(name: str, value: float | None, limit: float, fmt: str) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"name": name, "value": None, "limit": limit, "shown": "n/a", "ok": None}
    return {
        "name": name,
        "value": round(value, 6),
        "limit": limit,
        "shown": fmt.format(value),
        "ok": value <= limit,
    }


def _round(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 3)


def step_verdict(plan: Plan, measurements: list[dict[str, Any]]) -> str:
    """``running`` | ``passed`` | ``failed`` for the measurements of one step so far."""
    failed = sum(m["verdict"] == "failed" for m in measurements)
    if failed > plan.failure_limit:
        return "failed"
    if len(measurements) < plan.checks:
        return "running"
    return "passed" if any(m["verdict"] == "successful" for m in measurements) else "failed"


def figures_from_metrics(text: str, version: str, traffic: str) -> Figures:
    """A model server's ``/metrics`` for one version and kind of traffic (live or shadow)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = Figures()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if labels.get("model_version") != version or labels.get("traffic") != traffic:
                continue
            status = labels.get("status", "")
            if s.name == "mlcicd_requests_total":
                out.requests += int(s.value)
                out.errors += int(s.value) if status.startswith("5") else 0
            elif s.name == "mlcicd_request_seconds_bucket" and status == "200":
                le = float(labels["le"])
                out.buckets[le] = out.buckets.get(le, 0) + s.value
            elif s.name == "mlcicd_predictions_total":
                out.classes[labels["class_"]] = out.classes.get(labels["class_"], 0) + s.value
    return out
