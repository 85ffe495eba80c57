"""How a gated release reaches traffic: switched at once, or staged beside the champion first.

A target that can stage (:attr:`~mlcicd.deploy.base.DeployTarget.can_stage`) stages every canary,
shadow or approved rollout, and on the local and docker targets every switch too (the traffic front
then moves all traffic at once). A staged candidate is its run's: the run holds a lease on it,
renewed while it analyses, and no other run replaces, promotes or takes it out meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mlcicd import trust
from mlcicd.errors import ConfigError, DeployError, MlcicdError
from mlcicd.promotion import transaction
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from mlcicd.deploy import Deployment, DeployTarget, SmokeTest
    from mlcicd.promotion.analysis import Plan
    from mlcicd.release import Release

log = logging.getLogger("mlcicd")


@dataclass(frozen=True)
class Shipped:
    deployment: Deployment
    replaced: str | None  # the champion it replaced (None when staged: promote_champion replaces it)
    staged: bool
    plan: Plan  # as carried out: a canary or shadow with nothing serving yet becomes a switch


def will_stage(target: DeployTarget, plan: Plan, approval: bool) -> bool:
    """Whether the release is staged beside the champion (else it switches at once).

    Raises:
        ConfigError: the target does not offer the asked rollout, or cannot stage for an approval.
    """
    if plan.mode not in target.rollouts:
        raise ConfigError(
            f"rollout={plan.mode} is not available on the {target.name} target (it offers "
            f"{', '.join(target.rollouts)}); shadow needs the local or docker target's traffic front"
        )
    if approval and not target.can_stage:
        raise ConfigError(
            f"approval needs a target that can stage a version; the {target.name} target switches at once"
        )
    return target.can_stage and (target.stages_switch or plan.mode != "switch" or approval)


def ship(
    settings: Settings,
    c: Any,
    target: DeployTarget,
    rel: Release,
    smoke: SmokeTest,
    plan: Plan,
    *,
    staged: bool,
    run_id: str,
    gated: Any = transaction.UNKNOWN,
) -> Shipped:
    """``staged`` (see :func:`will_stage`): stage ``rel`` beside the champion (taking the lease, giving
    the first canary share or the mirror); else deploy it and move ``@champion`` at once. ``gated``: the
    champion the gate judged it against (nothing is switched if it moved since)."""
    from mlcicd import deploy as dep

    if not staged:
        deployment, replaced = transaction.deploy_and_promote(settings, c, target, rel, smoke, gated)
        return Shipped(deployment, replaced, False, plan)
    with dep.lock(settings, target.name, rel.model_name):
        held = dep.held_elsewhere(settings, target, run_id)
        if held:  # never replace another run's canary: that run would judge this one's
            raise DeployError(f"{held}; nothing was deployed", champion_version=champion_version(c, rel))
        transaction.check_gated_against(c, rel, gated)
        if plan.mode != "switch" and target.current() is None:
            log.warning(
                "nothing serves yet: no %s rollout, v%s takes all traffic at once", plan.mode, rel.version
            )
            plan = replace(plan, mode="switch")
        deployment = target.stage(rel, smoke, plan.mode)
        dep.take_lease(
            settings, target.name, rel.model_name, run_id, dep.lease_seconds(settings, plan.interval_s)
        )
        if plan.mode == "canary":
            share = target.shift(plan.steps[0])
            log.info("the canary takes %s %% of traffic (%s %% asked)", share, plan.steps[0])
        elif plan.mode == "shadow":
            target.mirror(True)
    return Shipped(deployment, None, True, plan)


def promote_staged(
    settings: Settings,
    c: Any,
    target: DeployTarget,
    rel: Release,
    run_id: str,
    gated: Any = transaction.UNKNOWN,
) -> str | None:
    """Give this run's staged ``rel`` all traffic and move ``@champion`` to it (a retried task whose
    candidate is gone deploys it again); return the version it replaced. On failure the candidate is
    taken out (never another run's) and the error raised."""
    from mlcicd import deploy as dep

    name, version = rel.model_name, rel.version
    smoke = transaction.smoke_of(settings, c, name, version)

    def switch() -> Deployment:
        return target.promote(rel, smoke) if _staged(target, version, run_id) else target.deploy(rel, smoke)

    try:
        _, replaced = transaction.deploy_and_promote(settings, c, target, rel, smoke, gated, switch=switch)
    except MlcicdError:
        mark_failed(c, name, version, "mlcicd.deploy", "rolled_back")
        with dep.lock(settings, target.name, name):
            with contextlib.suppress(DeployError):  # another run's candidate stays as it is
                if _staged(target, version, run_id):
                    target.abort()
        raise
    return replaced


def check_champion_is(c: Any, name: str, version: str) -> None:
    """Raise DeployError unless ``@champion`` names ``version`` (it was moved after the deploy)."""
    from mlcicd import registry

    now = registry.champion(c, name)
    if now is None or now.version != version:
        raise DeployError(
            f"{name}@{registry.CHAMPION} names v{now.version if now else '(none)'}, not the deployed v{version}: "
            "it was moved after the deploy. `python -m mlcicd status` shows what serves; --repair settles it"
        )


def _staged(target: DeployTarget, version: str, run_id: str) -> bool:
    """Whether this run's ``version`` is staged; DeployError when another run's candidate is (left alone)."""
    from mlcicd.deploy import own_candidate

    staged = target.candidate()
    if staged is None:
        return False
    own_candidate(staged, run_id, version)  # another run's, or another version: nothing is touched
    return True


def champion_version(c: Any, rel: Release) -> str | None:
    from mlcicd import registry

    champion = registry.champion(c, rel.model_name)
    return champion.version if champion else None


def mark_failed(
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
