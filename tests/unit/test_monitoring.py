from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mlcicd import synthetic
from mlcicd.monitoring import (
    RetrainPolicy,
    WindowOutcome,
    decide_retrain,
    detect_drift,
)

T0 = datetime(2026, 11, 22, 0, 0)
POLICY = RetrainPolicy(consecutive_windows=3, cooldown=timedelta(hours=24), min_predictions=500)


def window(hour: int, drift: bool = False, decay: bool = False, n: int = 1000) -> WindowOutcome:
    return WindowOutcome(T0 + timedelta(hours=hour), n, drift, decay)


@pytest.fixture(scope="module")
def reference():
    return synthetic.generate(5000, 1).drop(columns="churned")


def test_same_distribution_does_not_drift(reference):
    result = detect_drift(reference, synthetic.generate(3000, 2).drop(columns="churned"))
    assert result.drifted_features == [] and not result.dataset_drift


def test_drifted_traffic_is_detected_on_the_features_that_moved(reference):
    result = detect_drift(reference, synthetic.generate(3000, 2, drift=2.0).drop(columns="churned"))
    assert result.dataset_drift
    assert {"monthly_charges", "contract", "tenure_months"} <= set(result.drifted_features)
    assert "region" not in result.drifted_features


def test_empty_or_unrelated_window_is_refused(reference):
    with pytest.raises(ValueError, match="no predictions"):
        detect_drift(reference, reference.iloc[0:0])
    with pytest.raises(ValueError, match="shares no column"):
        detect_drift(reference, reference.rename(columns=lambda c: c + "_x"))


def test_no_drift_over_many_windows_no_retrain():
    history = [window(h) for h in range(10)]
    assert not decide_retrain(history, history[-1].end, None, POLICY).retrain


def test_one_drifted_window_no_retrain():
    history = [window(0), window(1), window(2, drift=True)]
    d = decide_retrain(history, history[-1].end, None, POLICY)
    assert not d.retrain and "1 of the last 3" in d.reason


def test_drift_over_n_windows_retrains_once_then_cooldown():
    history = [window(0, drift=True), window(1, drift=True), window(2, drift=True)]
    first = decide_retrain(history, history[-1].end, None, POLICY)
    assert first.retrain and "drift over 3 consecutive windows" in first.reason and len(first.evidence) == 3
    history.append(window(3, drift=True))
    again = decide_retrain(history, history[-1].end, last_retrain=history[2].end, policy=POLICY)
    assert not again.retrain and again.reason.startswith("cooldown")
    later = [window(30 + h, drift=True) for h in range(3)]
    assert decide_retrain(later, later[-1].end, history[2].end, POLICY).retrain


def test_decay_with_labels_retrains():
    history = [window(h, decay=True) for h in range(3)]
    d = decide_retrain(history, history[-1].end, None, POLICY)
    assert d.retrain and d.reason.startswith("decay")


def test_too_few_predictions_never_retrain():
    history = [window(h, drift=True, n=100) for h in range(5)]
    d = decide_retrain(history, history[-1].end, None, POLICY)
    assert not d.retrain and "only 100 predictions" in d.reason


def test_a_quiet_window_in_between_breaks_the_run():
    history = [window(0, drift=True), window(1, drift=True, n=10), window(2, drift=True)]
    assert not decide_retrain(history, history[-1].end, None, POLICY).retrain


def test_hostile_records_are_counted_pooled_and_never_reach_the_tests(reference):
    from mlcicd.monitoring import OTHER, window_frame

    good = synthetic.generate(600, 3).drop(columns="churned").to_dict(orient="records")
    hostile = [
        {**good[0], "contract": "x" * 1_000_000},  # a 1 MB category
        {**good[1], **{f"extra_{i}": i for i in range(3000)}},  # thousands of extra columns
        {**good[2], "region": "nor\x00th\x1b[31m"},  # control characters
        {**good[3], "monthly_charges": "12; DROP TABLE", "tenure_months": True, "customer_age": float("nan")},
        {**good[4], "payment_method": {"nested": [1, 2]}},
        *({**g, "contract": f"unseen-{i}"} for i, g in enumerate(good[5:405])),  # 400 distinct new categories
    ]
    records = [
        {"features": f, "prediction": 0, "request_id": "r", "row": i} for i, f in enumerate(hostile + good)
    ]
    frame, counts = window_frame(records, reference)
    assert list(frame.columns) == list(reference.columns)
    assert counts == {
        "rows_with_unknown_columns": 1,
        "non_numeric_values": 3,
        "invalid_values": 2,
        "unseen_category_values": 401,
    }
    assert set(frame["contract"].dropna()) <= set(synthetic.CONTRACTS) | {OTHER}
    assert set(frame["region"].dropna()) <= set(synthetic.REGIONS) | {OTHER}
    assert frame["monthly_charges"].dtype == float and frame["monthly_charges"].isna().sum() == 1
    result = detect_drift(reference, frame)  # bounded: the reference's categories and one pool
    assert "contract" in result.drifted_features  # 400 of 1005 rows in a category the model never saw
