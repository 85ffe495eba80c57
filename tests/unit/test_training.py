from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcicd import data, registry, training
from mlcicd.errors import ConfigError
from mlcicd.serving import modelfile


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One candidate logged to a throwaway MLflow store (SQLite + local artifacts)."""
    from mlcicd import synthetic

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    c = registry.client(uri)
    exp = registry.ensure_experiment(c, "unit", root / "artifacts")
    df = synthetic.generate(800, 5)
    ref = data.store_batch(
        df, root / "run", source_uri="synthetic:seed=5", dataset_name="churn", target="churned"
    )
    params = training.TrainParams(estimator="logistic_regression")
    result = training.train_and_log(
        ref,
        df,
        params,
        run_dir=root / "run",
        tracking_uri=uri,
        experiment_id=exp,
        run_name="unit",
        tags={"k": "v"},
    )
    return c, ref, result, uri


@pytest.mark.parametrize("estimator", training.ESTIMATORS)
def test_each_estimator_family_fits_mixed_types(churn_df, estimator):
    train, holdout = training.split(churn_df, "churned", 0.25, 0)
    x = train.drop(columns="churned")
    pipe = training.build_pipeline(x, training.TrainParams(estimator=estimator, n_estimators=20)).fit(
        x, train.churned
    )
    assert set(pipe.predict(holdout.drop(columns="churned"))) <= {0, 1}
    # The evaluation's single pass: its labels are what predict() gives.
    from mlcicd.evaluation import score

    x_holdout = holdout.drop(columns="churned")
    assert (score(pipe, x_holdout).labels == pipe.predict(x_holdout)).all()


def test_split_is_stratified_and_deterministic(churn_df):
    a_train, a_hold = training.split(churn_df, "churned", 0.25, 1)
    b_train, b_hold = training.split(churn_df, "churned", 0.25, 1)
    assert a_hold.equals(b_hold) and len(a_hold) == 300
    assert abs(a_hold.churned.mean() - a_train.churned.mean()) < 0.02


def test_bad_train_params_are_named():
    with pytest.raises(ConfigError, match="unknown estimator 'svm'"):
        training.TrainParams(estimator="svm")
    with pytest.raises(ConfigError, match="test_size"):
        training.TrainParams(test_size=0.9)


def test_run_records_params_metrics_dataset_code_version(logged):
    c, ref, result, _ = logged
    run = c.get_run(result.mlflow_run_id)
    assert run.data.params["estimator"] == "logistic_regression"
    assert run.data.params["holdout_rows"] == "200"
    assert 0.5 < run.data.metrics["train_roc_auc"] <= 1
    assert run.data.tags["mlcicd.dataset_digest"] == ref.digest
    assert run.data.tags["k"] == "v"
    assert run.data.tags["mlflow.source.git.commit"] == training.code_version()["commit"]
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == ref.digest and inp.dataset.name == "churn"
    schema = json.loads(inp.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == [str(c) for c in ref.columns]  # the batch's, as MLflow infers it


def test_model_has_signature_example_and_pinned_requirements(logged, tmp_path):
    import mlflow

    _, _, result, uri = logged
    info = mlflow.models.get_model_info(result.model_uri)
    assert [s["name"] for s in info.signature.inputs.to_dict()] == [
        "customer_age",
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "support_calls",
        "contract",
        "payment_method",
        "region",
    ]
    local = mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path))
    reqs = open(f"{local}/requirements.txt").read().split()
    assert any(r.startswith("scikit-learn==") for r in reqs) and all("==" in r for r in reqs)
    assert json.load(open(f"{local}/input_example.json"))
    assert result.model_digest == modelfile.digest(Path(local))  # what every later load checks
    model = registry.load_verified(result.model_uri, result.model_digest, uri, "the candidate")
    assert hasattr(model, "predict_proba")


def test_a_train_split_above_the_cap_is_fitted_on_a_stratified_sample_and_says_so(logged, tmp_path):
    from mlcicd import synthetic

    c, _, _, uri = logged
    df = synthetic.generate(800, 5)
    ref = data.store_batch(
        df, tmp_path, source_uri="synthetic:seed=5", dataset_name="churn", target="churned"
    )
    exp = registry.ensure_experiment(c, "unit", tmp_path / "artifacts")
    result = training.train_and_log(
        ref,
        df,
        training.TrainParams(estimator="logistic_regression"),
        run_dir=tmp_path,
        tracking_uri=uri,
        experiment_id=exp,
        run_name="capped",
        tags={},
        max_rows=300,
    )
    assert (result.train_rows, result.train_rows_available, result.holdout_rows) == (300, 600, 200)
    params = c.get_run(result.mlflow_run_id).data.params
    assert (params["train_rows"], params["train_rows_available"], params["holdout_rows"]) == (
        "300",
        "600",
        "200",
    )
    train, _ = training.split(df, "churned", 0.25, 42)
    sample = training.sample_rows(train, "churned", 300, 42)
    assert len(sample) == 300 and set(sample.index) <= set(train.index)
    assert abs(sample["churned"].mean() - train["churned"].mean()) < 0.005  # stratified


def test_the_dataset_schema_from_a_sample_is_mlflows_on_the_whole_batch():
    import numpy as np
    from mlflow.models import infer_signature

    from mlcicd import synthetic

    df = synthetic.generate(30_000, 3)
    df.loc[25_000, "monthly_charges"] = np.nan  # a null past the sample's first rows
    df["contract"] = df["contract"].astype(object)
    df.loc[29_999, "contract"] = None
    assert training.dataset_schema(df) == infer_signature(df).inputs
    assert training.dataset_schema(df.dropna()) == infer_signature(df.dropna()).inputs
