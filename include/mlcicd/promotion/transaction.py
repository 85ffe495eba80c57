"""Served = champion: what a target serves and what ``@champion`` names never disagree for long.

A deploy holds the (target, model) lock from the switch to the alias move, and moves the alias only
if it still names the version the deploy replaced; when the move fails, the replaced version is put
back before the lock is released. :func:`reconcile` (the first task of every ``ml_retrain`` run, and
``mlcicd status``) compares the two and repairs what is left: an interrupted promotion (the served
version was deployed to replace the champion, and the alias never moved) is finished; any other
difference is settled for the registry: the champion is deployed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlcicd import trust
from mlcicd.errors import DeployError, UntrustedArtifact
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from mlcicd.deploy import Deployment, DeployTarget, SmokeTest
    from mlcicd.release import Release

log = logging.getLogger("mlcicd")

SMOKE_ROWS = 20


@dataclass
class ServingState:
    """What serves against what ``@champion`` names, and what was done about it."""

    target: str
    model_name: str
    serving: str | None
    champion: str | None
    endpoint: str | None
    state: str  # in_sync | not_serving | finished_promotion | redeployed_champion | disagree
    note: str

    @property
    def agree(self) -> bool:
        return self.state in ("in_sync", "not_serving", "finished_promotion", "redeployed_champion")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agree": self.agree}


def smoke_of(settings: Settings, c: Any, model_name: str, version: str) -> SmokeTest:
    """A smoke test for a registered version: rows of its (signed) training reference and its own predictions."""
    from mlcicd.deploy import SmokeTest
    from mlcicd.monitoring import PREDICTION
    from mlcicd.training import load_reference

    sample = load_reference(c, settings.signing_key(), model_name, version).head(SMOKE_ROWS)
    return SmokeTest.of(sample.drop(columns=[PREDICTION]), sample[PREDICTION])


UNKNOWN = object()  # the champion a candidate was gated against, when the release does not say


def check_gated_against(c: Any, release: Release, gated_against: Any) -> None:
    """Raise DeployError if ``@champion`` moved since the gate judged ``release`` against it."""
    from mlcicd import registry

    if gated_against is UNKNOWN:
        return
    replaced = registry.champion(c, release.model_name)
    now = replaced.version if replaced else None
    if now != gated_against and now != release.version:
        raise DeployError(
            f"{release.model_name}@champion is v{now or '(none)'} now, but v{release.version} was gated against "
            f"v{gated_against or '(none)'}: nothing was switched. Run again to judge it against v{now}"
        )


def deploy_and_promote(
    settings: Settings,
    c: Any,
    target: DeployTarget,
    release: Release,
    smoke: SmokeTest,
    gated_against: Any = UNKNOWN,
    switch: Callable[[], Deployment] | None = None,
) -> tuple[Deployment, str | None]:
    """Deploy ``release`` and move ``champion`` to it, under the lock; return (deployment, replaced version).

    ``gated_against`` is the champion version the gate compared the candidate with (None: there was
    none); if the alias names another version by now, nothing is switched. ``switch`` gives the
    release all traffic (default: ``target.deploy``; a staged candidate's ``target.promote``).

    Raises:
        DeployError: the champion changed since the gate; the deploy failed (the target rolled
            back); or the alias could not be moved and the replaced version serves again. In every
            case what serves is what the alias names, or the error says how to repair it.
    """
    from mlcicd import deploy as dep
    from mlcicd import registry

    name, version = release.model_name, release.version
    with dep.lock(settings, target.name, name):
        replaced = registry.champion(c, name)
        now = replaced.version if replaced else None
        if now == version:  # a retried task: an earlier attempt switched and moved the alias
            current = target.current()
            if current is None or current.version != version:
                current = target.deploy(release, smoke)
            before = registry.version_tags(c, name, version).get(registry.REPLACES_TAG)
            return current, None if before in (None, registry.NONE) else before
        if gated_against is not UNKNOWN and now != gated_against:
            raise DeployError(
                f"{name}@champion is v{now or '(none)'} now, but v{version} was gated against "
                f"v{gated_against or '(none)'}: nothing was switched. Run again to judge it against v{now}"
            )
        # A switch replaces (or removes) any staged candidate: never another run's.
        held = dep.held_elsewhere(settings, target, release.airflow_run_id) if switch is None else None
        if held:
            raise DeployError(f"{held}; nothing was switched")
        previous = _restorable(settings, c, replaced)
        deployment = switch() if switch is not None else target.deploy(release, smoke)
        try:
            # Passed its smoke test and serves: recorded before the alias moves, so that reconcile
            # can tell an interrupted promotion from a version that should not serve.
            c.set_model_version_tag(name, version, registry.REPLACES_TAG, now or registry.NONE)
            trust.sign_promotion(c, settings.signing_key(), name, version)
            registry.move_champion(c, name, version, expected=now)
        except registry.ChampionMoved as exc:
            state = _reconcile(settings, c, target, name, repair=True)
            raise DeployError(
                f"the champion alias moved while v{version} was being deployed ({exc}); {state.note}"
            ) from exc
        except Exception as exc:  # the registry failed after the switch
            if _names(c, name, version):  # the move went through after all (a reply lost, say)
                log.warning("the registry reported %s, but %s@champion is v%s: promoted", exc, name, version)
            else:
                _put_back(target, name, version, replaced, previous, exc)
        registry.mark_promoted(c, name, version)
        return deployment, now


def _names(c: Any, name: str, version: str) -> bool:
    """Whether ``champion`` names ``version`` (False when the registry cannot say)."""
    from mlcicd import registry

    try:
        ref = registry.champion(c, name)
    except Exception:
        return False
    return ref is not None and ref.version == version


def _put_back(
    target: DeployTarget, name: str, version: str, replaced: Any, previous: Any, exc: Exception
) -> None:
    """The alias could not move to ``version``: serve the replaced version again; always raises."""
    log.error("moving %s@champion to v%s failed (%s): putting the replaced version back", name, version, exc)
    was = f"v{replaced.version}" if replaced else "(none)"
    try:
        if replaced is None:
            target.stop()
        elif previous is None:
            raise DeployError(f"v{replaced.version} has no training reference to smoke-test it with")
        else:
            target.deploy(*previous)
    except Exception as back:
        raise DeployError(
            f"v{version} serves but {name}@champion could not be moved to it ({exc}), and putting {was} back "
            f"failed too ({back}). Served and champion disagree until repaired: run `python -m mlcicd status "
            "--repair` (the next ml_retrain run does it first)"
        ) from exc
    raise DeployError(
        f"{name}@champion could not be moved to v{version} ({type(exc).__name__}: {exc}); {was} serves again, "
        "as the alias says"
    ) from exc


def _restorable(settings: Settings, c: Any, replaced: Any) -> tuple[Release, SmokeTest] | None:
    """What it takes to put the replaced version back without the registry (it may be what fails)."""

    if replaced is None:
        return None
    try:
        release = trust.release_of(c, replaced.name, replaced.version, settings.signing_key())
        return release, smoke_of(settings, c, replaced.name, replaced.version)
    except Exception as exc:  # e.g. a champion from before references were logged
        log.warning("v%s could not be put back should the alias move fail: %s", replaced.version, exc)
        return None


def reconcile(
    settings: Settings, target_name: str, model_name: str, *, repair: bool, run_id: str | None = None
) -> ServingState:
    """Compare what ``target_name`` serves with ``@champion``, under the deploy lock; repair if asked.
    A candidate another run staged within its lease is that run's: DeployError, nothing touched."""
    from mlcicd import deploy as dep
    from mlcicd import registry

    target = dep.get_target(target_name, settings, model_name)
    c = registry.client(settings.tracking_uri, settings.registry_uri)
    with dep.lock(settings, target.name, model_name):
        return _reconcile(settings, c, target, model_name, repair=repair, run_id=run_id)


def _reconcile(
    settings: Settings, c: Any, target: DeployTarget, name: str, *, repair: bool, run_id: str | None
) -> ServingState:
    from mlcicd import deploy as dep
    from mlcicd import registry

    leftover = target.candidate()
    held = dep.held_elsewhere(settings, target, run_id) if repair else None
    if held:  # another run's rollout in progress: a second run of the model is refused, nothing touched
        raise DeployError(f"{held}; this run of {name} was refused before it changed anything")
    if leftover is not None and repair:  # a rollout that never finished (its run died or was stopped)
        log.warning("v%s was left staged beside the stable version: taking it out", leftover.version)
        target.abort()
    current = target.current()
    champ = registry.champion(c, name)
    served, champion = (current.version if current else None), (champ.version if champ else None)
    endpoint = current.endpoint if current else None

    def state(kind: str, note: str) -> ServingState:
        return ServingState(target.name, name, served, champion, endpoint, kind, note)

    if served == champion:
        return state(
            "in_sync", f"v{served} serves and is the champion" if served else "no champion, nothing serves"
        )
    if served is None:
        return state(
            "not_serving",
            f"nothing serves on the {target.name} target (stopped?); the champion is v{champion}",
        )
    tags = registry.version_tags(c, name, served)
    interrupted = (
        tags.get(registry.REPLACES_TAG) == (champion or registry.NONE)
        and registry.PROMOTED_AT_TAG not in tags
    )
    if interrupted:
        todo = f"v{served} was deployed to replace v{champion or '(none)'} and the alias never moved"
        if not repair:
            return state("disagree", f"{todo}: `python -m mlcicd status --repair` finishes the promotion")
        key = settings.signing_key()
        # It passed its smoke test; its record must still be vouched for.
        trust.trusted_version(c, key, name, served)
        trust.sign_promotion(c, key, name, served)
        registry.move_champion(c, name, served, expected=champion)
        registry.mark_promoted(c, name, served)
        log.warning("%s: finished the promotion, %s@champion is v%s", todo, name, served)
        return ServingState(
            target.name,
            name,
            served,
            served,
            endpoint,
            "finished_promotion",
            f"{todo}: finished the promotion",
        )
    if champ is None:
        return state(
            "disagree",
            f"v{served} serves on the {target.name} target but {name} has no champion alias: "
            f"set it (MlflowClient().set_registered_model_alias({name!r}, 'champion', {served!r})) "
            f"or stop the target (`python -m mlcicd stop --target {target.name}`)",
        )
    todo = f"v{served} serves but the champion is v{champion}"
    if not repair:
        return state("disagree", f"{todo}: `python -m mlcicd status --repair` deploys v{champion} again")
    key = settings.signing_key()  # a champion whose record or promotion is not vouched for is not deployed
    trust.check_promoted(key, trust.trusted_version(c, key, name, champion))
    release = trust.release_of(c, name, champion, key)
    try:
        deployment = target.deploy(release, smoke_of(settings, c, name, champion))
    except UntrustedArtifact:
        raise
    except Exception as exc:
        raise DeployError(
            f"{todo}, and deploying v{champion} again failed ({exc}). Deploy it by hand, or point the alias at "
            f"v{served} if that is what should serve"
        ) from exc
    log.warning("%s: deployed v%s again", todo, champion)
    return ServingState(
        target.name,
        name,
        champion,
        champion,
        deployment.endpoint,
        "redeployed_champion",
        f"{todo}: deployed v{champion} again",
    )
