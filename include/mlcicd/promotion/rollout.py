"""A staged rollout's steps, one poke at a time: measure both versions, judge the step, advance.

``analyze_rollout`` (a rescheduling sensor) calls :func:`poke` once per due poke with the rollout's
record (``rollout`` in the run record); the judgement itself is :mod:`.analysis`'s, on the counter
deltas of the candidate and the stable version between two snapshots.
"""

from __future__ import annotations

import logging
from typing import Any

from mlcicd.promotion.analysis import Figures, Plan, increase, measure, step_verdict

log = logging.getLogger("mlcicd")


def snapshot(target: Any, mode: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Both versions' counters now, per source (a server, a pod): role -> source -> figures.

    ``target.scrape()`` gives each source's ``/metrics`` text and the requests it lost before they
    reached it (the front's connection and response errors); those count as errors.
    """
    from mlcicd.promotion.analysis import figures_from_metrics

    out = {}
    for role, scraped in target.scrape().items():
        traffic = "shadow" if role == "candidate" and mode == "shadow" else "live"
        sources = {}
        for source, got in scraped["sources"].items():
            figures = figures_from_metrics(got["text"], str(scraped["version"]), traffic)
            figures.errors += got.get("lost", 0)
            figures.requests += got.get("lost", 0)
            sources[source] = figures.to_dict()
        out[role] = sources
    return out


def labelled_accuracy(
    settings: Any, model_name: str, servers: dict[str, dict[str, Any]], mode: str, since: float, until: float
) -> dict[str, dict[str, Any]] | None:
    """Each version's live accuracy on the rows of ``[since, until)`` whose ground truth has arrived."""
    from datetime import UTC, datetime

    from mlcicd.monitoring import labels_for
    from mlcicd.promotion.analysis import live_accuracy
    from mlcicd.serving.predlog import read_window
    from mlcicd.serving.server import SHADOW_DIR

    labels_dir = settings.labels_for(model_name)
    if not labels_dir.exists() or not any(labels_dir.glob("*.jsonl")):
        return None
    live = settings.predictions_for(model_name)
    start, end = (datetime.fromtimestamp(t, UTC) for t in (since, until + 1))
    out = {}
    for role, server in servers.items():
        folder = live / SHADOW_DIR if role == "candidate" and mode == "shadow" else live
        records = [
            r
            for r in read_window(folder, start, end).records
            if str(r.get("model_version")) == str(server["version"])
        ]
        out[role] = live_accuracy(records, labels_for(records, labels_dir))
    return out


def start(target: Any, plan: Plan, now: float) -> dict[str, Any]:
    """The rollout's record at its first poke: step 1, with both versions' counters as its baseline."""
    step = {
        "percent": plan.stages()[0],
        "share": target.traffic().get("weight"),
        "measurements": [],
        "verdict": "running",
        "started": now,
    }
    return {
        "plan": plan.to_dict(),
        "state": "running",
        "step": 0,
        "since": now,
        "baseline": snapshot(target, plan.mode),
        "steps": [step],
    }


def poke(
    settings: Any, target: Any, plan: Plan, state: dict[str, Any], model_name: str, run_id: str, now: float
) -> None:
    """Measure the step since the last poke, judge it, and advance the traffic when it passed.

    ``state`` is updated in place: ``state["state"]`` becomes ``aborted`` (the caller takes the
    candidate out), ``passed`` after the last step, or stays ``running``. The caller holds the
    candidate (its lease) and calls this only when ``plan.interval_s`` has passed since ``state["since"]``.
    """
    from mlcicd import deploy as dep

    after = snapshot(target, plan.mode)
    before = state["baseline"]
    step = state["steps"][state["step"]]
    cand, stable = (
        increase(
            {k: Figures.from_dict(f) for k, f in after.get(role, {}).items()},
            {k: Figures.from_dict(f) for k, f in before.get(role, {}).items()},
        )
        for role in ("candidate", "stable")
    )
    started = step.get("started", state["since"])
    accuracy = labelled_accuracy(settings, model_name, target.servers(), plan.mode, started, now)
    m = measure(plan, cand, stable, accuracy)
    m["at"] = now
    step["measurements"].append(m)
    step["verdict"] = step_verdict(plan, step["measurements"])
    log.info(
        "step %d (%d %%), measurement %d: %s (%s)",
        state["step"] + 1,
        step["percent"],
        len(step["measurements"]),
        m["verdict"],
        m["note"],
    )
    state.update(since=now, baseline=after)
    if step["verdict"] == "failed":
        state["state"] = "aborted"
    elif step["verdict"] == "passed":
        stages = plan.stages()
        if state["step"] + 1 < len(stages):
            state["step"] += 1
            percent = stages[state["step"]]
            state["steps"].append(
                {"percent": percent, "measurements": [], "verdict": "running", "started": now}
            )
            with dep.lock(settings, target.name, target.model_name):
                dep.own_candidate(target.candidate(), run_id)  # never another run's candidate
                share = target.shift(percent)
            state["steps"][-1]["share"] = share
            log.info("advanced to %s %% of traffic (%d %% asked)", share, percent)
        else:
            state["state"] = "passed"


def failure(plan: Plan, state: dict[str, Any]) -> str:
    """What the failed step measured, for the run's error."""
    step = state["steps"][state["step"]]
    return (
        f"the {plan.mode} analysis failed at step {state['step'] + 1} ({step['percent']} %): "
        + "; ".join(x["note"] for x in step["measurements"])
        + ". The candidate was taken out; the champion serves all traffic, unchanged"
    )


def take_out(settings: Any, target: Any, run_id: str, *, strict: bool) -> None:
    """Take this run's staged candidate out, under the deploy lock. Another run's: DeployError when
    ``strict`` (the analysis never judges it), else left as it is with a warning."""
    from mlcicd import deploy as dep
    from mlcicd.deploy.base import STAGED_BY

    with dep.lock(settings, target.name, target.model_name):
        staged = target.candidate()
        if strict:
            dep.own_candidate(staged, run_id)
            target.abort()
        elif staged is not None and staged.detail.get(STAGED_BY) in (run_id, None):
            target.abort()
        elif staged is not None:
            log.warning(
                "the staged candidate is run %s's, not this run's: left as it is",
                staged.detail.get(STAGED_BY),
            )


def tag_outcome(settings: Any, model_name: str, value: str) -> str | None:
    """Tag the challenger with the rollout's outcome and drop its alias; return the champion's version."""
    from mlcicd import registry

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    try:
        challenger = c.get_model_version_by_alias(model_name, registry.CHALLENGER)
        c.set_model_version_tag(challenger.name, challenger.version, "mlcicd.rollout", value)
        c.delete_registered_model_alias(challenger.name, registry.CHALLENGER)
    except Exception as exc:  # the rollout's outcome is what matters; the tag is a detail
        log.warning("could not tag the challenger's rollout outcome: %s", exc)
    try:
        ref = registry.champion(c, model_name)
        return ref.version if ref else None
    except Exception as exc:
        log.warning("could not read the champion's version: %s", exc)
        return None
