"""What reaches Great Expectations is data: the suite's strict schema, and the contract's hold on
never-missing columns (issue 28's critical finding and its damaged batch)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlcicd import data, synthetic, validation
from mlcicd.errors import UntrustedArtifact
from mlcicd.suite_schema import check_suite


@pytest.fixture(scope="module")
def suite():
    return validation.infer_suite(synthetic.generate(2000, 1), "churn", "churned")


def planted(suite, tmp_path, parser="pandas"):
    """The reference suite with a row condition that creates a file when pandas evaluates it."""
    marker = tmp_path / "pwned"
    evil = copy.deepcopy(suite)
    expectation = next(e for e in evil["expectations"] if e["type"] == "expect_column_values_to_not_be_null")
    expectation["kwargs"]["row_condition"] = (
        f'@pd.core.frame.com.builtins.__import__("os").system("touch {marker}") == 0'
    )
    expectation["kwargs"]["condition_parser"] = parser
    return evil, marker


def test_a_suite_with_a_pandas_condition_never_reaches_gx(suite, tmp_path):
    evil, marker = planted(suite, tmp_path)
    with pytest.raises(UntrustedArtifact, match="the kwarg 'row_condition' is not allowed"):
        validation.validate(synthetic.generate(300, 2), evil, run_name="r", docs_dir=tmp_path / "docs")
    assert not marker.exists()


def test_the_inferred_suite_passes_its_own_schema(suite):
    assert check_suite(suite, origin="inferred") is suite


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["expectations"].append(
                {
                    "type": "expect_column_values_to_match_regex",
                    "kwargs": {"column": "plan", "regex": "(a+)+$"},
                }
            ),
            "'expect_column_values_to_match_regex' is not allowed (allowed only in a suite declared",
        ),
        (
            lambda s: s["expectations"][0]["kwargs"].update(
                result_format={"partial_unexpected_count": 10**9}
            ),
            "the kwarg 'result_format' is not allowed",
        ),
        (
            lambda s: s["expectations"][0]["kwargs"].update(column_set="age"),
            "'column_set' has a value of the wrong kind",
        ),
        (
            lambda s: s["expectations"][3]["kwargs"].update(mostly=1.5),
            "'mostly' has a value of the wrong kind",
        ),
        (lambda s: s["expectations"][3].update(severity="ignore"), "severity must be one of"),
        (lambda s: s.update(evaluation_parameters={}), "unknown key(s) 'evaluation_parameters'"),
        (lambda s: s["expectations"].append("expect_anything"), "an expectation is an object"),
    ],
)
def test_anything_outside_the_schema_is_refused_by_its_place(suite, change, message):
    bad = copy.deepcopy(suite)
    change(bad)
    with pytest.raises(UntrustedArtifact) as refused:
        check_suite(bad, origin="runs:/abc/validation/reference_suite.json")
    assert message in str(refused.value) and "runs:/abc/validation/reference_suite.json" in str(refused.value)


def test_a_declared_suite_may_hold_conditions_and_more_types(suite, tmp_path):
    declared = {
        "name": "churn",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": "customer_age",
                    "min_value": 18,
                    "max_value": 99,
                    "row_condition": 'col("contract")=="two-year"',
                    "condition_parser": "great_expectations",
                },
            },
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "contract", "regex": "^[a-z-]+$"},
            },
        ],
    }
    assert check_suite(declared, origin="include/suites/churn.json", declared=True) is declared
    checked = validation.validate(
        synthetic.generate(300, 2), declared, run_name="d", docs_dir=tmp_path, declared=True
    )
    assert checked.success, checked.failures


def test_a_column_never_missing_in_the_reference_may_gain_no_missing_value(suite, tmp_path):
    df = synthetic.generate(1000, 3)
    df.loc[df.sample(10, random_state=0).index, "monthly_charges"] = float("nan")  # 1 %
    checked = validation.validate(df, suite, run_name="n", docs_dir=tmp_path)
    assert any("monthly_charges" in f and "not_be_null" in f for f in checked.failures), checked.failures


def test_a_column_with_missing_values_keeps_its_tolerance(tmp_path):
    ref = synthetic.generate(2000, 1)
    ref.loc[ref.sample(100, random_state=0).index, "monthly_charges"] = float("nan")  # 5 %
    suite = validation.infer_suite(ref, "churn", "churned")
    df = synthetic.generate(1000, 3)
    df.loc[df.sample(70, random_state=1).index, "monthly_charges"] = float("nan")  # 7 %: within 2 x 5 %
    checked = validation.validate(df, suite, run_name="t", docs_dir=tmp_path)
    assert checked.success, checked.failures


@pytest.fixture(scope="module")
def cancer():
    frame = load_breast_cancer(as_frame=True).frame
    return frame.rename(columns=lambda c: c.replace(" ", "_"))


def test_text_read_as_missing_in_a_never_missing_numeric_column_is_a_type_violation(cancer, tmp_path):
    """Issue 28's damaged batch: a real 569-row dataset, 20 rows (3.5 %) of its first numeric column
    holding 'n/a' in the CSV. Before, pandas read them as missing, the contract allowed 5 % of them,
    and the batch was promoted."""
    suite = validation.infer_suite(cancer, "cancer", "target")
    damaged = cancer.astype({"mean_radius": object})
    damaged.loc[damaged.sample(20, random_state=0).index, "mean_radius"] = "n/a"
    path = tmp_path / "cancer.csv"
    damaged.to_csv(path, index=False)
    df = data.read_batch(str(path), roots=(str(tmp_path),))
    assert pd.api.types.is_float_dtype(df["mean_radius"]) and df["mean_radius"].isna().sum() == 20
    ref = data.store_batch(df, tmp_path / "run", source_uri=str(path), dataset_name="cancer", target="target")
    assert ref.text_as_missing == {"mean_radius": {"count": 20, "markers": ["n/a"], "other_text": 0}}
    failures, shift = validation.text_in_numbers(ref.text_as_missing, suite, ref.rows)
    assert len(failures) == 1 and not shift
    assert "column 'mean_radius': type violation, 20 value(s) (3.51%) are text" in failures[0]
    assert "'n/a'" in failures[0] and "include/suites/" in failures[0]
    checked = validation.validate(df, suite, run_name="c", docs_dir=tmp_path / "docs")
    assert any("mean_radius" in f and "not_be_null" in f for f in checked.failures), checked.failures


def test_text_in_a_column_that_had_missing_values_is_reported_as_shift(cancer, tmp_path):
    ref = cancer.copy()
    ref.loc[ref.sample(30, random_state=2).index, "mean_texture"] = float("nan")
    suite = validation.infer_suite(ref, "cancer", "target")
    failures, shift = validation.text_in_numbers(
        {"mean_texture": {"count": 5, "markers": ["null"], "other_text": 2}}, suite, 569
    )
    assert not failures and shift == [
        "column 'mean_texture': type violation, 5 value(s) (0.879%) are text in a column of numbers "
        "('null', 2 other text value(s)) and were read as missing"
    ]


def test_markers_in_a_text_column_are_missing_values_as_pandas_reads_them(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("plan,age\nbasic,30\nNA,31\nn/a,\npro,33\n")
    df = data.read_batch(str(path), roots=(str(tmp_path),))
    assert df["plan"].isna().tolist() == [False, True, True, False]
    assert df["age"].isna().tolist() == [False, False, True, False]
    assert df.attrs[data.TEXT_AS_MISSING] == {}
