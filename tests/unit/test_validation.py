"""The suite's two parts: a contract that refuses damaged batches, a profile that reports shift."""

from __future__ import annotations

import json

import pytest

from mlcicd import synthetic, validation
from mlcicd.choices import CORRUPTIONS


@pytest.fixture(scope="module")
def suite():
    return validation.infer_suite(synthetic.generate(3000, 1), "churn", "churned")


def run(df, suite, tmp_path, name="r"):
    return validation.validate(df, suite, run_name=name, docs_dir=tmp_path / "docs")


def severities(suite, column):
    return {(e["type"], e["severity"]) for e in suite["expectations"] if e["kwargs"].get("column") == column}


def test_the_inferred_suite_has_a_contract_and_a_profile(suite):
    table = {(e["type"], e["severity"]) for e in suite["expectations"] if "column" not in e["kwargs"]}
    assert table == {
        ("expect_table_columns_to_match_set", validation.CONTRACT),
        ("expect_compound_columns_to_be_unique", validation.CONTRACT),
        ("expect_table_row_count_to_be_between", validation.PROFILE),
    }
    assert severities(suite, "monthly_charges") == {
        ("expect_column_values_to_not_be_null", validation.CONTRACT),
        ("expect_column_values_to_be_in_type_list", validation.CONTRACT),
        ("expect_column_values_to_be_between", validation.CONTRACT),
        ("expect_column_values_to_not_be_null", validation.PROFILE),
        ("expect_column_values_to_be_between", validation.PROFILE),
        ("expect_column_mean_to_be_between", validation.PROFILE),
    }
    assert ("expect_column_kl_divergence_to_be_less_than", validation.PROFILE) in severities(
        suite, "contract"
    )
    contract_set = next(
        e
        for e in suite["expectations"]
        if e["kwargs"].get("column") == "contract" and e["type"] == "expect_column_values_to_be_in_set"
    )
    assert contract_set["kwargs"]["value_set"] == list(synthetic.CONTRACTS)
    assert contract_set["kwargs"]["mostly"] == 1 - validation.MAX_UNSEEN_CATEGORIES
    # GX keeps one expectation per (type, column) in a suite: within each part, none may repeat.
    for part in (validation.CONTRACT, validation.PROFILE):
        domains = [validation.domain(e) for e in suite["expectations"] if e["severity"] == part]
        assert len(set(domains)) == len(domains)
    assert validation.is_current(json.loads(json.dumps(suite)))


def test_the_plausible_range_is_one_reference_range_beyond_it_and_never_negative_when_the_reference_was_not():
    df = synthetic.generate(3000, 1)
    s = validation.infer_suite(df, "churn", "churned")
    (plausible,) = [
        e["kwargs"]
        for e in s["expectations"]
        if e["kwargs"].get("column") == "customer_age"
        and e["type"] == "expect_column_values_to_be_between"
        and e["severity"] == validation.CONTRACT
    ]
    lo, hi = df["customer_age"].quantile(0.002), df["customer_age"].quantile(0.998)
    assert plausible["min_value"] == 0.0 and plausible["max_value"] == pytest.approx(hi + (hi - lo), rel=1e-5)
    assert plausible["mostly"] == 1 - validation.MAX_IMPLAUSIBLE


def test_a_new_batch_of_the_same_source_passes_without_shift_and_gets_a_report(suite, tmp_path):
    checked = run(synthetic.generate(3000, 2), suite, tmp_path)
    assert checked.success and checked.failures == [] and checked.shift == []
    assert checked.evaluated == len(suite["expectations"])
    assert checked.report_path.endswith(".html") and "churn" in open(checked.report_path).read()


