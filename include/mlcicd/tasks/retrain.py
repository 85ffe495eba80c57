"""``ml_retrain`` up to the gate: ingest, validate, train, evaluate, decide (see :mod:`.ship` for the rest)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from mlcicd import record, trust
from mlcicd.boundary import mlflow_client, push_links, run_dir, stage, working_on
from mlcicd.conf import run as p
from mlcicd.errors import CodeMismatch, ValidationFailed
from mlcicd.names import Task, mlflow_run_url
from mlcicd.training import REFERENCE_ARTIFACT
from mlcicd.validation.reference import REFERENCE_SUITE_ARTIFACT, contract

log = logging.getLogger("mlcicd")


def ingest(run_id: str, params: dict[str, Any], run_date: datetime | None = None) -> dict[str, Any]:
    """Read the batch, check its target, store it run-scoped; return a BatchRef."""
    from mlcicd import data

    with stage(run_id, Task.INGEST) as settings:
        # A misconfigured target or builder fails the run here, before any training is spent.
        from mlcicd.deploy import preflight
        from mlcicd.image import resolve_builder

        deploy_to = p.target_name(params, settings)
        resolve_builder(settings.image_builder, deploy_to)
        preflight(deploy_to, settings)
        project = p.project(params)
        roots = settings.data_roots
        if project is None:
            refuse_claimed(str(params["model_name"]), settings)
        else:
            record.update(run_dir(settings, run_id), code=project_code(project, params))
            roots = (*roots, str(project.root))  # the project's own data, beside the installation's roots
        uri = str(params["dataset_uri"])
        options = p.synthetic_options(params, run_date)
        df = data.read_batch(uri, options, roots=roots, memory_limit_mb=settings.memory_limit_mb)
        working_on(run_id, Task.INGEST, len(df))
        target = str(params["target_column"])
        data.check_target(df, target)
        ref = data.store_batch(
            df,
            run_dir(settings, run_id),
            source_uri=uri if not uri.startswith(data.SYNTHETIC_SCHEME) else f"synthetic:seed={options.seed}",
            dataset_name=data.dataset_name_for(uri, params.get("dataset_name")),
            target=target,
        )
        log.info(
            "ingested %s rows x %s columns from %s (digest %s)", ref.rows, len(ref.columns), uri, ref.digest
        )
        record.update(run_dir(settings, run_id), batch=ref.to_dict())
        return ref.to_dict()


def project_code(project: Any, params: dict[str, Any]) -> dict[str, str]:
    """The project's code version (commit, digest, dirty), checked against the commit the trigger tested.

    Raises:
        CodeMismatch: ``code_commit`` was given and the folder is not at it, or has uncommitted changes.
        ProjectError: the project declares a task this version does not train yet.
    """
    from mlcicd.project import ProjectError
    from mlcicd.project.code import check_commit, version

    if project.task != "binary":
        raise ProjectError(
            f"{project.file} declares task {project.task!r}; this version trains binary classifiers only "
            "(multiclass and regression come with the task types)"
        )
    code = version(project.root, project.name)
    asked = params.get("code_commit")
    problem = check_commit(code, str(asked)) if asked else None
    if problem:
        raise CodeMismatch(
            f"{problem}: the run was asked to train the code CI tested (code_commit={asked}). Deploy that "
            f"commit to {project.root} (or point the DAG bundle at it) and trigger again; nothing was trained"
        )
    log.info(
        "project %s: code at %s (%s), digest %s",
        project.name,
        code["commit"][:12],
        {"true": "uncommitted changes", "false": "clean"}.get(code["dirty"], "not a git checkout"),
        code["digest"][:19],
    )
    return code


def refuse_claimed(model_name: str, settings: Any) -> None:
    """``ml_retrain`` leaves a model project's model to the project's own DAG.

    Raises:
        ConfigError: a configured project owns ``model_name``.
    """
    from mlcicd import project
    from mlcicd.errors import ConfigError
    from mlcicd.settings import PROJECT_ROOT

    owner = project.of_model(model_name, settings.projects, PROJECT_ROOT)
    if owner is not None:
        raise ConfigError(
            f"{model_name} is the model of the project in {owner.root}: it is trained by {owner.retrain_dag_id}, "
            "with the project's code; trigger that DAG, or give this run another model_name"
        )


def check_unchanged(project: Any, code: dict[str, str] | None) -> None:
    """The project's folder still holds the code ingest recorded for this run.

    Raises:
        CodeMismatch: it changed since (an edit, a sync): what trains would not be what is recorded.
    """
    from mlcicd.project.code import digest

    now = digest(project.root)
    if code is None or now != code["digest"]:
        raise CodeMismatch(
            f"{project.root} changed during the run (digest {now[:19]}…, recorded at ingest "
            f"{(code or {}).get('digest', 'none')[:19]}…): nothing was trained; trigger the run again"
        )


def validate(run_id: str, batch: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Hold the batch to its contract and report its shift from the champion's training batch.

    A contract failure stops the run; shift is reported and the run goes on. The suite inferred
    from this batch is kept in the run's folder: ``train`` logs it with the model, so that the batch
    that trains the next champion becomes the reference of the batches after it.
    """
    from mlcicd import data, validation

    with stage(run_id, Task.VALIDATE) as settings:
        ref = data.BatchRef.from_dict(batch)
        df = data.load_stored(ref)
        working_on(run_id, Task.VALIDATE, len(df))
        c, _ = mlflow_client(settings)
        key, model_name = settings.signing_key(), str(params["model_name"])
        held = contract(c, key, settings.suites_dir, settings.inferred_suites_dir, ref, model_name, df)
        suite, suite_path, origin = held.suite, held.path, held.origin
        reference, reference_origin, source = held.reference, held.reference_origin, held.reference_source
        checked = validation.validate(
            df,
            suite,
            run_name=record.run_key(run_id),
            docs_dir=settings.data_docs_dir,
            declared=held.declared,
        )
        typed_failures, typed_shift = validation.text_in_numbers(ref.text_as_missing, suite, ref.rows)
        checked.failures[:0], checked.shift[:0] = typed_failures, typed_shift
        this_batch = run_dir(settings, run_id) / "reference_suite.json"
        # Anchored on the reference it passed: the contract never loosens through what it tolerated.
        validation.save_suite(validation.infer_suite(df, ref.dataset_name, ref.target, reference), this_batch)
        outcome = validation.ValidationOutcome(
            success=checked.success,
            suite_name=suite["name"],
            suite_origin=origin,
            suite_path=suite_path,
            report_path=checked.report_path,
            evaluated=checked.evaluated,
            failures=checked.failures,
            shift=checked.shift,
            reference=reference_origin,
            reference_suite_path=str(this_batch),
            profile_report_path=checked.profile_report_path,
        )
        record.update(run_dir(settings, run_id), validation=outcome.to_dict())
        push_links(
            data_docs=settings.data_docs_url(checked.report_path),
            data_shift=settings.data_docs_url(checked.profile_report_path),
        )
        if not checked.success:
            lines = "\n".join(f"  - {f}" for f in checked.failures)
            raise ValidationFailed(
                f"batch {ref.source_uri} broke {len(checked.failures)} contract expectation(s) of suite "
                f"{suite['name']!r} ({origin}, {suite_path}):\n{lines}\nReport: {checked.report_path}"
            )
        if reference_origin == "first batch":
            validation.save_suite(reference, Path(source))
            log.info(
                "no reference for %s yet: this batch is the reference until a champion exists (%s)",
                ref.dataset_name,
                source,
            )
        if checked.shift:
            log.warning(
                "shift from the reference (%s), reported and not blocking:\n%s",
                origin,
                "\n".join(f"  - {s}" for s in checked.shift),
            )
        log.info("contract held: %s expectations; report %s", checked.evaluated, checked.report_path)
        return outcome.to_dict()


