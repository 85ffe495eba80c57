"""The search in MLflow: one parent run per Airflow run, a child run per candidate (each found again
on a retry), and the comparison table and plot logged to the parent."""

from __future__ import annotations

import time
from typing import Any

from mlcicd import record

PARENT_TAG, CANDIDATE_TAG = "mlcicd.search_parent", "mlcicd.candidate"


def parent_run(c: Any, experiment_id: str, run_id: str, params: dict[str, Any], name: str, count: int) -> str:
    """The search's parent MLflow run: this Airflow run's, found again on a retry."""
    from mlflow.entities import Param

    key = record.run_key(run_id)
    found = c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{key}'", max_results=1)
    if found:
        return str(found[0].info.run_id)
    run = c.create_run(
        experiment_id,
        run_name=f"{params['model_name']}-{key}",
        tags={
            PARENT_TAG: key,
            "mlcicd.airflow_run_id": run_id,
            "mlcicd.model_name": str(params["model_name"]),
        },
    )
    c.log_batch(run.info.run_id, params=[Param("search", name), Param("search_candidates", str(count))])
    return str(run.info.run_id)


def child_run(c: Any, meta: dict[str, Any], run_id: str, candidate: dict[str, Any]) -> str:
    """The candidate's child run of the search's parent run (found again on a retry)."""
    from mlflow.entities import Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent, index = meta["parent_run_id"], str(candidate["index"])
    query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}' and tags.`{CANDIDATE_TAG}` = '{index}'"
    found = c.search_runs([meta["experiment_id"]], query, max_results=1)
    if found:
        return str(found[0].info.run_id)
    run = c.create_run(
        meta["experiment_id"],
        run_name=f"candidate-{index}-{candidate['estimator']}",
        tags={MLFLOW_PARENT_RUN_ID: parent, CANDIDATE_TAG: index, "mlcicd.airflow_run_id": run_id},
    )
    hp = [Param(k, str(v)) for k, v in candidate["params"].items()]
    c.log_batch(run.info.run_id, params=[Param("estimator", candidate["estimator"]), *hp])
    return str(run.info.run_id)


def log_candidate(c: Any, child: str, result: dict[str, Any]) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics = {"fit_seconds": result["fit_seconds"]}
    metrics.update({f"validation_{k}": v for k, v in (result.get("validation_metrics") or {}).items()})
    tags = [RunTag("mlcicd.error", result["error"])] if result["error"] else []
    c.log_batch(child, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=tags)
    c.set_terminated(child, "FAILED" if result["error"] else "FINISHED")


def log_search(
    c: Any,
    meta: dict[str, Any],
    results: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    chosen: int | None,
) -> None:
    import pandas as pd

    from mlcicd import search

    parent = meta["parent_run_id"]
    c.log_table(parent, data=pd.DataFrame(rows), artifact_file="search/candidates.json")
    c.log_figure(parent, search.plot(results, meta["metric"], chosen), "search/candidates.png")
    c.set_tag(parent, "mlcicd.search_chosen", "none" if chosen is None else str(chosen))
    for row in rows:
        c.set_tag(row["mlflow_run_id"], "mlcicd.chosen", str(row["chosen"]).lower())
