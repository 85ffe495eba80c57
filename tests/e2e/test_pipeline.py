"""Whole runs of ml_retrain through dag.test() on the session's Airflow home and MLflow store.

The tests run in file order and share one store: the first run makes the champion that the later
ones are judged against, so each later test can check the champion did (or did not) change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from mlcicd import registry
from mlcicd.cli.run import exit_code, run_pipeline
from mlcicd.errors import UsageError
from mlcicd.settings import PROJECT_ROOT, load
from tests.helpers import load_registered

pytestmark = pytest.mark.e2e
MODEL = "mlcicd_churn"


def load_model(uri: str):
    name, _, ref = uri.removeprefix("models:/").replace("@", "/").partition("/")
    return load_registered(name, ref, load().tracking_uri)


def champion_version() -> str | None:
    s = load()
    ref = registry.champion(registry.client(s.tracking_uri), MODEL)
    return ref.version if ref else None


def version_count() -> int:
    s = load()
    return len(registry.client(s.tracking_uri).search_model_versions(f"name = '{MODEL}'"))


def cli(*args: str) -> tuple[int, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "mlcicd", "run", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {out.stderr[-2000:]}"
    return out.returncode, json.loads(lines[-1])


def served_predictions(endpoint: str, rows: pd.DataFrame) -> list:
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    r = requests.post(f"{endpoint}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


@pytest.fixture(scope="module")
def first():
    return cli("--conf", "synthetic_seed=1")


@pytest.fixture(scope="module")
def sample():
    from mlcicd import synthetic

    return synthetic.generate(200, seed=99).drop(columns="churned")


def test_first_run_makes_v1_champion_and_it_answers(first, sample):
    code, s = first
    assert code == 0, (s.get("error"), s)  # the error first: the summary is long
    assert s["state"] == "success" and s["outcome"] == "promoted"
    assert s["validation"]["success"] and os.path.exists(s["validation"]["report_path"])
    assert s["validation"]["suite_origin"] == "first batch"
    assert s["candidate"]["model_version"] == "1" and s["champion_version"] == "1"
    assert s["gate"]["decision"] == "promoted" and s["gate"]["comparison"] is None
    assert s["deployment"]["state"] == "serving"
    endpoint = s["deployment"]["endpoint"]
    assert requests.get(f"{endpoint}/version", timeout=5).json()["version"] == "1"
    offline = load_model(f"models:/{MODEL}@champion").predict(sample).tolist()
    assert served_predictions(endpoint, sample) == offline


def test_first_run_recorded_decision_plots_and_tags(first):
    _, s = first
    c = registry.client(load().tracking_uri)
    run_id = s["candidate"]["mlflow_run_id"]
    artifacts = {a.path for a in c.list_artifacts(run_id, "plots")} | {
        a.path for a in c.list_artifacts(run_id, "gate")
    }
    assert artifacts == {"plots/confusion_matrix.png", "plots/roc_curve.png", "gate/decision.json"}
    mv = c.get_model_version(MODEL, "1")
    assert mv.tags["mlcicd.gate"] == "promoted"
    assert json.loads(mv.tags["mlcicd.gate_reasons"])[0].startswith("pass")
    assert c.get_run(run_id).data.metrics["holdout_roc_auc"] > 0.8


def test_second_good_run_is_judged_against_the_champion(first, sample):
    s = run_pipeline({"synthetic_seed": 2})
    assert s["state"] == "success"
    comparison = s["gate"]["comparison"]
    assert comparison["champion_version"] == "1" and comparison["metric"] == "roc_auc"
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert s["candidate"]["champion_metrics"]["roc_auc"] == pytest.approx(comparison["champion"])
    assert s["outcome"] == "promoted", s["gate"]["reasons"]
    assert s["champion_version"] == "2"
    # The batch was judged against the suite logged with v1 (the champion's training batch).
    assert s["validation"]["reference"] == "champion v1" and s["validation"]["success"]
    c = registry.client(load().tracking_uri)
    assert (
        c.get_model_version(MODEL, "2")
        .tags["mlcicd.validation_suite"]
        .endswith("/validation/reference_suite.json")
    )
    endpoint = s["deployment"]["endpoint"]
    assert requests.get(f"{endpoint}/version", timeout=5).json()["version"] == "2"
    offline = load_model(f"models:/{MODEL}/2").predict(sample).tolist()
    assert served_predictions(endpoint, sample) == offline


@pytest.mark.parametrize(
    "corruption", ["missing_column", "wrong_dtype", "nulls", "out_of_range", "unseen_category", "duplicates"]
)
def test_corrupted_batch_fails_at_validation_and_nothing_downstream_runs(first, corruption):
    before, versions = champion_version(), version_count()
    s = run_pipeline({"synthetic_seed": 3, "synthetic_corruption": corruption})
    assert s["state"] == "failed" and s["outcome"] == "data_rejected" and exit_code(s) == 3
    assert s["error"]["stage"] == "validate_data" and s["error"]["kind"] == "validation"
    assert s["validation"]["failures"] and os.path.exists(s["validation"]["report_path"])
    assert set(s["stages"]) == {"reconcile_serving", "ingest_data", "validate_data"}
    assert champion_version() == before and version_count() == versions


def test_weak_model_is_rejected_and_champion_kept(first):
    before, versions = champion_version(), version_count()
    s = run_pipeline({"synthetic_seed": 4, "estimator": "random_forest", "n_estimators": 1, "max_depth": 1})
    assert s["state"] == "success" and s["outcome"] == "rejected" and exit_code(s) == 0
    assert any(r.startswith("FAIL") for r in s["gate"]["reasons"])
    assert "record_rejection" in s["stages"] and "register_model" not in s["stages"]
    assert champion_version() == before and version_count() == versions


def test_failed_smoke_test_rolls_back(first, sample, monkeypatch):
    before = champion_version()
    monkeypatch.setenv("MLCICD_LOCAL_SERVER_MODULE", "tests.fixtures.broken_server")
    # A wide margin makes sure the gate promotes, so that the deploy step is what is tested.
    s = run_pipeline({"synthetic_seed": 5, "max_degradation": 0.1})
    assert s["gate"]["decision"] == "promoted"
    assert s["outcome"] == "rolled_back" and exit_code(s) == 4
    assert "smoke test" in s["error"]["message"] and f"v{before} keeps serving" in s["error"]["message"]
    assert champion_version() == before
    c = registry.client(load().tracking_uri)
    assert c.get_model_version(MODEL, s["candidate"]["model_version"]).tags["mlcicd.deploy"] == "rolled_back"
    endpoint = s["deployment"]["endpoint"]
    assert requests.get(f"{endpoint}/version", timeout=5).json()["version"] == before
    offline = load_model(f"models:/{MODEL}@champion").predict(sample).tolist()
    assert served_predictions(endpoint, sample) == offline


@pytest.mark.parametrize(
    ("make", "conf", "message"),
    [
        (None, {}, "no such file"),
        (lambda p: p.write_text(""), {}, "the file is empty"),
        (lambda p: p.write_text("a,b\n1,2\n3,4\n"), {}, "target column 'churned' is not in the batch"),
        (lambda p: p.write_text("a,churned\n1,1\n3,1\n"), {}, "single class"),
        (
            None,
            {"dataset_uri": "/etc/../etc/passwd.csv"},
            "add its folder, bucket or prefix to MLCICD_DATA_ROOTS",
        ),
    ],
    ids=["missing-file", "empty-file", "unknown-target", "one-class", "outside-the-data-roots"],
)
def test_bad_input_fails_before_training(first, tmp_path, make, conf, message):
    before = champion_version()
    path = tmp_path / "batch.csv"
    if make:
        make(path)
    s = run_pipeline({"dataset_uri": str(path), **conf})
    assert s["outcome"] == "data_rejected" and exit_code(s) == 3
    assert s["error"]["stage"] == "ingest_data" and message in s["error"]["message"]
    assert set(s["stages"]) == {"reconcile_serving", "ingest_data"}
    assert champion_version() == before


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"n_estimators": "many"}, "n_estimators"),
        ({"min_roc_auc": 1.5}, "min_roc_auc"),
        ({"estimator": "svm"}, "estimator"),
        ({"model_name": ".."}, "model_name"),
        ({"dataset_name": "."}, "dataset_name"),
        ({"model_name": ".hidden"}, "model_name"),
        ({"no_such_param": 1}, "unknown param(s) no_such_param"),
        ({"approval": True}, "approval=true needs a running Airflow"),
    ],
)
def test_bad_params_are_refused_before_anything_runs(conf, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_pipeline(conf)


def test_cli_bad_param_exit_code_and_message():
    code, s = cli("--conf", "test_size=0.9")
    assert code == 2 and s["outcome"] == "usage_error" and "test_size" in s["error"]["message"]


def test_a_champion_that_cannot_be_loaded_or_was_tampered_with_stops_the_run(first, sample, monkeypatch):
    """The gate fails closed: it never lets the thresholds alone promote past a broken champion, and
    a champion whose files changed after training is not loaded at all (no retries: they will not
    change back)."""
    from mlcicd import deploy
    from mlcicd.ports import free_port

    model = "broken_champion"
    monkeypatch.setenv("MLCICD_LOCAL_PORT", str(free_port("127.0.0.1")))  # its own stable endpoint
    s = run_pipeline({"model_name": model, "synthetic_seed": 11})
    assert s["outcome"] == "promoted", s.get("error")
    c = registry.client(load().tracking_uri)
    logged = c.get_logged_model(c.get_model_version(model, "1").source.removeprefix("models:/"))
    artifacts = Path(logged.artifact_location.removeprefix("file://"))
    original = (artifacts / "MLmodel").read_text()
    (artifacts / "MLmodel").write_text(original.replace("predict_fn: predict", "predict_fn: predict_proba"))
    try:
        s = run_pipeline({"model_name": model, "synthetic_seed": 12, "max_degradation": 0.5})
        assert s["outcome"] == "failed" and s["error"]["kind"] == "champion", s
        assert "champion v1 of broken_champion" in s["error"]["message"]
        assert "files changed after it was logged" in s["error"]["message"]
        assert "attempts" not in s["error"]["message"]
        (artifacts / "MLmodel").write_text(original)  # the files are back; now the store loses them
        artifacts.rename(artifacts.with_name("moved-away"))
        s = run_pipeline({"model_name": model, "synthetic_seed": 12, "max_degradation": 0.5})
        assert s["outcome"] == "failed" and exit_code(s) == 1
        assert s["error"]["stage"] == "evaluate_candidate" and s["error"]["kind"] == "champion"
        assert "champion v1 of broken_champion" in s["error"]["message"]
        assert "could not be loaded after 3 attempts" in s["error"]["message"]
        assert (
            "fails closed" in s["error"]["message"]
            and "delete_registered_model_alias" in s["error"]["message"]
        )
        assert "register_model" not in s["stages"] and s["champion_version"] == "1"
        assert [str(v.version) for v in c.search_model_versions(f"name='{model}'")] == ["1"]
        target = deploy.get_target("local", load(), model)
        assert target.current().version == "1"
        served = requests.post(
            f"{target.endpoint}/invocations",
            json={"dataframe_split": json.loads(sample.head(3).to_json(orient="split", index=False))},
            timeout=10,
        )
        assert served.status_code == 200 and len(served.json()["predictions"]) == 3
    finally:
        deploy.get_target("local", load(), model).stop()


def test_a_condition_planted_in_the_champions_suite_never_runs(first, tmp_path):
    """Issue 28's critical finding, end to end: whoever can write the champion's reference suite in
    the artifact store plants a pandas row condition; the next run stops at validate_data before GX
    sees it (exit 1), nothing ran, and the champion is unchanged."""
    c = registry.client(load().tracking_uri)
    champion = registry.champion(c, MODEL)
    artifacts = Path(c.get_run(champion.run_id).info.artifact_uri.removeprefix("file://"))
    path = artifacts / "validation" / "reference_suite.json"
    original = path.read_text()
    marker = tmp_path / "pwned"
    suite = json.loads(original)
    expectation = next(e for e in suite["expectations"] if e["type"] == "expect_column_values_to_not_be_null")
    expectation["kwargs"].update(
        row_condition=f'@pd.core.frame.com.builtins.__import__("os").system("touch {marker}") == 0',
        condition_parser="pandas",
    )
    path.write_text(json.dumps(suite))
    try:
        code, s = cli("--conf", "synthetic_seed=5")
    finally:
        path.write_text(original)
    assert code == 1 and s["outcome"] == "failed", (s.get("error"), s)
    assert s["error"]["stage"] == "validate_data" and s["error"]["kind"] == "untrusted"
    assert "validation/reference_suite.json" in s["error"]["message"]
    assert not marker.exists()
    assert s["champion_version"] == champion.version == champion_version()


def resign(*args: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mlcicd", "resign", MODEL, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
    )
    return out.returncode, out.stdout + out.stderr


def test_a_tampered_suite_stops_the_run_until_it_is_re_signed_deliberately(first):
    """Write access to the artifact store is not enough: a loosened (well-formed) suite fails its
    signature, the message names the artifact and the command; `resign` shows and, with --yes, signs;
    a suite outside its schema is never signed."""
    c = registry.client(load().tracking_uri)
    champion = registry.champion(c, MODEL)
    artifacts = Path(c.get_run(champion.run_id).info.artifact_uri.removeprefix("file://"))
    path = artifacts / "validation" / "reference_suite.json"
    original = path.read_text()
    suite = json.loads(original)
    for e in suite["expectations"]:
        if e["type"] == "expect_column_values_to_not_be_null":
            e["kwargs"]["mostly"] = 0.5  # lets half of every column go missing
    path.write_text(json.dumps(suite))
    try:
        code, s = cli("--conf", "synthetic_seed=6")
        assert code == 1 and s["error"]["kind"] == "untrusted", (s.get("error"), s)
        message = s["error"]["message"]
        assert "validation/reference_suite.json" in message and "changed after it was signed" in message
        assert f"python -m mlcicd resign {MODEL} {champion.version}" in message
        assert champion_version() == champion.version
        code, shown = resign(champion.version)
        assert code == 2 and "not signed: check it, then add --yes" in shown
        assert "warning: validation/reference_suite.json: changed since it was signed" in shown
        assert cli("--conf", "synthetic_seed=6")[0] == 1  # showing signed nothing
        code, shown = resign(champion.version, "--yes")
        assert code == 0 and "signed with this installation's key" in shown, shown
        code, s = cli("--conf", "synthetic_seed=6", "--conf", "min_roc_auc=0.99")
        assert s["outcome"] == "rejected", (s.get("error"), s)  # trusted again, judged, not promoted
        assert s["validation"]["suite_origin"] == f"champion v{champion.version}"
        suite["expectations"][0]["kwargs"]["row_condition"] = "x"
        path.write_text(json.dumps(suite))
        code, shown = resign(champion.version, "--yes")
        assert code == 1 and "the kwarg 'row_condition' is not allowed" in shown, shown
    finally:
        path.write_text(original)
        assert resign(champion.version, "--yes")[0] == 0


def test_an_alias_moved_to_a_version_registered_without_the_key_is_never_deployed(first):
    """Registry write access is not enough either: a version registered by hand from the champion's own
    files (digest tag and all, no signature) and made @champion stops the next run at its first task;
    what served keeps serving."""
    c = registry.client(load().tracking_uri)
    champion = registry.champion(c, MODEL)
    real = c.get_model_version(MODEL, champion.version)
    forged = c.create_model_version(
        MODEL,
        source=real.source,
        run_id=real.run_id,
        tags={"mlcicd.model_digest": real.tags["mlcicd.model_digest"]},
    )
    c.set_registered_model_alias(MODEL, registry.CHAMPION, forged.version)
    endpoint = f"http://127.0.0.1:{load().local_port}"
    try:
        code, s = cli("--conf", "synthetic_seed=7")
        assert code == 1 and s["error"]["stage"] == "reconcile_serving", (s.get("error"), s)
        assert s["error"]["kind"] == "untrusted" and "has no signature" in s["error"]["message"]
        assert requests.get(f"{endpoint}/version", timeout=5).json()["version"] == champion.version
    finally:
        c.set_registered_model_alias(MODEL, registry.CHAMPION, champion.version)
        c.delete_model_version(MODEL, forged.version)
