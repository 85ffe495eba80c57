"""The scan in real runs of ml_retrain (dag.test(), the session's MLflow store, a model of its own):
a candidate with a planted weakness the champion does not have is rejected, naming the slice;
scan_major=warn lets the other rules decide; the report is written and logged to MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlcicd import registry, synthetic
from mlcicd.ports import free_port
from mlcicd.settings import PROJECT_ROOT
from tests.helpers import state_env

pytestmark = pytest.mark.e2e
MODEL = "scan_churn"
# The comparison with the champion may not reject here: the noisy batch's holdout is noisy for both.
LENIENT = {
    "model_name": MODEL,
    "max_degradation": 0.05,
    "min_roc_auc": 0.7,
    "min_accuracy": 0.7,
    "min_f1": 0.4,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A state folder and local port of its own (the MLflow store is the session's)."""
    state = tmp_path_factory.mktemp("scan") / "state"
    e = state_env(state, MLCICD_LOCAL_PORT=str(free_port("127.0.0.1")))
    yield e, state
    subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=e, capture_output=True, timeout=120)


def run_pipeline(env: dict, conf: dict) -> dict:
    args = [sys.executable, "-m", "mlcicd", "run", "--json"]
    for k, v in conf.items():
        args += ["--conf", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1])


def tracking_uri(env: dict, state: Path) -> str:
    """The store the runs used: the session's when it is exported, else the state folder's."""
    return (
        env.get("MLCICD_TRACKING_URI")
        or env.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{state}/mlflow/mlflow.db"
    )


def interaction_batch(path: Path, seed: int) -> Path:
    """In the west, churn follows long tenure (elsewhere, short): a linear model is good on average
    and useless there; gradient-boosted trees learn it."""
    df = synthetic.generate(12000, seed)
    west = df.region == "west"
    flip = np.random.default_rng(seed).random(int(west.sum())) < 0.05
    df.loc[west, "churned"] = ((df.loc[west, "tenure_months"] > 24).to_numpy() ^ flip).astype(int)
    df.to_csv(path, index=False)
    return path


def noisy_batch(path: Path) -> Path:
    """The usual data, with the labels of 40 % of the customers in the west flipped."""
    df = synthetic.generate(12000, 21)
    flip = (df.region == "west") & (np.random.default_rng(3).random(len(df)) < 0.4)
    df.loc[flip, "churned"] = 1 - df.loc[flip, "churned"]
    df.to_csv(path, index=False)
    return path


def test_a_new_major_weakness_rejects_the_candidate_and_a_shared_one_does_not(env, tmp_path):
    e, state = env
    data = {"dataset_name": "scan_churn_data"}
    first = run_pipeline(e, {**LENIENT, **data, "dataset_uri": str(interaction_batch(tmp_path / "a.csv", 1))})
    assert first["outcome"] == "promoted", first.get("gate")
    assert first["scan"]["major"] == [] and first["scan"]["report"].endswith(".html")
    v1 = first["champion_version"]
    tags = registry.client(tracking_uri(e, state)).get_model_version(MODEL, v1).tags
    assert tags["mlcicd.scan_report"].endswith(".html") and tags["mlcicd.scan_issues"].startswith("0 major")

    # A linear candidate: fine on average, useless in the west, where the champion is good.
    linear = run_pipeline(
        e,
        {
            **LENIENT,
            **data,
            "estimator": "logistic_regression",
            "dataset_uri": str(interaction_batch(tmp_path / "b.csv", 2)),
        },
    )
    assert linear["outcome"] == "rejected" and linear["champion_version"] == v1
    fails = [r for r in linear["gate"]["reasons"] if r.startswith("FAIL scan:")]
    assert (
        fails
        and fails[0].startswith("FAIL scan: region = west: accuracy")
        and f"champion v{v1} does not have" in fails[0]
    )
    assert any(m.startswith("region = west: accuracy") for m in linear["scan"]["new_major"])
    page = state / "data_docs" / "scans" / Path(linear["scan"]["report"]).name
    text = page.read_text()
    assert "region = west" in text and "data:image/png;base64," in text
    artifacts = registry.client(tracking_uri(e, state)).list_artifacts(
        linear["candidate"]["mlflow_run_id"], "scan"
    )
    assert {a.path for a in artifacts} == {"scan/report.html", "scan/scan.json"}

    # Noisy labels in the west of the holdout: every model is weak there, the champion too, so the
    # scan does not reject; the other rules decide.
    shared = run_pipeline(e, {**LENIENT, **data, "dataset_uri": str(noisy_batch(tmp_path / "c.csv"))})
    assert (
        any(m.startswith("region = west") for m in shared["scan"]["major"])
        and shared["scan"]["new_major"] == []
    )
    assert any(
        r.startswith(f"pass scan: no MAJOR issue that champion v{v1} does not have")
        for r in shared["gate"]["reasons"]
    )
    others_pass = all(not r.startswith("FAIL") for r in shared["gate"]["reasons"])
    assert shared["outcome"] == ("promoted" if others_pass else "rejected")
