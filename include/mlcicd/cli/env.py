"""The embedded default's environment: Airflow and MLflow pointed at the state folder; params checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlcicd.errors import ConfigError, UsageError
from mlcicd.names import RETRAIN_DAG
from mlcicd.settings import Settings, airflow_env


def prepare_environment(settings: Settings) -> None:
    """Point Airflow and MLflow at the state folder (explicit environment settings win)."""
    airflow_home = settings.state_dir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    defaults = {
        **airflow_env(airflow_home),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per download filled the CLI's output
        "PYTHONWARNINGS": "ignore",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    # The default data root: batches dropped here may be read.
    (settings.state_dir / "data").mkdir(exist_ok=True)


def ensure_airflow_db(settings: Settings) -> None:
    """Create or upgrade the Airflow metadata database (once; a marker records success)."""
    marker = settings.state_dir / "airflow" / ".migrated"
    if marker.exists():
        return
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"'airflow db migrate' failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def parse_conf(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values that parse as JSON (numbers, true, null...) are typed."""
    conf: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--conf expects KEY=VALUE, got {pair!r}")
        try:
            conf[key] = json.loads(raw)
        except json.JSONDecodeError:
            conf[key] = raw
    return conf


def use_project(folder: str) -> Any:
    """The project in ``folder``, checked, and configured for this process (``MLCICD_PROJECTS``) so that
    the DAG files build its DAGs.

    Raises:
        UsageError: the project file is missing or breaks its schema.
    """
    from mlcicd import project
    from mlcicd.settings import load

    try:
        found = project.load(folder)
    except project.ProjectError as exc:
        raise UsageError(str(exc)) from None
    configured = [f for f in load().projects if Path(f).resolve() != found.root]
    os.environ["MLCICD_PROJECTS"] = ",".join([*configured, str(found.root)])
    return found


def load_dag(dag_id: str = RETRAIN_DAG) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        errors = "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items())
        raise RuntimeError(f"DAG files failed to import:\n{errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"DAG {dag_id!r} not found in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    return dag


def validate_conf(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """Check ``conf`` against the DAG's Params (:func:`mlcicd.conf.check`), then what only this machine
    can check before anything runs: the search's budget and its candidates, drawn as plan_search will.
    Return the resolved params (defaults filled in)."""
    from airflow.sdk.definitions.param import ParamsDict

    from mlcicd import conf as confs
    from mlcicd import search
    from mlcicd.conf.run import project as project_of
    from mlcicd.search.limits import budget
    from mlcicd.settings import load

    try:
        confs.check(conf, {key: dag.params.get_param(key).schema for key in dag.params}, dag.dag_id)
        params = ParamsDict(dag.params)
        for key, value in conf.items():
            params[key] = value
        resolved = params.validate()
        confs.check_names(resolved)
        limit, _ = budget(resolved, load())
        search.candidates(resolved["search"], int(resolved["random_seed"]), limit, project_of(resolved))
    except (ConfigError, ValueError) as exc:  # ValueError: Airflow's ParamValidationError, were a default bad
        raise UsageError(str(exc).strip().splitlines()[0]) from exc
    return resolved
