from __future__ import annotations

import json

import pytest

from mlcicd import synthetic, validation


@pytest.fixture(scope="module")
def suite():
    return validation.infer_suite(synthetic.generate(3000, 1), "churn", "churned")


def run(df, suite, tmp_path, name="r"):
    return validation.validate(df, suite, run_name=name, docs_dir=tmp_path / "docs")


def test_inferred_suite_covers_what_the_issue_names(suite):
    types = [e["type"] for e in suite["expectations"]]
    for expected in (
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_of_type",
    ):
        assert expected in types
    contract = [e for e in suite["expectations"] if e["kwargs"].get("column") == "contract"]
    assert {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "contract", "value_set": list(synthetic.CONTRACTS)},
    } in contract
    json.dumps(suite)  # the suite is saved as JSON


def test_a_new_batch_of_the_same_source_passes_and_gets_a_report(suite, tmp_path):
    ok, evaluated, failures, report = run(synthetic.generate(3000, 2), suite, tmp_path)
    assert ok and failures == [] and evaluated == len(suite["expectations"])
    assert report and report.endswith(".html") and "churn" in open(report).read()


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
def test_each_corruption_fails_the_expectation_that_names_it(suite, tmp_path, corruption, failing):
    ok, _, failures, report = run(
        synthetic.generate(3000, 2, corruption=corruption), suite, tmp_path, corruption
    )
    assert not ok
    assert any(failing in f for f in failures), failures
    assert report is not None


def test_missing_column_failure_names_the_column(suite, tmp_path):
    _, _, failures, _ = run(synthetic.generate(3000, 2, corruption="missing_column"), suite, tmp_path)
    assert any("missing columns ['support_calls']" in f for f in failures)


def test_declared_suite_wins_over_inferred(tmp_path):
    declared, inferred = tmp_path / "declared", tmp_path / "inferred"
    assert validation.find_suite("churn", declared, inferred) is None
    validation.save_suite({"name": "churn", "expectations": []}, inferred / "churn.json")
    assert validation.find_suite("churn", declared, inferred).origin == "inferred"
    validation.save_suite({"name": "churn", "expectations": []}, declared / "churn.json")
    assert validation.find_suite("churn", declared, inferred).origin == "declared"