@pytest.mark.parametrize("drift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("seed", [2, 3])
def test_a_drifted_batch_passes_the_contract_and_its_shift_is_reported(suite, tmp_path, drift, seed):
    checked = run(synthetic.generate(3000, seed, drift=drift), suite, tmp_path, f"d{drift}-{seed}")
    assert checked.success, checked.failures
    shifted = " ".join(checked.shift)
    assert "column 'monthly_charges': expect_column_mean_to_be_between failed" in shifted
    assert "column 'support_calls': expect_column_mean_to_be_between failed" in shifted
    if drift >= 3:
        assert "column 'contract': expect_column_kl_divergence_to_be_less_than failed" in shifted


@pytest.mark.parametrize(
    ("corruption", "failing"),
    [
        ("missing_column", "expect_table_columns_to_match_set"),
        ("wrong_dtype", "column 'monthly_charges': expect_column_values_to_be_in_type_list"),
        ("nulls", "column 'monthly_charges': expect_column_values_to_not_be_null"),
        ("out_of_range", "column 'customer_age': expect_column_values_to_be_between"),
        ("unseen_category", "column 'contract': expect_column_values_to_be_in_set"),
        ("duplicates", "expect_compound_columns_to_be_unique"),
    ],
)
@pytest.mark.parametrize("drift", [0.0, 3.0])
def test_each_corruption_breaks_the_contract_drifted_or_not(suite, tmp_path, corruption, failing, drift):
    assert set(CORRUPTIONS) - {"none"} >= {corruption}
    checked = run(
        synthetic.generate(3000, 2, drift=drift, corruption=corruption), suite, tmp_path, corruption
    )
    assert not checked.success
    assert any(failing in f for f in checked.failures), checked.failures
    assert checked.report_path is not None


def test_the_contract_judged_against_a_drifted_reference_still_refuses_every_corruption(tmp_path):
    """The suite follows the champion: after a drifted batch became the reference, damage is still damage."""
    drifted = validation.infer_suite(synthetic.generate(3000, 3, drift=3), "churn", "churned")
    assert run(synthetic.generate(3000, 4, drift=3), drifted, tmp_path, "ok").shift == []
    for corruption in set(CORRUPTIONS) - {"none"}:
        bad = synthetic.generate(3000, 4, drift=3, corruption=corruption)
        assert not run(bad, drifted, tmp_path, corruption).success, corruption


def test_an_order_of_magnitude_and_a_sentinel_are_implausible(suite, tmp_path):
    cents = synthetic.generate(3000, 2)
    cents["monthly_charges"] = cents["monthly_charges"] * 100
    assert (
        "column 'monthly_charges': expect_column_values_to_be_between"
        in run(cents, suite, tmp_path).failures[0]
    )
    sentinel = synthetic.generate(3000, 2)
    sentinel.loc[:9, "tenure_months"] = -999
    failures = run(sentinel, suite, tmp_path, "s").failures
    assert any("column 'tenure_months': expect_column_values_to_be_between" in f for f in failures), failures


def test_a_few_unseen_values_within_the_contract_are_reported_as_shift(suite, tmp_path):
    df = synthetic.generate(3000, 2)
    df.loc[:9, "contract"] = "weekly"  # 0.3 %: under the 1 % the contract tolerates
    checked = run(df, suite, tmp_path)
    assert checked.success
    (shift,) = [s for s in checked.shift if "column 'contract': expect_column_values_to_be_in_set held" in s]
    assert "within its bound" in shift and "the values are in the Data Docs report" in shift
    assert "weekly" not in shift and "observed None" not in shift  # cell values stay out of logs and XCom
    assert "month-to-month" not in shift and "value_set=[3 values]" in shift  # nor the contract's own


def test_missing_column_failure_names_the_column(suite, tmp_path):
    checked = run(synthetic.generate(3000, 2, corruption="missing_column"), suite, tmp_path)
    assert any("missing columns ['support_calls']" in f for f in checked.failures)


def test_a_declared_suite_replaces_the_contract_and_keeps_the_profile(suite, tmp_path):
    declared = {
        "name": "churn",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "customer_age", "min_value": 18, "max_value": 80},
            },
            {
                "type": "expect_column_values_to_be_between",
                "severity": "warning",
                "kwargs": {"column": "monthly_charges", "min_value": 0, "max_value": 100},
            },
        ],
    }
    composed = validation.compose(declared, suite)
    assert composed["expectations"][:2] == declared["expectations"]
    profile = composed["expectations"][2:]
    assert profile and all(e["severity"] == validation.PROFILE for e in profile)
    # The declared warning on monthly_charges' range replaces the profile's own (one per type and column).
    assert ("expect_column_values_to_be_between", "monthly_charges") not in {
        validation.domain(e) for e in profile
    }
    assert ("expect_column_values_to_be_between", "tenure_months") in {validation.domain(e) for e in profile}
    checked = run(synthetic.generate(3000, 2, drift=3), composed, tmp_path)
    assert not checked.success  # ages up to 90 break the declared (hard) range
    assert [f for f in checked.failures if "customer_age" in f] == checked.failures != []
    assert any(
        "column 'monthly_charges': expect_column_values_to_be_between failed (mostly" not in s
        and "monthly_charges" in s
        and "max_value=100" in s
        for s in checked.shift
    ), checked.shift
    assert any("column 'support_calls': expect_column_mean_to_be_between failed" in s for s in checked.shift)
    assert checked.profile_report_path and checked.profile_report_path != checked.report_path


