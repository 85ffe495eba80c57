"""Candidate search in real runs of ml_retrain (`mlcicd run`, a state folder and MLflow store of its own):
one mapped task instance and one MLflow child run per candidate, the best one chosen without
touching the gate's holdout, a failing candidate that leaves the run successful, bad spaces refused."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcicd import record, registry
from mlcicd.ports import free_port
from mlcicd.settings import PROJECT_ROOT
from tests.helpers import state_env

pytestmark = pytest.mark.e2e
MODEL = "search_churn"
# One quick family and one that cannot finish within the time-out on any machine (5000 deep trees).
WITH_A_FAILURE = {
    "logistic_regression": {"candidates": 2, "space": {"regularization_c": [0.1, 1.0]}},
    "random_forest": {"candidates": 1, "space": {"n_estimators": [5000], "max_depth": [None]}},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("search") / "state"
    e = state_env(state, MLCICD_LOCAL_PORT=str(free_port("127.0.0.1")))
    yield e, state
    subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=e, capture_output=True, timeout=120)


def run(env: dict, **conf) -> tuple[int, dict]:
    args = [sys.executable, "-m", "mlcicd", "run", "--json", "--conf", f"model_name={MODEL}"]
    for k, v in conf.items():
        args += ["--conf", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-3000:]
    return done.returncode, json.loads(lines[-1])


def mapped_states(state: Path, run_id: str) -> list[str]:
    """The states of train_candidate's mapped task instances, from the Airflow database of the runs'
    own state folder (tests.helpers.state_env: not the session's)."""
    with sqlite3.connect(state / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT state FROM task_instance WHERE run_id = ? AND task_id = 'train_candidate' AND map_index >= 0",
            (run_id,),
        ).fetchall()
    return [r[0] for r in rows]


def mlflow(state: Path):
    return registry.client(f"sqlite:///{state}/mlflow/mlflow.db")


def children(state: Path, parent: str) -> list:
    c = mlflow(state)
    runs = c.search_runs(
        [e.experiment_id for e in c.search_experiments()], f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    return sorted(runs, key=lambda r: int(r.data.tags["mlcicd.candidate"]))


@pytest.fixture(scope="module")
def quick(env):
    e, state = env
    return run(e, search="quick", synthetic_seed=5)


def test_quick_gives_one_task_instance_and_one_child_run_per_candidate(env, quick):
    e, state = env
    code, s = quick
    assert code == 0 and s["state"] == "success", s.get("error")
    se = s["search"]
    assert se["name"] == "quick" and len(se["candidates"]) == 6
    assert mapped_states(state, s["run_id"]) == ["success"] * 6
    kids = children(state, se["parent_run_id"])
    assert [r.data.tags["mlcicd.candidate"] for r in kids] == [str(i) for i in range(6)]
    assert {r.data.params["estimator"] for r in kids} == {
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
    }
    assert all(r.info.status == "FINISHED" and "validation_roc_auc" in r.data.metrics for r in kids)
    assert [r.data.tags["mlcicd.chosen"] for r in kids].count("true") == 1


def test_the_chosen_candidate_has_the_best_validation_metric_and_is_what_goes_to_the_gate(env, quick):
    e, state = env
    _, s = quick
    rows = s["search"]["candidates"]
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["validation_metric"] == max(r["validation_metric"] for r in rows)
    # The model judged by the gate is the chosen hyperparameters, trained into the search's parent run.
    parent = mlflow(state).get_run(s["search"]["parent_run_id"])
    assert s["candidate"]["mlflow_run_id"] == parent.info.run_id
    assert parent.data.params["estimator"] == chosen["estimator"] == s["candidate"]["estimator"]
    for k, v in json.loads(chosen["params"]).items():
        assert parent.data.params[k] == str(v)
    files = {a.path for a in mlflow(state).list_artifacts(parent.info.run_id, "search")}
    assert {"search/candidates.json", "search/candidates.png", "search/space.json"} <= files


def test_the_gates_holdout_is_disjoint_from_every_candidates_rows(env, quick):
    e, state = env
    _, s = quick
    folder = state / "runs" / record.run_key(s["run_id"])
    split = np.load(folder / "search" / "split.npz")
    fit, val, holdout = (set(split[k].tolist()) for k in ("fit", "validation", "holdout"))
    assert fit and val and holdout and not fit & val and not (fit | val) & holdout
    assert len(fit | val | holdout) == s["batch"]["rows"]
    # ... and the holdout the evaluation scored is those rows of the stored batch, in that order.
    batch = pd.read_parquet(s["batch"]["path"])
    used = pd.read_parquet(folder / "holdout.parquet")
    pd.testing.assert_frame_equal(used, batch.iloc[split["holdout"]].reset_index(drop=True))
    assert s["search"]["fit_rows"] == len(fit) and s["search"]["validation_rows"] == len(val)


def test_a_timed_out_candidate_is_recorded_and_the_run_goes_on(env):
    e, state = env
    code, s = run(e, search=WITH_A_FAILURE, search_timeout_s=3, synthetic_seed=6, synthetic_rows=3000)
    assert code == 0 and s["state"] == "success", s.get("error")
    rows = s["search"]["candidates"]
    failed = [r for r in rows if r["error"]]
    assert [r["estimator"] for r in failed] == ["random_forest"]
    assert "CandidateTimeout" in failed[0]["error"] and "search_timeout_s=3" in failed[0]["error"]
    assert next(r for r in rows if r["chosen"])["estimator"] == "logistic_regression"
    assert (
        mapped_states(state, s["run_id"]) == ["success"] * 3
    )  # the failure is the candidate's, not the task's
    kid = next(
        r
        for r in children(state, s["search"]["parent_run_id"])
        if r.data.params["estimator"] == "random_forest"
    )
    assert kid.info.status == "FAILED" and "CandidateTimeout" in kid.data.tags["mlcicd.error"]


def test_when_every_candidate_fails_the_run_fails_with_each_ones_error(env):
    e, state = env
    before = registry.champion(mlflow(state), MODEL)
    slow = {"random_forest": {"candidates": 2, "space": {"n_estimators": [4000, 5000], "max_depth": [None]}}}
    code, s = run(e, search=slow, search_timeout_s=1, synthetic_seed=7, synthetic_rows=3000)
    assert code == 1 and s["state"] == "failed"
    assert s["error"]["stage"] == "select_candidate" and s["error"]["kind"] == "training"
    assert "all 2 candidate(s) of the search failed" in s["error"]["message"]
    assert s["error"]["message"].count("CandidateTimeout") == 2
    after = registry.champion(mlflow(state), MODEL)
    assert (after and after.version) == (before and before.version)  # nothing trained, nothing promoted


@pytest.fixture(scope="module")
def dag():
    from mlcicd.cli.env import ensure_airflow_db, load_dag
    from mlcicd.settings import load

    ensure_airflow_db(load())
    return load_dag()


@pytest.mark.parametrize(
    ("conf", "says"),
    [
        ({"search": {"gradient_descent": {"candidates": 2}}}, "gradient_descent"),
        (
            {"search": {"random_forest": {"candidates": 2, "space": {"alpha": [1]}}}},
            "unknown hyperparameter 'alpha'",
        ),
        ({"search": {"random_forest": {"candidates": 0}}}, "a space with no candidates"),
        (
            {"search": "quick", "search_max_candidates": 5},
            "gives 6 candidates, above search_max_candidates=5",
        ),
        ({"search": "quick", "search_timeout_s": 999999}, "search_timeout_s"),
        ({"search": "quick", "search_max_candidates": 101}, "above this installation's ceiling of 100"),
    ],
)
def test_bad_searches_are_refused_before_anything_runs(dag, conf, says):
    """What `mlcicd run` checks before it starts the run (the same function; exit 2 below)."""
    from mlcicd.cli.env import validate_conf
    from mlcicd.errors import UsageError

    with pytest.raises(UsageError) as err:
        validate_conf(dag, conf)
    assert says in str(err.value)


def test_mlcicd_run_exits_2_on_a_bad_search_and_starts_no_run(env):
    e, state = env
    runs = lambda: set((state / "runs").glob("*")) if (state / "runs").exists() else set()  # noqa: E731
    before = runs()
    code, s = run(e, search={"random_forest": {"candidates": 2, "space": {"alpha": [1]}}})
    assert code == 2 and s["outcome"] == "usage_error" and "alpha" in s["error"]["message"], s
    assert runs() == before
