"""``ml_retrain`` after a promoting gate: register, build the image, deploy, promote; or record the rejection."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any

from mlcicd import record, trust
from mlcicd import runparams as p
from mlcicd.boundary import mlflow_client, run_dir, stage
from mlcicd.errors import ConfigError, DeployError, MlcicdError
from mlcicd.names import Task
from mlcicd.promotion.transaction import SMOKE_ROWS
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
        # The installation's signature on what later runs read back (see mlcicd.signing), over what this
        # run trained: a version changed in MLflow meanwhile is not signed.
        trained_record = {
            "run_id": trained["mlflow_run_id"],
            "model_digest": trained["model_digest"],
            "airflow_run_id": run_id,
        }
        artifacts = trained.get("signed_artifacts") or {}
        trust.sign_version(c, settings.signing_key(), name, version, artifacts, expect=trained_record)
        registry.tag_decision(
            c, run_id=trained["mlflow_run_id"], model_id=trained["model_id"], decision=decision,
            model_name=name, version=version,
        )  # fmt: skip
        c.set_registered_model_alias(name, registry.CHALLENGER, version)
        # The data reference this version brings: the suite inferred from the batch that trained it.
        c.set_model_version_tag(name, version, "mlcicd.validation_suite",
                                f"runs:/{trained['mlflow_run_id']}/{REFERENCE_SUITE_ARTIFACT}")  # fmt: skip
        scanned = record.read(run_dir(settings, run_id)).get("scan") or {}
        if scanned.get("report_url") or scanned.get("report_path"):  # the scan's report, from the version
            c.set_model_version_tag(
                name, version, "mlcicd.scan_report", scanned.get("report_url") or scanned["report_path"]
            )
            c.set_model_version_tag(name, version, "mlcicd.scan_issues", ", ".join(
                f"{sum(i['severity'] == s for i in scanned.get('issues', []))} {s}" for s in ("major", "minor")))  # fmt: skip
        release = Release(name, version, f"models:/{name}/{version}", trained["mlflow_run_id"], run_id,
                          model_digest=trained["model_digest"])  # fmt: skip
        record.update(run_dir(settings, run_id), candidate={"model_version": version})
        log.info("registered %s v%s as %s", name, version, registry.CHALLENGER)
        comparison = decision.get("comparison") or {}
        # The champion the gate judged it against: the deploy switches only if it still is.
        return {**release.to_dict(), "gated_against": comparison.get("champion_version")}


def _mark_failed(
    c: Any, model_name: str, version: str, tag: str, value: str, key: bytes | None = None
) -> None:
    """Tag the version and drop its challenger alias; an MLflow error here must not hide the real one.
    ``key``: the tag is part of the signed record (the image's), so the record is signed again."""
    from mlcicd import registry

    try:
        if key is None:
            c.set_model_version_tag(model_name, version, tag, value)
        else:
            trust.record_tags(c, key, model_name, version, {tag: value})
        c.delete_registered_model_alias(model_name, registry.CHALLENGER)
    except Exception as exc:
        log.warning("could not record %s=%s on %s v%s in MLflow: %s", tag, value, model_name, version, exc)


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
            _mark_failed(
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
    from mlcicd.promotion import transaction as serving

    with stage(run_id, Task.DEPLOY) as settings:
        rel = Release.from_dict(release).with_image(image)
        target = dep.get_target(p.target_name(params, settings), settings, rel.model_name)
        sample = pd.read_parquet(trained["holdout_path"]).drop(columns=[batch["target"]]).head(SMOKE_ROWS)
        model = registry.load_verified(trained["model_uri"], trained["model_digest"], settings.tracking_uri,
                                       f"{rel.model_name} v{rel.version}")  # fmt: skip
        expected = model.predict(sample)
        smoke = dep.SmokeTest.of(sample, expected)
        c, _ = mlflow_client(settings)
        plan = p.rollout_plan(params)
        offered = getattr(target, "rollouts", ("switch",))
        if plan.mode not in offered:
            raise ConfigError(f"rollout={plan.mode} is not available on the {target.name} target (it offers "
                              f"{', '.join(offered)}); shadow needs the local or docker target's traffic front")  # fmt: skip
        if not hasattr(target, "stage") and params.get("approval"):
            raise ConfigError(f"approval needs a target that can stage a version; the {target.name} target "
                              "switches at once")  # fmt: skip
        # Staged beside the champion (promote_champion moves all traffic), or switched here at once.
        staged = hasattr(target, "stage") and (
            target.stages_switch or plan.mode != "switch" or bool(params.get("approval"))
        )
        gated = release.get("gated_against", serving.UNKNOWN)
        try:
            if staged:  # beside the champion; promote_champion gives it all traffic
                with dep.lock(settings, target.name, rel.model_name):
                    held = dep.held_elsewhere(settings, target, run_id)
                    if held:  # never replace another run's canary: that run would judge this one's
                        raise DeployError(
                            f"{held}; nothing was deployed", champion_version=gated_version(c, rel)
                        )
                    serving.check_gated_against(c, rel, gated)
                    if plan.mode != "switch" and target.current() is None:
                        log.warning("nothing serves yet: no %s rollout, v%s takes all traffic at once", plan.mode,
                                    rel.version)  # fmt: skip
                        plan = replace(plan, mode="switch")
                    deployment = target.stage(rel, smoke, plan.mode)
                    lease = dep.lease_seconds(settings, plan.interval_s)
                    dep.take_lease(settings, target.name, rel.model_name, run_id, lease)
                    if plan.mode == "canary":
                        share = target.shift(plan.steps[0])
                        log.info("the canary takes %s %% of traffic (%s %% asked)", share, plan.steps[0])
                    elif plan.mode == "shadow":
                        target.mirror(True)
                replaced = None
            else:
                deployment, replaced = serving.deploy_and_promote(settings, c, target, rel, smoke, gated)
        except MlcicdError as exc:
            _mark_failed(c, rel.model_name, rel.version, "mlcicd.deploy", "rolled_back")
            try:
                current = target.current()
            except Exception as lookup:  # the deploy error is what the user needs; this is a detail
                log.warning("could not tell what %s serves now: %s", target.name, lookup)
                current = None
            record.update(
                run_dir(settings, run_id),
                deployment={"target": target.name, "state": "rolled_back",
                            "endpoint": current.endpoint if current else None,
                            "serving_version": current.version if current else None},
            )  # fmt: skip
            champion = registry.champion(c, rel.model_name)
            exc.details.setdefault("champion_version", champion.version if champion else None)
            raise exc
        c.set_model_version_tag(
            rel.model_name, rel.version, "mlcicd.deploy", f"{deployment.target}:{deployment.endpoint}"
        )
        record.update(
            run_dir(settings, run_id),
            deployment={"target": deployment.target, "state": "staged" if staged else "serving",
                        "endpoint": deployment.endpoint, "serving_version": deployment.version,
                        "rollout": plan.mode},
        )  # fmt: skip
        if plan.mode == "switch":
            record.update(run_dir(settings, run_id), rollout={"state": "passed", "plan": plan.to_dict()})
        if staged:
            log.info("v%s is staged beside the champion (%s): %s", rel.version, plan.mode,
                     {"switch": "all traffic moves at promote_champion", "canary": f"{plan.steps[0]} % of traffic",
                      "shadow": "a copy of live traffic"}[plan.mode])  # fmt: skip
        else:
            log.info("v%s serves at %s (%s) and is %s@champion (was %s)", deployment.version, deployment.endpoint,
                     deployment.target, rel.model_name, replaced)  # fmt: skip
        return {**deployment.to_dict(), "replaced_version": replaced, "staged": staged,
                "gated_against": release.get("gated_against")}  # fmt: skip


def promote(
    run_id: str, release: dict[str, Any], deployment: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Finish the promotion: a staged candidate takes all traffic and ``champion`` moves to it, under the
    deploy lock (else ``deploy_model`` did both); check the alias, drop ``challenger``."""
    from mlcicd import deploy as dep
    from mlcicd import registry
    from mlcicd.promotion import transaction as serving

    with stage(run_id, Task.PROMOTE) as settings:
        c, _ = mlflow_client(settings)
        name, version = release["model_name"], release["version"]
        if deployment.get("staged"):
            rel = Release.from_dict((deployment.get("detail") or {}).get("release") or release)
            target = dep.get_target(p.target_name(params, settings), settings, name)
            smoke = serving.smoke_of(settings, c, name, version)
            gated = deployment.get("gated_against", serving.UNKNOWN)
            try:
                _, replaced = serving.deploy_and_promote(
                    settings, c, target, rel, smoke, gated,
                    switch=lambda: target.promote(rel, smoke) if _staged(target, version, run_id) else target.deploy(rel, smoke),
                )  # fmt: skip
            except MlcicdError:
                _mark_failed(c, name, version, "mlcicd.deploy", "rolled_back")
                with dep.lock(settings, target.name, name):
                    with contextlib.suppress(DeployError):  # another run's candidate stays as it is
                        if _staged(target, version, run_id):
                            target.abort()
                raise
            deployment = {**deployment, "replaced_version": replaced}
            record.update(run_dir(settings, run_id), deployment={"state": "serving"})
        now = registry.champion(c, name)
        if now is None or now.version != version:
            raise DeployError(
                f"{name}@{registry.CHAMPION} names v{now.version if now else '(none)'}, not the deployed v{version}: "
                "it was moved after the deploy. `python -m mlcicd status` shows what serves; --repair settles it"
            )
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


def _staged(target: Any, version: str, run_id: str) -> bool:
    """Whether this run's ``version`` is staged; DeployError when another run's candidate is (left alone)."""
    from mlcicd.deploy import own_candidate

    staged = target.candidate()
    if staged is None:
        return False
    own_candidate(staged, run_id, version)  # another run's, or another version: nothing is touched
    return True


def gated_version(c: Any, rel: Release) -> str | None:
    from mlcicd import registry

    champion = registry.champion(c, rel.model_name)
    return champion.version if champion else None


def reconcile(run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Before anything else: what the target serves must be what ``@champion`` names; repair or fail loudly."""
    from mlcicd import policy, registry
    from mlcicd.deploy import preflight
    from mlcicd.promotion import transaction as serving

    with stage(run_id, Task.RECONCILE) as settings:
        # Names and the installation's rules first: a run they refuse touches nothing.
        p.check_names(params)
        policy.check_allowed(params, settings)
        registry.check_distinct(mlflow_client(settings)[0], str(params["model_name"]))
        applied = policy.apply(params, settings)  # given the asked params: says what the rules changed
        params = applied.params
        for note in applied.overridden:
            log.warning("the installation's rule applies: %s", note)
        record.update(run_dir(settings, run_id), policy={"overridden": applied.overridden})
        target = p.target_name(params, settings)
        preflight(target, settings)
        state = serving.reconcile(settings, target, str(params["model_name"]), repair=True, run_id=run_id)
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
        out = {"decision": decision["decision"], "reasons": decision["reasons"],
               "champion_version": current.version if current else None}  # fmt: skip
        record.update(run_dir(settings, run_id), rejection=out)
        log.warning("candidate rejected; champion stays %s:\n%s", out["champion_version"],
                    "\n".join(f"  {r}" for r in decision["reasons"]))  # fmt: skip
        return out
