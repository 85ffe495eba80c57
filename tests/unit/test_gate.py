from __future__ import annotations

import math

import pytest

from mlcicd.gate import Comparison, Policy, decide

POLICY = Policy(thresholds={"roc_auc": 0.8, "accuracy": 0.75}, primary_metric="roc_auc", max_degradation=0.01)
GOOD = {"roc_auc": 0.9, "accuracy": 0.85}


def comparison(diff: float, low: float, high: float) -> Comparison:
    return Comparison("roc_auc", "3", 0.9 + diff, 0.9, diff, low, high, 0.95, 1000)


def test_no_champion_thresholds_hold_promotes():
    d = decide(GOOD, None, POLICY)
    assert d.promote and d.verdict == "promoted"
    assert any("no champion" in r for r in d.reasons)


def test_threshold_below_minimum_rejects_and_names_metric():
    d = decide({"roc_auc": 0.79, "accuracy": 0.9}, None, POLICY)
    assert not d.promote
    assert [r for r in d.reasons if r.startswith("FAIL")] == ["FAIL roc_auc 0.7900 is below the minimum 0.8"]


def test_threshold_exactly_at_minimum_passes():
    assert decide({"roc_auc": 0.8, "accuracy": 0.75}, None, POLICY).promote


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_missing_or_non_finite_metric_rejects(value):
    metrics = {"accuracy": 0.9} if value is None else {"roc_auc": value, "accuracy": 0.9}
    d = decide(metrics, None, POLICY)
    assert not d.promote
    assert any("roc_auc was not computed" in r for r in d.reasons)


def test_not_worse_than_champion_within_margin_promotes():
    d = decide(GOOD, comparison(-0.002, -0.009, 0.005), POLICY)
    assert d.promote
    assert any("not worse than champion v3" in r for r in d.reasons)


def test_point_estimate_better_but_interval_too_wide_rejects():
    # A point comparison would promote (+0.004), but the data cannot rule out a 0.03 drop.
    d = decide(GOOD, comparison(0.004, -0.03, 0.04), POLICY)
    assert not d.promote
    assert any("may be worse than champion v3" in r for r in d.reasons)


def test_point_estimate_worse_but_within_margin_promotes():
    # A point comparison would reject (-0.003); the interval shows it is within the tolerated margin.
    assert decide(GOOD, comparison(-0.003, -0.0099, 0.004), POLICY).promote


def test_clearly_worse_rejects_even_when_thresholds_hold():
    d = decide(GOOD, comparison(-0.05, -0.07, -0.03), POLICY)
    assert not d.promote


def test_undefined_interval_rejects():
    assert not decide(GOOD, comparison(0.0, math.nan, math.nan), POLICY).promote


def test_decision_record_is_json_ready():
    import json

    d = decide(GOOD, comparison(0.01, 0.0, 0.02), POLICY).to_dict()
    again = json.loads(json.dumps(d))
    assert again["decision"] == "promoted"
    assert again["policy"]["thresholds"] == {"roc_auc": 0.8, "accuracy": 0.75}
    assert again["comparison"]["champion_version"] == "3"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"confidence": 1.0}, "confidence"), ({"max_degradation": -0.1}, "max_degradation")],
)
def test_policy_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Policy(thresholds={}, **kwargs)


def test_params_can_tighten_the_installation_floors_but_never_loosen_them(monkeypatch):
    from mlcicd import settings
    from mlcicd.choices import RETRAIN_DEFAULTS
    from mlcicd.conf.run import policy

    monkeypatch.setenv("MLCICD_GATE_MIN_ROC_AUC", "0.85")
    monkeypatch.setenv("MLCICD_GATE_MAX_DEGRADATION", "0.02")
    params = {
        **RETRAIN_DEFAULTS,
        "min_roc_auc": 0.5,
        "min_accuracy": 0.9,
        "max_degradation": 0.3,
        "confidence": 0.6,
    }
    p = policy(params, settings.load())
    assert p.thresholds["roc_auc"] == 0.85  # loosened: the floor applies
    assert p.thresholds["accuracy"] == 0.9  # tightened: the param applies
    assert p.max_degradation == 0.02 and p.confidence == settings.GATE_FLOORS["confidence"]
    d = decide({"roc_auc": 0.84, "accuracy": 0.95, "f1": 0.9}, None, p)
    assert not d.promote  # 0.84 would have passed the asked 0.5
    assert "note min_roc_auc 0.5 was asked; the installation's floor 0.85 applies" in d.reasons
    assert "note max_degradation 0.3 was asked; the installation's ceiling 0.02 applies" in d.reasons
    assert "FAIL roc_auc 0.8400 is below the minimum 0.85" in d.reasons
    # The decision record names both what was asked and the floors.
    assert d.to_dict()["policy"]["asked"]["min_roc_auc"] == 0.5
    assert d.to_dict()["policy"]["floors"]["min_roc_auc"] == 0.85


