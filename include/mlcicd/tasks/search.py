"""The search's tasks: plan the candidates, train one (a mapped task instance each), choose the best.

The batch's training part (what :func:`mlcicd.training.split` leaves beside the gate's holdout) is
split again into fit and validation rows; candidates are fitted on the first and compared on the
second, so the holdout the gate judges on is never used to choose. The chosen hyperparameters are
then refitted on the whole training part by ``train_model``, into the search's MLflow parent run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from mlcicd import record
from mlcicd.boundary import mlflow_client, push_links, run_dir, stage
from mlcicd.conf import run as p
from mlcicd.errors import TrainingFailed
from mlcicd.names import Task, mlflow_run_url

log = logging.getLogger("mlcicd")

NONE = {"name": "none"}  # the plan of search=none: no candidate, train_model trains the run's params


def plan(run_id: str, batch: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates (for ``.expand``: an empty list for search=none), each with the search's plan
    under ``search``: its split, parent run, metric and time-out."""
    import numpy as np

    from mlcicd import data, search, training
    from mlcicd.search import limits, tracking

    with stage(run_id, Task.PLAN_SEARCH) as settings:
        limit, timeout = limits.budget(params, settings)
        project = p.project(params)
        name, found = search.candidates(params["search"], int(params["random_seed"]), limit, project)
        if not found:
            record.update(run_dir(settings, run_id), search=NONE)
            return []
        ref = data.BatchRef.from_dict(batch)
        y = data.load_stored(ref)[ref.target]
        hp = p.train_params(params)
        train, holdout = training.split_positions(y, hp.test_size, hp.random_seed)
        fit, validation = training.split_positions(y.iloc[train], search.VALIDATION_SHARE, hp.random_seed)
        folder = run_dir(settings, run_id) / "search"
        folder.mkdir(exist_ok=True)
        split_path = folder / "split.npz"  # row positions in the stored batch
        np.savez_compressed(split_path, fit=train[fit], validation=train[validation], holdout=holdout)
        c, experiment_id = mlflow_client(settings)
        parent = tracking.parent_run(c, experiment_id, run_id, params, name, len(found))
        _, spaces = search.parse(params["search"], project)
        c.log_dict(parent, spaces, "search/space.json")
        meta = {
            "name": name,
            "parent_run_id": parent,
            "experiment_id": experiment_id,
            "split_path": str(split_path),
            "metric": str(params["primary_metric"]),
            "timeout_s": timeout,
            "count": len(found),
            "fit_rows": len(fit),
            "validation_rows": len(validation),
        }
        record.update(run_dir(settings, run_id), search={**meta, "candidates": [f.to_dict() for f in found]})
        push_links(mlflow_run=mlflow_run_url(settings.mlflow_ui_url, experiment_id, parent))
        log.info(
            "search %s: %s candidates, fitted on %s rows and compared on %s (%s)\n%s",
            name,
            len(found),
            len(fit),
            len(validation),
            meta["metric"],
            "\n".join(f"  {f.label()}" for f in found),
        )
        return [{**f.to_dict(), "search": meta} for f in found]


def train_candidate(
    run_id: str, batch: dict[str, Any], candidate: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Fit one candidate on the fit rows and score it on the validation rows, as a child MLflow run.

    The candidate's own failure (a fit error, bad hyperparameters, the time-out) is recorded and
    returned, so that the other candidates and the run go on; a failure to reach MLflow is raised.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlcicd import data, evaluation, training
    from mlcicd.project import entry
    from mlcicd.search import limits, tracking

    with stage(run_id, f"{Task.TRAIN_CANDIDATE}[{candidate['index']}]") as settings:
        meta, candidate = candidate["search"], {k: v for k, v in candidate.items() if k != "search"}
        ref = data.BatchRef.from_dict(batch)
        df = data.load_stored(ref)
        rows = np.load(meta["split_path"])
        fit, val = df.iloc[rows["fit"]], df.iloc[rows["validation"]]
        c, _ = mlflow_client(settings)
        child = tracking.child_run(c, meta, run_id, candidate)
        result: dict[str, Any] = {**candidate, "mlflow_run_id": child, "error": None}
        started = time.monotonic()
        try:
            hp = p.train_params(params, candidate)
            project = p.project(params)
            features = fit.drop(columns=[ref.target])
            with threadpool_limits(limits=limits.native_threads(settings.search_parallelism)):
                with limits.time_limit(float(meta["timeout_s"])):
                    pipeline = (
                        training.build_pipeline(features, hp)
                        if project is None
                        else entry.estimator(
                            project,
                            features,
                            ref.target,
                            p.hyperparameters(params, candidate),
                            hp.random_seed,
                        )
                    )
                    pipeline.fit(features, fit[ref.target])
            result["fit_seconds"] = round(time.monotonic() - started, 3)
            metrics = evaluation.all_metrics(
                val[ref.target].to_numpy(), evaluation.score(pipeline, val.drop(columns=[ref.target]))
            )
            result.update(validation_metric=metrics[meta["metric"]], validation_metrics=metrics)
        except Exception as exc:  # this candidate's own failure: recorded, the others go on
            result.update(
                error=f"{type(exc).__name__}: {exc}"[:500], fit_seconds=round(time.monotonic() - started, 3)
            )
            log.warning("candidate %s failed: %s", candidate["index"], result["error"])
        tracking.log_candidate(c, child, result)
        log.info(
            "candidate %s %s %s: %s",
            candidate["index"],
            candidate["estimator"],
            candidate["params"],
            result["error"] or f"validation {meta['metric']} {result['validation_metric']:.4f}",
        )
        return result


def select(
    run_id: str, planned: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Choose the best candidate; log the table and the plot to the parent run. Fails only when all failed."""
    from mlcicd import search
    from mlcicd.search import tracking

    with stage(run_id, Task.SELECT) as settings:
        if not planned:
            return {**NONE, "chosen": None}
        meta = planned[0]["search"]
        # By index: iterating Airflow's lazy sequence reads one past its end and logs a not-found error.
        results = sorted((dict(results[i]) for i in range(len(planned))), key=lambda r: r["index"])
        failure = None
        try:
            best: dict[str, Any] | None = search.choose(results)
        except TrainingFailed as exc:
            best, failure = None, exc
        chosen = best["index"] if best else None
        rows = search.table(results, chosen)
        tracking.log_search(mlflow_client(settings)[0], meta, results, rows, chosen)
        record.update(run_dir(settings, run_id), search={"rows": rows, "chosen": chosen})
        push_links(
            mlflow_run=mlflow_run_url(settings.mlflow_ui_url, meta["experiment_id"], meta["parent_run_id"])
        )
        if best is None:
            raise failure or TrainingFailed("no candidate")  # it lists each candidate's error
        log.info(
            "chosen: candidate %s %s %s (validation %s %.4f of %s candidates)",
            best["index"],
            best["estimator"],
            best["params"],
            meta["metric"],
            best["validation_metric"],
            len(results),
        )
        return {
            **meta,
            "chosen": {
                k: best[k] for k in ("index", "estimator", "params", "validation_metric", "mlflow_run_id")
            },
            "rows": rows,
        }
