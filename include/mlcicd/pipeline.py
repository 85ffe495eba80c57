"""Thin adapters between the ``ml_retrain`` DAG's tasks and the stage modules.

Each function takes plain values (the run id, the run's params, references from upstream tasks),
calls the stage, records the outcome in the run record and returns JSON-serialisable references
for XCom. Failures the user must fix (:class:`~mlcicd.errors.MlcicdError`) become Airflow's
non-retried ``AirflowFailException``; anything else propagates and may be retried.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from mlcicd import record
from mlcicd.errors import MlcicdError, ValidationFailed
from mlcicd.settings import Settings, load

log = logging.getLogger("mlcicd")

SMOKE_ROWS = 20
ERROR_XCOM = "mlcicd_error"


def _run_dir(settings: Settings, run_id: str) -> Path:
    return record.run_dir(settings.runs_dir, run_id)


@contextlib.contextmanager
def stage(run_id: str, name: str) -> Iterator[Settings]:
    """Record a stage's start, end and error; turn user-fixable errors into non-retried failures."""
    settings = load()
    path = _run_dir(settings, run_id)
    started = time.time()
    record.update(path, run_id=run_id, stages={name: {"state": "running", "started_at": started}})
    try:
        yield settings
    except Exception as exc:
        error = {
            "stage": name,
            "kind": getattr(exc, "kind", "error"),
            "message": str(exc) if isinstance(exc, MlcicdError) else f"{type(exc).__name__}: {exc}",
        }
        record.update(
            path, stages={name: {"state": "failed", "seconds": round(time.time() - started, 2)}}, error=error
        )
        _xcom_push(ERROR_XCOM, error)  # REST clients (mlcicd trigger) show it
        if not isinstance(exc, MlcicdError):
            raise  # may be transient: Airflow's retries apply
        log.error("%s failed: %s", name, exc)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{name}: {exc}") from exc
    record.update(path, stages={name: {"state": "success", "seconds": round(time.time() - started, 2)}})


def _xcom_push(key: str, value: Any) -> None:
    """Push an XCom from the running task; a no-op outside one (unit tests)."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:  # not inside a running task: nothing to push to
        return
    context["ti"].xcom_push(key=key, value=value)


def push_links(**links: str | None) -> None:
    """Leave UI links for this task (read by :mod:`mlcicd.links` when the task ends)."""
    from mlcicd.links import LINKS_XCOM

    _xcom_push(LINKS_XCOM, {k: v for k, v in links.items() if v})


def target_name(params: dict[str, Any], settings: Settings) -> str:
    """The deploy target of this run: the ``deploy_target`` param, else the setting; checked by name."""
    from mlcicd.deploy import check_target

    return check_target(str(params.get("deploy_target") or settings.deploy_target))


def _seed(params: dict[str, Any], run_date: datetime | None) -> int:
    if params.get("synthetic_seed") is not None:
        return int(params["synthetic_seed"])
    day = run_date or datetime.now()
    return int(day.strftime("%Y%m%d"))


def ingest(run_id: str, params: dict[str, Any], run_date: datetime | None = None) -> dict[str, Any]:
    """Read the batch, check its target, store it run-scoped; return a BatchRef."""
    from mlcicd import data

    with stage(run_id, "ingest_data") as settings:
        # A misconfigured target or builder fails the run here, before any training is spent.
        from mlcicd.deploy import preflight
        from mlcicd.image import resolve_builder

        deploy_to = target_name(params, settings)
        resolve_builder(settings.image_builder, deploy_to)
        preflight(deploy_to, settings)
        uri = str(params["dataset_uri"])
        options = data.SyntheticOptions(
            rows=int(params.get("synthetic_rows", 5000)),
            seed=_seed(params, run_date),
            drift=float(params.get("synthetic_drift", 0.0)),
            corruption=str(params.get("synthetic_corruption", "none")),
        )
        df = data.read_batch(uri, options)
        target = str(params["target_column"])
        data.check_target(df, target)
        ref = data.store_batch(
            df,
            _run_dir(settings, run_id),
            source_uri=uri if not uri.startswith(data.SYNTHETIC_SCHEME) else f"synthetic:seed={options.seed}",
            dataset_name=data.dataset_name_for(uri, params.get("dataset_name")),
            target=target,
        )
        log.info(
            "ingested %s rows x %s columns from %s (digest %s)", ref.rows, len(ref.columns), uri, ref.digest
        )
        record.update(_run_dir(settings, run_id), batch=ref.to_dict())
        return ref.to_dict()


def validate(run_id: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Validate the batch with its dataset's GX suite (inferring and saving one on first use)."""
    from mlcicd import data, validation

    with stage(run_id, "validate_data") as settings:
        ref = data.BatchRef.from_dict(batch)
        df = data.load_stored(ref)
        found = validation.find_suite(ref.dataset_name, settings.suites_dir, settings.inferred_suites_dir)
        if found:
            suite = json.loads(Path(found.path).read_text())
            suite_path, origin = found.path, found.origin
        else:
            suite = validation.infer_suite(df, ref.dataset_name, ref.target)
            suite_path, origin = str(settings.inferred_suites_dir / f"{ref.dataset_name}.json"), "new"
        ok, evaluated, failures, report = validation.validate(
            df, suite, run_name=record.run_key(run_id), docs_dir=settings.data_docs_dir
        )
        outcome = validation.ValidationOutcome(
            success=ok,
            suite_name=suite["name"],
            suite_origin=origin,
            suite_path=suite_path,
            report_path=report,
            evaluated=evaluated,
            failures=failures,
        )
        record.update(_run_dir(settings, run_id), validation=outcome.to_dict())
        push_links(data_docs=settings.data_docs_url(report))
        if not ok:
            lines = "\n".join(f"  - {f}" for f in failures)
            raise ValidationFailed(
                f"batch {ref.source_uri} failed {len(failures)} of {evaluated} expectations of suite "
                f"{suite['name']!r} ({origin}, {suite_path}):\n{lines}\nReport: {report}"
            )
        if origin == "new":
            validation.save_suite(suite, Path(suite_path))
            log.info(
                "no suite for %s: inferred one from this batch and saved it to %s",
                ref.dataset_name,
                suite_path,
            )
        log.info("validation passed: %s expectations; report %s", evaluated, report)
        return outcome.to_dict()


