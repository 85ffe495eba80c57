"""The rollout analysis' arithmetic and verdicts (the live part is in tests/e2e/test_rollout.py)."""

from __future__ import annotations

import math

import pytest

from mlcicd.promotion.analysis import (
    Figures,
    Plan,
    figures_from_metrics,
    increase,
    live_accuracy,
    measure,
    quantile,
    shift,
    step_verdict,
)

PLAN = Plan(mode="canary", checks=2, failure_limit=0, min_requests=10, max_error_rate=0.05, max_p99_ms=100)


def figures(requests: int, errors: int = 0, slow: int = 0, classes: dict | None = None) -> Figures:
    """``requests - errors`` answers, ``slow`` of them in the 0.5-1 s bucket, the rest under 10 ms."""
    ok = requests - errors
    return Figures(
        requests,
        errors,
        {0.01: ok - slow, 0.5: ok - slow, 1.0: ok, math.inf: ok},
        classes if classes is not None else {"0": ok * 0.8, "1": ok * 0.2},
    )


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile():
    buckets = {0.1: 50, 0.2: 100, math.inf: 100}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.75) == pytest.approx(0.15)
    assert quantile({0.1: 0, math.inf: 10}, 0.99) == pytest.approx(0.1)  # beyond the last edge: that edge
    assert math.isnan(quantile({0.1: 0, math.inf: 0}, 0.99))


def test_shift_is_the_total_variation_distance():
    assert shift({"0": 80, "1": 20}, {"0": 8, "1": 2}) == pytest.approx(0)
    assert shift({"0": 100}, {"1": 5}) == pytest.approx(1)
    assert shift({"0": 70, "1": 30}, {"0": 80, "1": 20}) == pytest.approx(0.1)
    assert shift({}, {"0": 1}) is None


def test_a_healthy_candidate_measures_successful():
    m = measure(PLAN, figures(100), figures(400))
    assert m["verdict"] == "successful", m
    assert [c["ok"] for c in m["conditions"]] == [True, True, True]


@pytest.mark.parametrize(
    ("candidate", "broken"),
    [
        (figures(100, errors=10), "error rate"),
        (figures(100, slow=5), "p99 latency (ms)"),
        (figures(100, classes={"0": 10, "1": 90}), "prediction shift (TVD)"),
    ],
)
def test_each_condition_fails_a_measurement_on_its_own(candidate, broken):
    m = measure(PLAN, candidate, figures(400))
    assert m["verdict"] == "failed"
    assert [c["name"] for c in m["conditions"] if c["ok"] is False] == [broken]
    assert broken in m["note"]


def test_too_few_requests_or_no_figure_is_inconclusive_not_a_pass():
    assert measure(PLAN, figures(5), figures(400))["verdict"] == "inconclusive"
    only_errors_4xx = Figures(50, 0, {}, {})  # 50 requests, none answered with a prediction
    assert measure(PLAN, only_errors_4xx, figures(400))["verdict"] == "inconclusive"


def test_a_step_needs_a_success_and_at_most_failure_limit_failures():
    ok, bad, unsure = ({"verdict": v} for v in ("successful", "failed", "inconclusive"))
    assert step_verdict(PLAN, [ok]) == "running"
    assert step_verdict(PLAN, [ok, unsure]) == "passed"
    assert step_verdict(PLAN, [unsure, unsure]) == "failed"  # never judged: not promoted
    assert step_verdict(PLAN, [bad]) == "failed"  # failure_limit 0: aborts at once
    assert step_verdict(Plan(checks=3, failure_limit=1), [bad, ok]) == "running"
    assert step_verdict(Plan(checks=3, failure_limit=1), [bad, ok, bad]) == "failed"


def test_figures_are_read_per_version_and_traffic_from_the_servers_metrics():
    text = "\n".join(
        [
            'mlcicd_requests_total{model_version="3",status="200",traffic="live"} 7.0',
            'mlcicd_requests_total{model_version="3",status="500",traffic="live"} 1.0',
            'mlcicd_requests_total{model_version="3",status="200",traffic="probe"} 40.0',
            'mlcicd_requests_total{model_version="3",status="200",traffic="shadow"} 9.0',
            'mlcicd_request_seconds_bucket{le="0.01",model_version="3",status="200",traffic="live"} 6.0',
            'mlcicd_request_seconds_bucket{le="+Inf",model_version="3",status="200",traffic="live"} 7.0',
            'mlcicd_predictions_total{class_="1",model_version="3",traffic="live"} 7.0',
        ]
    )
    live = figures_from_metrics(text, "3", "live")
    assert (live.requests, live.errors, live.classes) == (8, 1, {"1": 7.0})
    assert live.buckets == {0.01: 6.0, math.inf: 7.0}
    assert figures_from_metrics(text, "3", "shadow").requests == 9
    assert figures_from_metrics(text, "4", "live").requests == 0


def test_live_accuracy_joins_labels_on_request_and_row_and_is_judged_once_both_have_enough():
    records = [{"request_id": f"r{i}", "row": 0, "prediction": i % 2} for i in range(30)]
    labels = {(f"r{i}", 0): 1 for i in range(0, 30, 3)}  # 10 labelled rows, of which the odd ones are right
    got = live_accuracy(records, labels)
    assert got == {"labelled": 10, "accuracy": pytest.approx(0.5)}
    assert live_accuracy(records, {}) == {"labelled": 0, "accuracy": None}

    worse = {"candidate": {"labelled": 40, "accuracy": 0.70}, "stable": {"labelled": 200, "accuracy": 0.80}}
    m = measure(PLAN, figures(100), figures(400), worse)
    assert m["verdict"] == "failed" and "live accuracy drop +0.100 > 0.05" in m["note"], m
    close = {"candidate": {"labelled": 40, "accuracy": 0.78}, "stable": {"labelled": 200, "accuracy": 0.80}}
    assert measure(PLAN, figures(100), figures(400), close)["verdict"] == "successful"
    # Too few labels (fewer than min_requests on either side): shown, not judged, not inconclusive.
    few = {"candidate": {"labelled": 9, "accuracy": 0.0}, "stable": {"labelled": 200, "accuracy": 0.80}}
    m = measure(PLAN, figures(100), figures(400), few)
    assert m["verdict"] == "successful" and len(m["conditions"]) == 3 and m["accuracy"] == few


def test_increase_sums_sources_and_counts_a_restarted_or_new_one_from_zero():
    before = {"pod-a": figures(100, 1), "pod-b": figures(50)}
    after = {
        "pod-a": figures(130, 2),  # served 30 more, 1 more error
        "pod-b": figures(8),  # restarted: its counters began again at zero
        "pod-c": figures(5),  # new since the last scrape
    }
    got = increase(after, before)
    assert (got.requests, got.errors) == (30 + 8 + 5, 1)
    assert got.buckets[math.inf] == (128 - 99) + 8 + 5  # the successful answers, timed
    assert increase({}, before).requests == 0  # a version whose pods are gone served nothing since