def train(
    run_id: str,
    batch: dict[str, Any],
    params: dict[str, Any],
    validated: dict[str, Any] | None = None,
    selected: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the candidate (the search's choice, if any) and log it to MLflow with its batch's validation."""
    from mlcicd import data, registry, search, signing, training
    from mlcicd.search import limits

    with stage(run_id, Task.TRAIN) as settings:
        ref = data.BatchRef.from_dict(batch)
        chosen, parent_run_id = search.chosen_candidate(selected)
        hp = p.train_params(params, chosen)
        project = p.project(params)
        code = record.read(run_dir(settings, run_id)).get("code") if project else None
        if project is not None:
            check_unchanged(project, code)
        _, experiment_id = mlflow_client(settings)
        result = training.train_and_log(
            ref,
            data.load_stored(ref),
            hp,
            run_dir=run_dir(settings, run_id),
            tracking_uri=settings.tracking_uri,
            experiment_id=experiment_id,
            run_name=f"{params['model_name']}-{record.run_key(run_id)}",
            tags={"mlcicd.airflow_run_id": run_id, "mlcicd.model_name": str(params["model_name"])},
            parent_run_id=parent_run_id,
            max_rows=settings.train_max_rows,
            project=project,
            hyperparameters=p.hyperparameters(params, chosen),
            code=code,
            timeout_s=limits.budget(params, settings)[1],
        )
        working_on(run_id, Task.TRAIN, result.train_rows)
        # What a later run reads back from this run, by digest: register signs them with the version.
        signed = {REFERENCE_ARTIFACT: signing.file_digest(run_dir(settings, run_id) / "reference.parquet")}
        if validated:
            c, _ = mlflow_client(settings)
            registry.log_validation(c, result.mlflow_run_id, validated, REFERENCE_SUITE_ARTIFACT)
            if validated.get("reference_suite_path"):
                signed[REFERENCE_SUITE_ARTIFACT] = signing.file_digest(
                    Path(validated["reference_suite_path"])
                )
        estimator = project.spec.training.entry_point if project else hp.estimator
        log.info("trained %s on %s rows: MLflow run %s", estimator, result.train_rows, result.mlflow_run_id)
        record.update(
            run_dir(settings, run_id),
            candidate={
                "mlflow_run_id": result.mlflow_run_id,
                "model_uri": result.model_uri,
                "model_id": result.model_id,
                "estimator": estimator,
                "experiment_id": experiment_id,
                "train_rows": result.train_rows,
                "train_rows_available": result.train_rows_available,
                "train_max_rows": settings.train_max_rows,
            },
        )
        push_links(mlflow_run=mlflow_run_url(settings.mlflow_ui_url, experiment_id, result.mlflow_run_id))
        return {**result.to_dict(), "experiment_id": experiment_id, "signed_artifacts": signed, "code": code}


def evaluate(
    run_id: str, batch: dict[str, Any], trained: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Score candidate and champion on the same holdout; the interval of their difference (DeLong or bootstrap)."""
    import pandas as pd

    from mlcicd import champion, data, evaluation, registry
    from mlcicd.training import TrainResult

    with stage(run_id, Task.EVALUATE) as settings:
        ref = data.BatchRef.from_dict(batch)
        tr = TrainResult.from_dict(
            {k: v for k, v in trained.items() if k not in ("experiment_id", "signed_artifacts", "code")}
        )
        p.project(params)  # the models hold the project's classes: its code is imported from its folder
        c, _ = mlflow_client(settings)
        holdout = pd.read_parquet(tr.holdout_path)
        working_on(run_id, Task.EVALUATE, len(holdout))
        x, y = holdout.drop(columns=[ref.target]), holdout[ref.target].to_numpy()
        model = registry.load_verified(tr.model_uri, tr.model_digest, settings.tracking_uri, "the candidate")
        cand = evaluation.score(model, x)
        cand_metrics = evaluation.all_metrics(y, cand)
        champ_ref = trust.trusted_champion(c, settings.signing_key(), str(params["model_name"]))
        champ_metrics = comparison = None
        curves = {"candidate": cand}
        if champ_ref is not None:
            champ = champion.scores(champ_ref, str(params["model_name"]), x, settings.tracking_uri)
            curves[f"champion v{champ_ref.version}"] = champ
            champ_metrics = evaluation.all_metrics(y, champ)
            comparison = evaluation.compare(
                y,
                cand,
                champ,
                metric_name=str(params["primary_metric"]),
                champion_version=champ_ref.version,
                resamples=p.resamples(params, settings),
                confidence=p.policy(params, settings).confidence,  # the asked confidence, floored
                seed=int(params["random_seed"]),
            ).to_dict()
        result = evaluation.EvaluationResult(
            candidate_metrics=cand_metrics,
            champion_metrics=champ_metrics,
            comparison=comparison,
            champion_version=champ_ref.version if champ_ref else None,
        )
        evaluation.log_to_mlflow(tr.mlflow_run_id, result, y, curves)
        record.update(run_dir(settings, run_id), evaluation=result.to_dict())
        push_links(
            mlflow_run=mlflow_run_url(settings.mlflow_ui_url, trained["experiment_id"], tr.mlflow_run_id)
        )
        log.info("candidate holdout metrics: %s", {k: round(v, 4) for k, v in cand_metrics.items()})
        return result.to_dict()


def decide(
    run_id: str,
    trained: dict[str, Any],
    evaluated: dict[str, Any],
    params: dict[str, Any],
    scanned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the gate and record the decision on the MLflow run and logged model."""
    from mlcicd import gate, registry

    with stage(run_id, Task.DECIDE) as settings:
        comparison = gate.Comparison(**evaluated["comparison"]) if evaluated.get("comparison") else None
        decision = gate.decide(
            evaluated["candidate_metrics"],
            comparison,
            p.policy(params, settings),
            p.scan_verdict(params, scanned),
        ).to_dict()
        c, _ = mlflow_client(settings)
        if trained.get("code"):  # a model project's: the code of each side of the comparison
            champion = evaluated.get("champion_version")
            tags = c.get_model_version(str(params["model_name"]), champion).tags if champion else {}
            decision["code"] = {"candidate": trained["code"], "champion": trust.code_of(tags) or None}
        registry.tag_decision(
            c, run_id=trained["mlflow_run_id"], model_id=trained["model_id"], decision=decision
        )
        record.update(run_dir(settings, run_id), gate=decision)
        log.info("gate: %s\n%s", decision["decision"], "\n".join(f"  {r}" for r in decision["reasons"]))
        return decision
