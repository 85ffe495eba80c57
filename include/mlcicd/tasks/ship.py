"""``ml_retrain`` after a promoting gate: register, build the image, deploy, promote; or record the rejection."""

from __future__ import annotations

import logging
from typing import Any

from mlcicd import record, trust
from mlcicd.boundary import mlflow_client, run_dir, stage
from mlcicd.conf import run as p
from mlcicd.errors import DeployError, MlcicdError
from mlcicd.names import Task
from mlcicd.project.code import TAG_PREFIX as CODE_TAG_PREFIX
from mlcicd.promotion import staging
from mlcicd.release import Release
from mlcicd.validation.reference import REFERENCE_SUITE_ARTIFACT

log = logging.getLogger("mlcicd")


def register(
    run_id: str, trained: dict[str, Any], decision: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Register the promoted candidate (once per run), tag the decision, alias it ``challenger``."""
    from mlcicd import registry

    with stage(run_id, Task.REGISTER) as settings:
        c, _ = mlflow_client(settings)
        name = str(params["model_name"])
        version = registry.register(
            c,
            name,
            trained["model_uri"],
            trained["mlflow_run_id"],
            run_id,
            trained["model_digest"],
            model_id=trained["model_id"],
        )
        code = trained.get("code") or {}
        for key, value in code.items():  # the project's code version, signed with the rest of the record
            c.set_model_version_tag(name, version, f"{CODE_TAG_PREFIX}{key}", value)
        # The installation's signature on what later runs read back (see mlcicd.signing), over what this
        # run trained: a version changed in MLflow meanwhile is not signed.
        trained_record = {
            "run_id": trained["mlflow_run_id"],
            "model_digest": trained["model_digest"],
            "airflow_run_id": run_id,
            **({"code": code} if code else {}),
        }
        artifacts = trained.get("signed_artifacts") or {}
        trust.sign_version(c, settings.signing_key(), name, version, artifacts, expect=trained_record)
        registry.tag_decision(
            c,
            run_id=trained["mlflow_run_id"],
            model_id=trained["model_id"],
            decision=decision,
            model_name=name,
            version=version,
        )
        c.set_registered_model_alias(name, registry.CHALLENGER, version)
        # The data reference this version brings: the suite inferred from the batch that trained it.
        c.set_model_version_tag(
            name,
            version,
            "mlcicd.validation_suite",
            f"runs:/{trained['mlflow_run_id']}/{REFERENCE_SUITE_ARTIFACT}",
        )
        scanned = record.read(run_dir(settings, run_id)).get("scan") or {}
        if scanned.get("report_url") or scanned.get("report_path"):  # the scan's report, from the version
            c.set_model_version_tag(
                name, version, "mlcicd.scan_report", scanned.get("report_url") or scanned["report_path"]
            )
            c.set_model_version_tag(
                name,
                version,
                "mlcicd.scan_issues",
                ", ".join(
                    f"{sum(i['severity'] == s for i in scanned.get('issues', []))} {s}"
                    for s in ("major", "minor")
                ),
            )
        release = Release(
            name,
            version,
            f"models:/{name}/{version}",
            trained["mlflow_run_id"],
            run_id,
            model_digest=trained["model_digest"],
            code_path=params.get("project"),
            code_digest=code.get("digest"),
            code_commit=code.get("commit"),
        )
        record.update(run_dir(settings, run_id), candidate={"model_version": version})
        log.info("registered %s v%s as %s", name, version, registry.CHALLENGER)
        comparison = decision.get("comparison") or {}
        # The champion the gate judged it against: the deploy switches only if it still is.
        return {**release.to_dict(), "gated_against": comparison.get("champion_version")}


def build_image(run_id: str, release: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Build the model-server image of the registered version when the target runs images."""
    from mlcicd import image as img

    with stage(run_id, Task.BUILD) as settings:
        rel = Release.from_dict(release)
        target = p.target_name(params, settings)
        builder = img.resolve_builder(settings.image_builder, target)
        if builder == "none":
            log.info("no image built: the %s target serves the model directory", target)
            return img.Image(builder="none", reference=None).to_dict()
        c, _ = mlflow_client(settings)
        try:
            reg = img.registry_from_connection(settings.docker_conn_id)
            if builder == "kaniko":
                from mlcicd.image import kaniko

                built = kaniko.build(settings, rel, reg)
            else:
                from mlcicd.image import docker

                built = docker.build(settings, rel, reg)
        except MlcicdError:
            staging.mark_failed(
                c, rel.model_name, rel.version, trust.IMAGE_TAG, "build_failed", settings.signing_key()
            )
            raise
        tags = {
            trust.IMAGE_TAG: built.reference,
            "mlcicd.image_id": built.image_id,
            trust.IMAGE_DIGEST_TAG: built.repo_digest,
            "mlcicd.image_context_digest": built.context_digest,
        }
        trust.record_tags(c, settings.signing_key(), rel.model_name, rel.version, tags)
        record.update(run_dir(settings, run_id), image=built.to_dict())
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
    from mlcicd.promotion import transaction

    with stage(run_id, Task.DEPLOY) as settings:
        rel = Release.from_dict(release).with_image(image)
        target = dep.get_target(p.target_name(params, settings), settings, rel.model_name)
        sample = pd.read_parquet(trained["holdout_path"]).drop(columns=[batch["target"]])
        sample = sample.head(transaction.SMOKE_ROWS)
        what = f"{rel.model_name} v{rel.version}"
        p.project(params)  # the model holds the project's classes: its code is imported from its folder
        model = registry.load_verified(
            trained["model_uri"], trained["model_digest"], settings.tracking_uri, what
        )
        smoke = dep.SmokeTest.of(sample, model.predict(sample))
        c, _ = mlflow_client(settings)
        plan = p.rollout_plan(params)
        staged = staging.will_stage(target, plan, bool(params.get("approval")))
        gated = release.get("gated_against", transaction.UNKNOWN)
        try:
            shipped = staging.ship(
                settings, c, target, rel, smoke, plan, staged=staged, run_id=run_id, gated=gated
            )
        except MlcicdError as exc:
            staging.mark_failed(c, rel.model_name, rel.version, "mlcicd.deploy", "rolled_back")
            _record_rolled_back(settings, run_id, target)
            champion = registry.champion(c, rel.model_name)
            exc.details.setdefault("champion_version", champion.version if champion else None)
            raise exc
        deployment, plan = shipped.deployment, shipped.plan
        c.set_model_version_tag(
            rel.model_name, rel.version, "mlcicd.deploy", f"{deployment.target}:{deployment.endpoint}"
        )
        record.update(
            run_dir(settings, run_id),
            deployment={
                "target": deployment.target,
                "state": "staged" if shipped.staged else "serving",
                "endpoint": deployment.endpoint,
                "serving_version": deployment.version,
                "rollout": plan.mode,
            },
        )
        if plan.mode == "switch":
            record.update(run_dir(settings, run_id), rollout={"state": "passed", "plan": plan.to_dict()})
        if shipped.staged:
            how = {
                "switch": "all traffic moves at promote_champion",
                "canary": f"{plan.steps[0]} % of traffic",
                "shadow": "a copy of live traffic",
            }
            log.info("v%s is staged beside the champion (%s): %s", rel.version, plan.mode, how[plan.mode])
        else:
            log.info(
                "v%s serves at %s (%s) and is %s@champion (was %s)",
                deployment.version,
                deployment.endpoint,
                deployment.target,
                rel.model_name,
                shipped.replaced,
            )
        return {
            **deployment.to_dict(),
            "replaced_version": shipped.replaced,
            "staged": shipped.staged,
            "gated_against": release.get("gated_against"),
        }


def _record_rolled_back(settings: Any, run_id: str, target: Any) -> None:
    try:
        current = target.current()
    except Exception as lookup:  # the deploy error is what the user needs; this is a detail
        log.warning("could not tell what %s serves now: %s", target.name, lookup)
        current = None
    deployment = {
        "target": target.name,
        "state": "rolled_back",
        "endpoint": current.endpoint if current else None,
        "serving_version": current.version if current else None,
    }
    record.update(run_dir(settings, run_id), deployment=deployment)


def promote(
    run_id: str, release: dict[str, Any], deployment: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Finish the promotion: a staged candidate takes all traffic and ``champion`` moves to it, under the
    deploy lock (else ``deploy_model`` did both); check the alias, drop ``challenger``."""
    from mlcicd import deploy as dep
    from mlcicd import registry
    from mlcicd.promotion import transaction

    with stage(run_id, Task.PROMOTE) as settings:
        c, _ = mlflow_client(settings)
        name, version = release["model_name"], release["version"]
        if deployment.get("staged"):
            rel = Release.from_dict((deployment.get("detail") or {}).get("release") or release)
            target = dep.get_target(p.target_name(params, settings), settings, name)
            gated = deployment.get("gated_against", transaction.UNKNOWN)
            replaced = staging.promote_staged(settings, c, target, rel, run_id, gated)
            deployment = {**deployment, "replaced_version": replaced}
            record.update(run_dir(settings, run_id), deployment={"state": "serving"})
        staging.check_champion_is(c, name, version)
        try:
            c.delete_registered_model_alias(name, registry.CHALLENGER)
        except Exception as exc:  # already gone (a retried task): nothing to do
            log.info("no %s alias to remove: %s", registry.CHALLENGER, exc)
        out = {
            "model_name": name,
            "champion_version": version,
            "previous_version": deployment.get("replaced_version"),
        }
        record.update(run_dir(settings, run_id), promotion=out)
        log.info("%s@%s is v%s (was %s)", name, registry.CHAMPION, version, out["previous_version"])
        return out


def reconcile(run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Before anything else: what the target serves must be what ``@champion`` names; repair or fail loudly."""
    from mlcicd import policy, registry
    from mlcicd.conf import check_names
    from mlcicd.deploy import preflight
    from mlcicd.promotion import transaction

    with stage(run_id, Task.RECONCILE) as settings:
        # Names and the installation's rules first: a run they refuse touches nothing.
        check_names(params)
        policy.check_allowed(params, settings)
        registry.check_distinct(mlflow_client(settings)[0], str(params["model_name"]))
        applied = policy.apply(params, settings)  # given the asked params: says what the rules changed
        params = applied.params
        for note in applied.overridden:
            log.warning("the installation's rule applies: %s", note)
        record.update(run_dir(settings, run_id), policy={"overridden": applied.overridden})
        target = p.target_name(params, settings)
        preflight(target, settings)
        state = transaction.reconcile(settings, target, str(params["model_name"]), repair=True, run_id=run_id)
        record.update(run_dir(settings, run_id), serving=state.to_dict())
        if not state.agree:
            raise DeployError(f"served and champion disagree on the {target} target: {state.note}")
        (log.info if state.state in ("in_sync", "not_serving") else log.warning)("%s", state.note)
        return state.to_dict()


def reject(run_id: str, decision: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Record the rejection; the champion is left as it is."""
    from mlcicd import registry

    with stage(run_id, Task.REJECT) as settings:
        c, _ = mlflow_client(settings)
        current = registry.champion(c, str(params["model_name"]))
        out = {
            "decision": decision["decision"],
            "reasons": decision["reasons"],
            "champion_version": current.version if current else None,
        }
        record.update(run_dir(settings, run_id), rejection=out)
        log.warning(
            "candidate rejected; champion stays %s:\n%s",
            out["champion_version"],
            "\n".join(f"  {r}" for r in decision["reasons"]),
        )
        return out
