"""The scan's detectors on real models: planted weaknesses are found, clean data raises no alarm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from mlcicd import scan, synthetic, training


def fitted(df: pd.DataFrame, estimator: str = "hist_gradient_boosting"):
    x, y = df.drop(columns="churned"), df.churned
    return training.build_pipeline(x, training.TrainParams(estimator=estimator)).fit(x, y)


def split(df: pd.DataFrame, train: int):
    return df.iloc[:train], df.iloc[train:].reset_index(drop=True)


def holdout_xy(df: pd.DataFrame):
    return df.drop(columns="churned"), df.churned.to_numpy()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_default_synthetic_data_raises_no_major_issue(seed):
    train, holdout = split(synthetic.generate(6000, seed), 4000)
    result = scan.scan(fitted(train), *holdout_xy(holdout))
    assert result.major == [], [i.message for i in result.major]
    assert result.slices and result.rows == 2000 and result.notes == []


def test_a_planted_weakness_is_found_and_named_in_words():
    df = synthetic.generate(12000, 5)
    noisy = (df.region == "west") | df.tenure_months.between(30, 40)
    flip = noisy & (np.random.default_rng(0).random(len(df)) < 0.4)
    df.loc[flip, "churned"] = 1 - df.loc[flip, "churned"]
    train, holdout = split(df, 6000)  # bands are learnt on half the holdout and tested on the other
    result = scan.scan(fitted(train), *holdout_xy(holdout))
    weak = [i for i in result.major if i.detector == "weak_slice"]
    assert any(i.slice == "region = west" and i.metric == "accuracy" for i in weak), [i.message for i in weak]
    bands = [i for i in weak if i.slice.startswith("tenure_months from")]
    assert bands, [i.message for i in weak]
    low, high = (float(v) for v in bands[0].slice.removeprefix("tenure_months from ").split(" to "))
    assert 25 <= low <= 35 and 33 <= high <= 45  # the band that was made noisy
    west = next(i for i in weak if i.slice == "region = west")
    assert west.message.startswith("region = west: accuracy 0.") and "overall" in west.message


def test_a_model_that_thresholds_a_feature_at_its_values_is_fragile():
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    df = synthetic.generate(3000, 6)
    labels = np.random.default_rng(1).integers(0, 2, len(df))  # memorised: a split between every two values
    model = Pipeline(
        [
            ("pick", ColumnTransformer([("m", "passthrough", ["monthly_charges"])])),
            ("tree", DecisionTreeClassifier(random_state=0)),
        ]
    ).fit(df, labels)
    result = scan.scan(model, df.drop(columns="churned").head(1500), labels[:1500])
    fragile = [i for i in result.issues if i.detector == "fragility"]
    assert [i.slice for i in fragile] == ["monthly_charges perturbed"] and fragile[0].severity == scan.MAJOR
    assert fragile[0].value > 0.10
    sound = scan.scan(fitted(df.iloc[:2000]), *holdout_xy(df.iloc[2000:].reset_index(drop=True)))
    assert not [i for i in sound.issues if i.detector == "fragility"]


class BatchDependent(BaseEstimator, ClassifierMixin):
    """Scores each row against the batch's own mean: a row's answer depends on its neighbours."""

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x):
        v = x["monthly_charges"].to_numpy(dtype=float)
        p = 1 / (1 + np.exp(-(v - v.mean()) / 10))
        return np.column_stack([1 - p, p])

    def predict(self, x):
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


def test_rows_that_influence_each_other_are_major_leakage():
    df = synthetic.generate(500, 7)
    result = scan.scan(BatchDependent().fit(None, None), *holdout_xy(df))
    assert [i.detector for i in result.major if i.detector in ("leakage", "determinism")] == ["leakage"]


def test_a_tiny_holdout_skips_the_loss_based_detectors_with_a_note():
    df = synthetic.generate(3000, 8)
    result = scan.scan(fitted(df.iloc[:2900]), *holdout_xy(df.iloc[2900:2960].reset_index(drop=True)))
    assert result.rows == 60 and result.slices == []
    assert any("fewer than 100" in n for n in result.notes)
    assert not [i for i in result.issues if i.detector in ("weak_slice", "overconfidence", "underconfidence")]


def test_a_large_holdout_is_sampled_and_says_so():
    df = synthetic.generate(9000, 9)
    result = scan.scan(
        fitted(df.iloc[:3000]),
        *holdout_xy(df.iloc[3000:].reset_index(drop=True)),
        scan.Thresholds(max_rows=2500),
    )
    assert result.sampled_from == 6000 and any("2,500 of 6,000" in n for n in result.notes)


def test_only_major_issues_the_champion_does_not_have_are_new():
    a = scan.Issue("weak_slice", scan.MAJOR, "region = west: accuracy 0.5", "region = west", "accuracy")
    b = scan.Issue("fragility", scan.MAJOR, "x", "monthly_charges perturbed", "flip_rate")
    c = scan.Issue("weak_slice", scan.MINOR, "minor", "region = east", "recall")
    candidate = scan.ScanResult(rows=100, issues=[a, b, c])
    champion = scan.ScanResult(
        rows=100, issues=[scan.Issue("weak_slice", scan.MINOR, "m", "region = west", "accuracy")]
    )
    assert [i["key"] for i in scan.new_major(candidate, champion)] == [b.key]
    assert [i["key"] for i in scan.new_major(candidate.to_dict(), None)] == [a.key, b.key]
