"""Every DAG file: imports cleanly, touches no Connection/Variable and no heavy library at parse.

Each file is parsed in a fresh interpreter so that what it imports is what the file imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = sorted((ROOT / "dags").glob("*.py"))
HEAVY = (
    "pandas",
    "numpy",
    "sklearn",
    "mlflow",
    "great_expectations",
    "kubernetes",
    "docker",
    "matplotlib",
    "scipy",
)

PROBE = r"""
import json, sys
from airflow.sdk import Connection, Variable
from airflow.sdk.bases.hook import BaseHook

calls = []
def recorder(name):
    def record(*args, **kwargs):
        calls.append(f"{name}{args}")
        raise RuntimeError(f"{name} called while parsing")
    return record

Connection.get = recorder("Connection.get")
Variable.get = recorder("Variable.get")
BaseHook.get_connection = recorder("BaseHook.get_connection")
before = set(sys.modules)

from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1], safe_mode=False)
dags = {
    dag_id: {
        "file_stem": dag.fileloc.rsplit("/", 1)[-1][:-3],
        "tags": sorted(dag.tags),
        "owners": sorted({t.owner for t in dag.tasks}),
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "max_active_runs": dag.max_active_runs,
        "schedule": repr(dag.timetable),
        "catchup": dag.catchup,
        "doc_md": bool(dag.doc_md),
        "description": dag.description,
        "params": {k: dag.params.get_param(k).dump() for k in dag.params},
    }
    for dag_id, dag in bag.dags.items()
}
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "calls": calls,
    "new_modules": sorted(m for m in set(sys.modules) - before),
    "dags": dags,
}, default=str))
"""


# Each file alone, and the files that build a DAG per model project with both example projects configured.
EXAMPLES = [ROOT / "examples" / name for name in ("churn", "cancer")]
CASES = [(path, ()) for path in DAGS] + [
    (path, EXAMPLES) for path in DAGS if path.stem in ("ml_retrain", "ml_monitor")
]
CHECKS_ONLY = {"ml_projects"}  # checks the project files; builds no DAG


def parse(path: Path, projects: tuple | list = ()) -> dict:
    env = {**os.environ, "MLCICD_PROJECTS": ",".join(map(str, projects))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=180, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stem": path.stem}


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=[p.name + (" with projects" if projects else "") for p, projects in CASES],
)
def parsed(request):
    return parse(*request.param)


def test_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    if parsed["stem"] in CHECKS_ONLY:
        assert parsed["dags"] == {}
    else:
        assert parsed["dags"], "the file defines no DAG"


def test_each_project_gets_its_own_retrain_and_monitor_dag_on_its_own_asset():
    retrain = parse(DAGS[0].with_name("ml_retrain.py"), EXAMPLES)["dags"]
    assert sorted(retrain) == ["ml_retrain", "ml_retrain__breast_cancer", "ml_retrain__mlcicd_churn"]
    cancer = retrain["ml_retrain__breast_cancer"]
    assert "mlcicd_retrain_request__breast_cancer" in cancer["schedule"]
    assert "project:breast_cancer" in cancer["tags"]
    params = {k: p["value"] for k, p in cancer["params"].items()}
    assert params["model_name"] == "breast_cancer" and params["target_column"] == "malignant"
    assert params["hyperparameters"] == {"c": 1.0} and "estimator" not in params
    assert cancer["params"]["min_roc_auc"]["schema"]["minimum"] == 0.9  # the project's floor bounds the form
    monitor = parse(DAGS[0].with_name("ml_monitor.py"), EXAMPLES)["dags"]
    assert sorted(monitor) == ["ml_monitor", "ml_monitor__breast_cancer", "ml_monitor__mlcicd_churn"]


def test_a_broken_project_fails_the_projects_check_and_leaves_the_others_their_dags(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (EXAMPLES[1] / "mlcicd.toml").read_text().replace('name = "breast_cancer"', 'name = "other"')
    (broken / "mlcicd.toml").write_text(text.replace("[training]", "[training]\nepochs = 3"))
    configured = [*EXAMPLES, broken]
    checked = parse(DAGS[0].with_name("ml_projects.py"), configured)
    (error,) = checked["errors"].values()
    line = text.splitlines().index("[training]") + 2
    assert f"{broken / 'mlcicd.toml'}:{line}: training.epochs: unknown key" in error
    retrain = parse(DAGS[0].with_name("ml_retrain.py"), configured)
    assert retrain["errors"] == {}
    assert sorted(retrain["dags"]) == ["ml_retrain", "ml_retrain__breast_cancer", "ml_retrain__mlcicd_churn"]


def test_no_connection_or_variable_access_while_parsing(parsed):
    assert parsed["calls"] == []


def test_no_heavy_library_imported_at_parse(parsed):
    heavy = sorted({m.split(".")[0] for m in parsed["new_modules"]} & set(HEAVY))
    assert heavy == []


def test_dag_conventions(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag_id == dag["file_stem"] or dag_id.startswith(dag["file_stem"] + "__")  # a project's
        assert "mlcicd" in dag["tags"]
        assert dag["owners"] == ["mlcicd"]
        assert dag["doc_md"] and dag["description"]
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False


def test_params_render_as_a_form(parsed):
    for dag in parsed["dags"].values():
        for name, param in dag["params"].items():
            assert param["schema"].get("title"), f"{name} has no title"
            assert param["description"] or param["schema"].get("description"), f"{name} has no description"


SERVICE_TASKS = {"reconcile_serving", "register_model", "build_image", "deploy_model", "promote_champion"}


def test_retries_only_where_a_service_is_called(parsed):
    for dag in parsed["dags"].values():
        for task, retries in dag["retries"].items():
            assert (retries >= 1) == (task in SERVICE_TASKS), (task, retries)


def test_retrain_is_scheduled_on_the_retrain_request_asset(parsed):
    if "ml_retrain" in parsed["dags"]:
        assert "mlcicd_retrain_request" in parsed["dags"]["ml_retrain"]["schedule"]


def test_task_ids_and_defaults_come_from_the_shared_names(parsed):
    """The CLI and the trigger client look tasks up by mlcicd.names; the DAGs' defaults are mlcicd.choices'."""
    from mlcicd.choices import MONITOR_DEFAULTS, RETRAIN_DEFAULTS
    from mlcicd.names import MONITOR_DAG, RETRAIN_DAG, RETRAIN_STAGES, Task

    known = {v for k, v in vars(Task).items() if not k.startswith("_")}
    defaults = {RETRAIN_DAG: RETRAIN_DEFAULTS, MONITOR_DAG: MONITOR_DEFAULTS}
    for dag_id, dag in parsed["dags"].items():
        assert set(dag["retries"]) <= known, set(dag["retries"]) - known
        if dag_id in defaults:  # a project's DAG has the project's defaults (the test above)
            assert {k: p["value"] for k, p in dag["params"].items()} == defaults[dag_id]
        if dag_id.split("__")[0] == RETRAIN_DAG:
            assert set(dag["retries"]) == set(RETRAIN_STAGES)
