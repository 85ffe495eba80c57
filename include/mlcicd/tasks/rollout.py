"""``ml_retrain``'s rollout between deploy and promotion: the analysis steps, the approval, the abort.

``deploy_model`` stages the candidate beside the champion (and gives it the first canary share, or
the mirror); ``analyze_rollout`` is a rescheduling sensor (no worker slot held between pokes) that
measures, judges and advances one step per due poke; ``promote_champion`` gives it all traffic and
moves the alias; ``abort_rollout`` takes it out when the analysis fails or a human rejects it.
The rollout's record (``rollout`` in the run record) holds each step's measurements and verdict.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mlcicd import record
from mlcicd import runparams as p
from mlcicd.boundary import run_dir, stage
from mlcicd.errors import DeployError
from mlcicd.names import Task
from mlcicd.promotion.analysis import Figures, increase, measure, step_verdict

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
        records = [r for r in read_window(folder, start, end).records
                   if str(r.get("model_version")) == str(server["version"])]  # fmt: skip
        out[role] = live_accuracy(records, labels_for(records, labels_dir))
    return out


def analyze(run_id: str, params: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """One poke: measure when due, judge the step, advance, finish or abort (raises).

    Returns whether the analysis is done, and the rollout's summary (for the task's XCom).
    """
    from mlcicd import deploy as dep
    from mlcicd.summary import rollout_view

    with stage(run_id, Task.ANALYZE) as settings:
        plan = p.rollout_plan(params)
        path = run_dir(settings, run_id)
        state = record.read(path).get("rollout") or {}
        if not plan.analysed or state.get("state") == "passed":  # switch, or a first deploy
            return True, rollout_view(state)
        target = dep.get_target(p.target_name(params, settings), settings, str(params["model_name"]))
        dep.own_candidate(target.candidate(), run_id)  # this run's, or the analysis stops here
        lease = dep.lease_seconds(settings, plan.interval_s)
        dep.take_lease(settings, target.name, target.model_name, run_id, lease)  # each poke renews it
        stages = plan.stages()
        now = time.time()
        if not state.get("steps"):  # the first poke: the baseline of step 1
            state = {"plan": plan.to_dict(), "state": "running", "step": 0, "since": now,
                     "baseline": snapshot(target, plan.mode),
                     "steps": [{"percent": stages[0], "share": target.traffic().get("weight"), "measurements": [],
                                "verdict": "running", "started": now}]}  # fmt: skip
            record.update(path, rollout=state)
            return False, None
        if now - state["since"] < plan.interval_s:
            return False, None
        after = snapshot(target, plan.mode)
        before = state["baseline"]
        step = state["steps"][state["step"]]
        cand, stable = (
            increase({k: Figures.from_dict(f) for k, f in after.get(r, {}).items()},
                     {k: Figures.from_dict(f) for k, f in before.get(r, {}).items()})
            for r in ("candidate", "stable")
        )  # fmt: skip
        accuracy = labelled_accuracy(settings, str(params["model_name"]), target.servers(), plan.mode,
                                     step.get("started", state["since"]), now)  # fmt: skip
        m = measure(plan, cand, stable, accuracy)
        m["at"] = now
        step["measurements"].append(m)
        step["verdict"] = step_verdict(plan, step["measurements"])
        log.info("step %d (%d %%), measurement %d: %s (%s)", state["step"] + 1, step["percent"],
                 len(step["measurements"]), m["verdict"], m["note"])  # fmt: skip
        state.update(since=now, baseline=after)
        if step["verdict"] == "failed":
            state["state"] = "aborted"
            record.update(path, rollout=state)
            with dep.lock(settings, target.name, target.model_name):
                dep.own_candidate(target.candidate(), run_id)  # never another run's candidate
                target.abort()
            champion = _tag(settings, params, "analysis_failed")
            raise DeployError(
                f"the {plan.mode} analysis failed at step {state['step'] + 1} ({step['percent']} %): "
                + "; ".join(x["note"] for x in step["measurements"])
                + ". The candidate was taken out; the "
                "champion serves all traffic, unchanged",
                champion_version=champion,
            )
        if step["verdict"] == "passed":
            if state["step"] + 1 < len(stages):
                state["step"] += 1
                state["steps"].append(
                    {
                        "percent": stages[state["step"]],
                        "measurements": [],
                        "verdict": "running",
                        "started": now,
                    }
                )
                with dep.lock(settings, target.name, target.model_name):
                    dep.own_candidate(target.candidate(), run_id)
                    share = target.shift(stages[state["step"]])
                state["steps"][-1]["share"] = share
                log.info("advanced to %s %% of traffic (%d %% asked)", share, stages[state["step"]])
            else:
                state["state"] = "passed"
        record.update(path, rollout=state)
        return state["state"] == "passed", rollout_view(state)


def needs_approval(params: dict[str, Any]) -> str:
    """The branch after the analysis: ask a human, or go on to promotion."""
    return Task.APPROVE if params.get("approval") else Task.PROMOTE


def abort(run_id: str, params: dict[str, Any], approval: dict[str, Any] | None) -> dict[str, Any]:
    """A human rejected the rollout (or nobody answered in time): take the candidate out; always raises."""
    from mlcicd import deploy as dep

    with stage(run_id, Task.ABORT) as settings:
        target = dep.get_target(p.target_name(params, settings), settings, str(params["model_name"]))
        with dep.lock(settings, target.name, target.model_name):
            staged = target.candidate() if hasattr(target, "abort") else None
            if staged is not None and staged.detail.get("staged_by") in (run_id, None):
                target.abort()
            elif staged is not None:
                log.warning(
                    "the staged candidate is run %s's, not this run's: left as it is",
                    staged.detail.get("staged_by"),
                )
        who = (approval or {}).get("by") or "nobody (the approval timed out)"
        record.update(run_dir(settings, run_id), rollout={"state": "rejected", "approval": approval})
        champion = _tag(settings, params, "rejected")
        raise DeployError(
            f"the rollout was rejected by {who}; the champion serves all traffic, unchanged",
            champion_version=champion,
        )


def _tag(settings: Any, params: dict[str, Any], value: str) -> str | None:
    """Tag the challenger with the rollout's outcome and drop its alias; return the champion's version."""
    from mlcicd import registry

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    try:
        challenger = c.get_model_version_by_alias(str(params["model_name"]), registry.CHALLENGER)
        c.set_model_version_tag(challenger.name, challenger.version, "mlcicd.promotion.analysis", value)
        c.delete_registered_model_alias(challenger.name, registry.CHALLENGER)
    except Exception as exc:  # the rollout's outcome is what matters; the tag is a detail
        log.warning("could not tag the challenger's rollout outcome: %s", exc)
    try:
        ref = registry.champion(c, str(params["model_name"]))
        return ref.version if ref else None
    except Exception as exc:
        log.warning("could not read the champion's version: %s", exc)
        return None