def test_the_bootstrap_resamples_are_lowered_to_the_installation_ceiling(monkeypatch):
    from mlcicd import settings
    from mlcicd.choices import RETRAIN_DEFAULTS
    from mlcicd.conf.run import resamples
    from mlcicd.errors import ConfigError

    params = {**RETRAIN_DEFAULTS, "bootstrap_resamples": 5000}
    assert resamples(params, settings.load()) == 5000  # under the default ceiling, 20,000
    monkeypatch.setenv("MLCICD_BOOTSTRAP_MAX_RESAMPLES", "800")
    assert resamples(params, settings.load()) == 800
    assert resamples({**params, "bootstrap_resamples": 300}, settings.load()) == 300
    monkeypatch.setenv("MLCICD_BOOTSTRAP_MAX_RESAMPLES", "10")
    with pytest.raises(ConfigError, match="MLCICD_BOOTSTRAP_MAX_RESAMPLES='10' is out of range"):
        settings.load()


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "x", "nan"])
def test_a_bad_floor_is_a_config_error_naming_its_variable(monkeypatch, raw):
    from mlcicd import settings
    from mlcicd.errors import ConfigError

    monkeypatch.setenv("MLCICD_GATE_MIN_F1", raw)
    with pytest.raises(ConfigError, match="MLCICD_GATE_MIN_F1"):
        settings.load()


def test_a_comparison_at_a_lower_confidence_than_the_policy_is_refused():
    weak = Comparison("roc_auc", "3", 0.9, 0.9, 0.0, -0.001, 0.001, confidence=0.5, resamples=1000)
    d = decide({"roc_auc": 0.9, "accuracy": 0.9}, weak, Policy(thresholds={}, confidence=0.9))
    assert not d.promote and "FAIL the comparison's interval is at 50%; the policy needs 90%" in d.reasons


# -- the scan's word -----------------------------------------------------------------------------

WEST = "region = west: accuracy 0.57 against 0.75 overall (767 rows, 24% worse)"


def better_than_champion():
    return comparison(0.01, 0.0, 0.02)


def test_a_new_major_scan_issue_rejects_and_names_the_slice_in_words():
    from mlcicd.gate import ScanFindings

    d = decide(GOOD, better_than_champion(), POLICY, ScanFindings([WEST], "3", report="http://r"))
    assert not d.promote
    assert f"FAIL scan: {WEST}: a MAJOR issue champion v3 does not have (report: http://r)" in d.reasons
    assert any(r.startswith("pass roc_auc not worse") for r in d.reasons)  # the other rules are still shown


def test_a_major_issue_the_champion_shares_is_left_to_the_other_rules():
    from mlcicd.gate import ScanFindings

    d = decide(GOOD, better_than_champion(), POLICY, ScanFindings([], "3", minor=2))
    assert d.promote and "pass scan: no MAJOR issue that champion v3 does not have (2 minor)" in d.reasons


def test_scan_major_warn_and_the_first_model_allowance_turn_failures_into_warnings():
    from mlcicd.gate import ScanFindings

    warned = decide(GOOD, better_than_champion(), POLICY, ScanFindings([WEST], "3", reject=False))
    assert warned.promote and any(
        r.startswith("warn scan:") and "scan_major=warn" in r for r in warned.reasons
    )
    first = decide(GOOD, None, POLICY, ScanFindings([WEST], None))
    assert not first.promote and any("no champion to compare with" in r for r in first.reasons)
    allowed = decide(GOOD, None, POLICY, ScanFindings([WEST], None, allow_without_champion=True))
    assert allowed.promote and any("scan_allow_major_without_champion=true" in r for r in allowed.reasons)