def test_declared_suite_wins_over_inferred(tmp_path):
    declared, inferred = tmp_path / "declared", tmp_path / "inferred"
    assert validation.find_suite("churn", declared, inferred) is None
    validation.save_suite({"name": "churn", "expectations": []}, inferred / "churn.json")
    assert validation.find_suite("churn", declared, inferred).origin == "inferred"
    validation.save_suite({"name": "churn", "expectations": []}, declared / "churn.json")
    assert validation.find_suite("churn", declared, inferred).origin == "declared"


def test_a_suite_from_before_the_split_is_not_current():
    assert not validation.is_current(
        {"name": "churn", "expectations": [], "meta": {"mlcicd": {"target": "y"}}}
    )


def test_the_next_reference_never_loosens_the_contract_through_what_it_tolerated(tmp_path):
    """A batch passes with a few sentinels, 4 % nulls and a rare unknown category; once it trains
    the champion, none of that becomes normal for the batches after it. (The reference has 1 % nulls
    in the column: a column never missing in the reference may gain none, tested in test_suite_trust.)"""
    reference = synthetic.generate(3000, 1)
    reference.loc[:29, "monthly_charges"] = float("nan")
    suite = validation.infer_suite(reference, "churn", "churned")
    df = synthetic.generate(3000, 2)
    df.loc[:2, "tenure_months"] = -999  # 0.1 %: within the contract's tolerance
    df.loc[:119, "monthly_charges"] = float("nan")  # 4 %: within the reference's 1 % plus the 5-point slack
    df.loc[200:220, "contract"] = "weekly"  # 0.7 %: under the 1 % of unseen values tolerated
    assert run(df, suite, tmp_path).success
    after = validation.infer_suite(df, "churn", "churned", previous=suite)
    kwargs = validation.contract_kwargs(after)
    assert kwargs[("expect_column_values_to_be_between", "tenure_months")]["min_value"] == 0.0
    was = validation.contract_kwargs(suite)[("expect_column_values_to_not_be_null", "monthly_charges")][
        "mostly"
    ]
    assert kwargs[("expect_column_values_to_not_be_null", "monthly_charges")]["mostly"] == was
    assert "weekly" not in kwargs[("expect_column_values_to_be_in_set", "contract")]["value_set"]
    # Without the anchor, each of those would have been let in.
    loose = validation.contract_kwargs(validation.infer_suite(df, "churn", "churned"))
    assert "weekly" in loose[("expect_column_values_to_be_in_set", "contract")]["value_set"]
    assert loose[("expect_column_values_to_not_be_null", "monthly_charges")]["mostly"] < was


def test_above_the_sample_bound_the_contract_still_sees_every_row_and_the_row_count_is_the_batchs(
    suite, tmp_path, monkeypatch
):
    monkeypatch.setattr(validation, "PROFILE_SAMPLE_ROWS", 1000)
    df = synthetic.generate(12_000, 2)  # within the profile's row count (300 - 30,000)
    sampled = set(df.sample(n=1000, random_state=0).index)
    outside = [i for i in df.index if i not in sampled][:10]
    df.loc[outside, "customer_age"] = (
        190  # implausible, 0.08 %: within the contract's 0.1 %, only in unsampled rows
    )
    checked = run(df, suite, tmp_path)
    assert checked.success
    assert any("customer_age" in s and "held, within its bound" in s for s in checked.shift), checked.shift
    tight = {
        **suite,
        "expectations": [
            {**e, "kwargs": {**e["kwargs"], "max_value": 5000}}
            if e["type"] == "expect_table_row_count_to_be_between"
            else e
            for e in suite["expectations"]
        ],
    }
    shift = run(df, tight, tmp_path, "tight").shift
    assert any("expect_table_row_count_to_be_between failed" in s and "observed 12000" in s for s in shift), (
        shift
    )