def train_params(params: dict[str, Any]) -> Any:
    from mlcicd.training import TrainParams

    return TrainParams(
        estimator=str(params["estimator"]),
        n_estimators=int(params["n_estimators"]),
        max_depth=None if params.get("max_depth") in (None, 0) else int(params["max_depth"]),
        learning_rate=float(params["learning_rate"]),
        regularization_c=float(params["regularization_c"]),
        test_size=float(params["test_size"]),
        random_seed=int(params["random_seed"]),
    )


def _mlflow(settings: Settings) -> tuple[Any, str]:
    from mlcicd import registry

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    return c, registry.ensure_experiment(c, settings.experiment_name, settings.artifact_root)


def train(run_id: str, batch: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Train the candidate and log it to MLflow; return a TrainResult."""
    from mlcicd import data, training

    with stage(run_id, "train_model") as settings:
        ref = data.BatchRef.from_dict(batch)
        hp = train_params(params)
        _, experiment_id = _mlflow(settings)
        result = training.train_and_log(
            ref,
            data.load_stored(ref),
            hp,
            run_dir=_run_dir(settings, run_id),
            tracking_uri=settings.tracking_uri,
            experiment_id=experiment_id,
            run_name=f"{params['model_name']}-{record.run_key(run_id)}",
            tags={"mlcicd.airflow_run_id": run_id, "mlcicd.model_name": str(params["model_name"])},
        )
        log.info(
            "trained %s on %s rows: MLflow run %s", hp.estimator, result.train_rows, result.mlflow_run_id
        )
        record.update(
            _run_dir(settings, run_id),
            candidate={
                "mlflow_run_id": result.mlflow_run_id,
                "model_uri": result.model_uri,
                "model_id": result.model_id,
                "estimator": hp.estimator,
                "experiment_id": experiment_id,
            },
        )
        push_links(mlflow_run=settings.mlflow_run_url(experiment_id, result.mlflow_run_id))
        return {**result.to_dict(), "experiment_id": experiment_id}


def evaluate(
    run_id: str, batch: dict[str, Any], trained: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Score candidate and champion on the same holdout; compare them with a paired bootstrap."""
    import mlflow
    import pandas as pd

    from mlcicd import data, evaluation, registry
    from mlcicd.training import TrainResult

    with stage(run_id, "evaluate_candidate") as settings:
        ref = data.BatchRef.from_dict(batch)
        tr = TrainResult.from_dict({k: v for k, v in trained.items() if k != "experiment_id"})
        c, _ = _mlflow(settings)
        holdout = pd.read_parquet(tr.holdout_path)
        x, y = holdout.drop(columns=[ref.target]), holdout[ref.target].to_numpy()
        cand = evaluation.score(registry.load_sklearn(tr.model_uri, settings.tracking_uri), x)
        cand_metrics = evaluation.all_metrics(y, cand)
        champ_ref = registry.champion(c, str(params["model_name"]))
        champ_metrics = comparison = note = None
        curves = {"candidate": cand}
        if champ_ref is not None:
            try:
                champ = evaluation.score(registry.load_sklearn(champ_ref.model_uri, settings.tracking_uri), x)
            except Exception as exc:  # a champion that cannot score this batch is recorded, not fatal
                note = f"pass champion v{champ_ref.version} could not score this holdout ({exc}); thresholds decide"
            else:
                curves[f"champion v{champ_ref.version}"] = champ
                champ_metrics = evaluation.all_metrics(y, champ)
                comparison = evaluation.paired_bootstrap(
                    y,
                    cand,
                    champ,
                    metric_name=str(params["primary_metric"]),
                    champion_version=champ_ref.version,
                    resamples=int(params["bootstrap_resamples"]),
                    confidence=float(params["confidence"]),
                    seed=int(params["random_seed"]),
                ).to_dict()
        with mlflow.start_run(run_id=tr.mlflow_run_id):
            mlflow.log_metrics({f"holdout_{k}": v for k, v in cand_metrics.items()})
            if champ_metrics:
                mlflow.log_metrics({f"champion_holdout_{k}": v for k, v in champ_metrics.items()})
            if comparison:
                mlflow.log_metrics(
                    {"diff_ci_low": comparison["ci_low"], "diff_ci_high": comparison["ci_high"]}
                )
            mlflow.log_figure(
                evaluation.plot_confusion_matrix(y, cand, "Candidate on the holdout"),
                "plots/confusion_matrix.png",
            )
            mlflow.log_figure(evaluation.plot_roc(y, curves), "plots/roc_curve.png")
        result = evaluation.EvaluationResult(
            candidate_metrics=cand_metrics,
            champion_metrics=champ_metrics,
            comparison=comparison,
            champion_version=champ_ref.version if champ_ref else None,
            champion_note=note,
        )
        record.update(_run_dir(settings, run_id), evaluation=result.to_dict())
        push_links(mlflow_run=settings.mlflow_run_url(trained["experiment_id"], tr.mlflow_run_id))
        log.info("candidate holdout metrics: %s", {k: round(v, 4) for k, v in cand_metrics.items()})
        return result.to_dict()


def policy_from(params: dict[str, Any]) -> Any:
    from mlcicd.gate import Policy

    thresholds = {
        "roc_auc": float(params["min_roc_auc"]),
        "accuracy": float(params["min_accuracy"]),
        "f1": float(params["min_f1"]),
    }
    return Policy(
        thresholds=thresholds,
        primary_metric=str(params["primary_metric"]),
        max_degradation=float(params["max_degradation"]),
        confidence=float(params["confidence"]),
    )


def decide(
    run_id: str, trained: dict[str, Any], evaluated: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Apply the gate and record the decision on the MLflow run and logged model."""
    from mlcicd import gate, registry

    with stage(run_id, "decide_promotion") as settings:
        comparison = gate.Comparison(**evaluated["comparison"]) if evaluated.get("comparison") else None
        decision = gate.decide(
            evaluated["candidate_metrics"], comparison, policy_from(params), evaluated.get("champion_note")
        ).to_dict()
        c, _ = _mlflow(settings)
        registry.tag_decision(
            c, run_id=trained["mlflow_run_id"], model_id=trained["model_id"], decision=decision
        )
        record.update(_run_dir(settings, run_id), gate=decision)
        log.info("gate: %s\n%s", decision["decision"], "\n".join(f"  {r}" for r in decision["reasons"]))
        return decision


def register(
    run_id: str, trained: dict[str, Any], decision: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Register the promoted candidate (once per run), tag the decision, alias it ``challenger``."""
    from mlcicd import registry
    from mlcicd.deploy import Release

    with stage(run_id, "register_model") as settings:
        c, _ = _mlflow(settings)
        name = str(params["model_name"])
        version = registry.register(c, name, trained["model_uri"], trained["mlflow_run_id"], run_id)
        registry.tag_decision(
            c, run_id=trained["mlflow_run_id"], model_id=trained["model_id"], decision=decision,
            model_name=name, version=version,
        )  # fmt: skip
        c.set_registered_model_alias(name, registry.CHALLENGER, version)
        release = Release(name, version, f"models:/{name}/{version}", trained["mlflow_run_id"], run_id)
        record.update(_run_dir(settings, run_id), candidate={"model_version": version})
        log.info("registered %s v%s as %s", name, version, registry.CHALLENGER)
        return release.to_dict()


def _mark_failed(c: Any, model_name: str, version: str, tag: str, value: str) -> None:
    """Tag the version and drop its challenger alias; an MLflow error here must not hide the real one."""
    from mlcicd import registry

    try:
        c.set_model_version_tag(model_name, version, tag, value)
        c.delete_registered_model_alias(model_name, registry.CHALLENGER)
    except Exception as exc:
        log.warning("could not record %s=%s on %s v%s in MLflow: %s", tag, value, model_name, version, exc)


def build_image(run_id: str, release: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Build the model-server image of the registered version when the target runs images."""
    from mlcicd import image as img
    from mlcicd.deploy import Release

    with stage(run_id, "build_image") as settings:
        rel = Release(**release)
        target = target_name(params, settings)
        builder = img.resolve_builder(settings.image_builder, target)
        if builder == "none":
            log.info("no image built: the %s target serves the model directory", target)
            return img.Image(builder="none", reference=None).to_dict()
        c, _ = _mlflow(settings)
        try:
            reg = img.registry_from_connection(settings.docker_conn_id)
            if builder == "kaniko":
                from mlcicd import kaniko

                built = kaniko.build(settings, rel, reg)
            else:
                built = img.build(settings, rel, reg)
        except MlcicdError:
            _mark_failed(c, rel.model_name, rel.version, "mlcicd.image", "build_failed")
            raise
        tags = {"mlcicd.image": built.reference, "mlcicd.image_id": built.image_id,
                "mlcicd.image_digest": built.repo_digest, "mlcicd.image_context_digest": built.context_digest}  # fmt: skip
        for key, value in tags.items():
            if value:
                c.set_model_version_tag(rel.model_name, rel.version, key, value)
        record.update(_run_dir(settings, run_id), image=built.to_dict())
        return built.to_dict()


def deploy(
    run_id: str,
    release: dict[str, Any],
    image: dict[str, Any],
    trained: dict[str, Any],
    batch: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Deploy the challenger to the target; its smoke test must reproduce the offline predictions."""
    import pandas as pd

    from mlcicd import deploy as dep
    from mlcicd import registry

    with stage(run_id, "deploy_model") as settings:
        rel = dep.Release(
            **{**release, "image": image.get("reference"), "image_digest": image.get("repo_digest")}
        )
        target = dep.get_target(target_name(params, settings), settings, rel.model_name)
        sample = pd.read_parquet(trained["holdout_path"]).drop(columns=[batch["target"]]).head(SMOKE_ROWS)
        expected = registry.load_sklearn(trained["model_uri"], settings.tracking_uri).predict(sample)
        smoke = dep.SmokeTest(
            payload={"dataframe_split": json.loads(sample.to_json(orient="split", index=False))},
            expected=[v.item() if hasattr(v, "item") else v for v in expected],
        )
        c, _ = _mlflow(settings)
        try:
            deployment = target.deploy(rel, smoke)
        except MlcicdError as exc:
            _mark_failed(c, rel.model_name, rel.version, "mlcicd.deploy", "rolled_back")
            try:
                current = target.current()
            except Exception as lookup:  # the deploy error is what the user needs; this is a detail
                log.warning("could not tell what %s serves now: %s", target.name, lookup)
                current = None
            record.update(
                _run_dir(settings, run_id),
                deployment={"target": target.name, "state": "rolled_back",
                            "endpoint": current.endpoint if current else None,
                            "serving_version": current.version if current else None},
            )  # fmt: skip
            raise exc
        c.set_model_version_tag(
            rel.model_name, rel.version, "mlcicd.deploy", f"{deployment.target}:{deployment.endpoint}"
        )
        record.update(
            _run_dir(settings, run_id),
            deployment={"target": deployment.target, "state": "serving", "endpoint": deployment.endpoint,
                        "serving_version": deployment.version},
        )  # fmt: skip
        log.info("v%s serves at %s (%s)", deployment.version, deployment.endpoint, deployment.target)
        return deployment.to_dict()


def promote(run_id: str, release: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the deployed version."""
    from mlcicd import registry

    with stage(run_id, "promote_champion") as settings:
        c, _ = _mlflow(settings)
        name, version = release["model_name"], release["version"]
        previous = registry.champion(c, name)
        c.set_registered_model_alias(name, registry.CHAMPION, version)
        c.delete_registered_model_alias(name, registry.CHALLENGER)
        out = {
            "model_name": name,
            "champion_version": version,
            "previous_version": previous.version if previous else None,
        }
        record.update(_run_dir(settings, run_id), promotion=out)
        log.info("%s@%s is now v%s (was %s)", name, registry.CHAMPION, version, out["previous_version"])
        return out


def reject(run_id: str, decision: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Record the rejection; the champion is left as it is."""
    from mlcicd import registry

    with stage(run_id, "record_rejection") as settings:
        c, _ = _mlflow(settings)
        current = registry.champion(c, str(params["model_name"]))
        out = {"decision": decision["decision"], "reasons": decision["reasons"],
               "champion_version": current.version if current else None}  # fmt: skip
        record.update(_run_dir(settings, run_id), rejection=out)
        log.warning("candidate rejected; champion stays %s:\n%s", out["champion_version"],
                    "\n".join(f"  {r}" for r in decision["reasons"]))  # fmt: skip
        return out


def monitor_window(run_id: str, params: dict[str, Any], window_end: datetime) -> dict[str, Any]:
    """Evaluate one window of logged predictions and decide, under the guarded policy, whether to retrain."""
    from datetime import timedelta

    import mlflow
    import pandas as pd

    from mlcicd import monitoring, predlog, registry
    from mlcicd.training import REFERENCE_ARTIFACT

    with stage(run_id, "evaluate_window") as settings:
        name = str(params["model_name"])
        start = window_end - timedelta(minutes=int(params["window_minutes"]))
        policy = monitoring.RetrainPolicy(
            consecutive_windows=int(params["consecutive_windows"]),
            cooldown=timedelta(hours=float(params["cooldown_hours"])),
            min_predictions=int(params["min_predictions"]),
        )
        c, _ = _mlflow(settings)
        champ = registry.champion(c, name)
        history_path = settings.monitor_dir(name) / "history.json"
        history, last_retrain = monitoring.load_history(history_path)

        def finish(note: str, drift: Any = None, decay: Any = None, n: int = 0, malformed: int = 0,
                   count_window: bool = True, report: str | None = None) -> dict[str, Any]:  # fmt: skip
            nonlocal history, last_retrain
            if count_window:
                outcome = monitoring.WindowOutcome(
                    window_end, n, bool(drift and drift.dataset_drift), bool(decay and decay["decayed"]), note
                )
                history = monitoring.upsert(history, outcome)
                decision = monitoring.decide_retrain(history, window_end, last_retrain, policy)
            else:
                decision = monitoring.RetrainDecision(False, note)
            if decision.retrain:
                last_retrain = window_end
            if count_window:
                monitoring.save_history(history_path, history, last_retrain)
            log.info("window %s .. %s: %s; retrain: %s (%s)", start, window_end, note or "evaluated",
                     decision.retrain, decision.reason)  # fmt: skip
            out = monitoring.WindowReport(
                model_name=name, champion_version=champ.version if champ else None,
                window_start=start.isoformat(), window_end=window_end.isoformat(), predictions=n,
                malformed_records=malformed, drift=drift.to_dict() if drift else None, decay=decay,
                decision={"retrain": decision.retrain, "reason": decision.reason, "evidence": decision.evidence},
                note=note, report_path=report,
            ).to_dict()  # fmt: skip
            record.update(_run_dir(settings, run_id), monitor=out)
            return out

        if champ is None:
            return finish(
                f"no champion for {name}: nothing is served, nothing to monitor", count_window=False
            )
        records, malformed = predlog.read_window(settings.predictions_for(name), start, window_end)
        if malformed:
            log.warning("%s malformed prediction-log lines skipped", malformed)
        if not records:
            return finish("empty window: no prediction logged", malformed=malformed)
        try:
            ref_file = mlflow.artifacts.download_artifacts(
                run_id=champ.run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=settings.tracking_uri
            )
        except Exception as exc:  # an older champion may lack it: say so, do not guess
            log.warning("champion v%s has no recorded training reference (%s)", champ.version, exc)
            return finish(f"champion v{champ.version} has no recorded reference; retrain it with this version of mlcicd",
                          n=len(records), malformed=malformed, count_window=False)  # fmt: skip
        reference = pd.read_parquet(ref_file)
        current = pd.DataFrame([r["features"] for r in records]).assign(
            **{monitoring.PREDICTION: [r["prediction"] for r in records]}
        )
        if len(records) < policy.min_predictions:
            return finish(
                f"{len(records)} predictions: too few to test for drift", n=len(records), malformed=malformed
            )
        drift = monitoring.detect_drift(reference, current)
        promoted = c.get_run(champ.run_id).data.metrics.get("holdout_accuracy")
        decay = monitoring.live_decay(
            records, monitoring.labels_for(records, settings.labels_for(name)), promoted
        )
        outcome_note = f"drifted: {', '.join(drift.drifted_features) or 'none'}"
        result = finish(outcome_note, drift, decay, len(records), malformed)
        decision = monitoring.RetrainDecision(**result["decision"])
        report_dir = settings.monitor_dir(name) / "reports"
        report_dir.mkdir(parents=True, exist_ok=True)
        report_path = report_dir / f"{record.run_key(run_id)}.html"
        report_path.write_text(
            monitoring.render_report(
                reference,
                current,
                drift,
                f"{name} v{champ.version}: {start:%Y-%m-%d %H:%M} - {window_end:%H:%M} UTC",
                decision,
            )
        )
        experiment = registry.ensure_experiment(
            c, f"{settings.experiment_name}_monitor", settings.artifact_root
        )
        with mlflow.start_run(experiment_id=experiment, run_name=f"{name}-{record.run_key(run_id)}",
                              tags={"mlcicd.model_name": name, "mlcicd.champion_version": champ.version}) as run:  # fmt: skip
            mlflow.log_metrics({"predictions": len(records), "drift_share": drift.drift_share,
                                "drifted_features": len(drift.drifted_features), "retrain": int(decision.retrain)})  # fmt: skip
            if decay:
                mlflow.log_metrics({"live_accuracy": decay["live_accuracy"]})
            mlflow.log_artifact(str(report_path), artifact_path="drift")
            mlflow.log_dict(result, "drift/window.json")
        push_links(mlflow_run=settings.mlflow_run_url(experiment, run.info.run_id))
        result["report_path"] = str(report_path)
        record.update(_run_dir(settings, run_id), monitor=result)
        return result


def retrain_request(report: dict[str, Any], monitor_params: dict[str, Any]) -> dict[str, Any]:
    """The extra of the retrain-request Asset event (JSON): why, for which model, with what conf."""
    conf = {**dict(monitor_params.get("retrain_conf") or {}), "model_name": report["model_name"]}
    return {
        "reason": report["decision"]["reason"],
        "evidence": report["decision"]["evidence"],
        "model_name": report["model_name"],
        "window_end": report["window_end"],
        "conf": conf,
    }


def params_of(context: Any) -> dict[str, Any]:
    """The run's params, with the conf of the retrain requests that started it (if any) applied."""
    events = context.get("triggering_asset_events") or {}
    extras = [dict(e.extra or {}) for evs in events.values() for e in evs]
    return params_from_events(context["params"], extras)


def params_from_events(params: dict[str, Any], extras: list[dict[str, Any]]) -> dict[str, Any]:
    """Params of a retrain started by retrain-request events: the newest event's conf wins.

    Only keys that are params of the DAG are taken; a request cannot inject anything else.
    """
    merged = dict(params)
    for extra in extras:
        for key, value in (extra.get("conf") or {}).items():
            if key in merged:
                merged[key] = value
    return merged
