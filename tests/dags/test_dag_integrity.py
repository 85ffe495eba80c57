"""Every DAG file: imports cleanly, touches no Connection/Variable and no heavy library at parse.

Each file is parsed in a fresh interpreter so that what it imports is what the file imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = sorted((Path(__file__).resolve().parents[2] / "dags").glob("*.py"))
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


@pytest.fixture(scope="module", params=DAGS, ids=[p.name for p in DAGS])
def parsed(request):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(request.param)], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert parsed["dags"], "the file defines no DAG"


def test_no_connection_or_variable_access_while_parsing(parsed):
    assert parsed["calls"] == []


def test_no_heavy_library_imported_at_parse(parsed):
    heavy = sorted({m.split(".")[0] for m in parsed["new_modules"]} & set(HEAVY))
    assert heavy == []


def test_dag_conventions(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["file_stem"] == dag_id
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
        assert {k: p["value"] for k, p in dag["params"].items()} == defaults[dag_id]
        if dag_id == RETRAIN_DAG:
            assert set(dag["retries"]) == set(RETRAIN_STAGES)
