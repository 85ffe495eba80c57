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
from mlcicd.boundary import run_dir, stage
from mlcicd.conf import run as p
from mlcicd.errors import DeployError
from mlcicd.names import Task
from mlcicd.promotion import rollout

log = logging.getLogger("mlcicd")


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
        model_name = str(params["model_name"])
        target = dep.get_target(p.target_name(params, settings), settings, model_name)
        dep.own_candidate(target.candidate(), run_id)  # this run's, or the analysis stops here
        lease = dep.lease_seconds(settings, plan.interval_s)
        dep.take_lease(settings, target.name, target.model_name, run_id, lease)  # each poke renews it
        now = time.time()
        if not state.get("steps"):  # the first poke: the baseline of step 1
            record.update(path, rollout=rollout.start(target, plan, now))
            return False, None
        if now - state["since"] < plan.interval_s:
            return False, None
        rollout.poke(settings, target, plan, state, model_name, run_id, now)
        record.update(path, rollout=state)
        if state["state"] == "aborted":
            rollout.take_out(settings, target, run_id, strict=True)
            champion = rollout.tag_outcome(settings, model_name, "analysis_failed")
            raise DeployError(rollout.failure(plan, state), champion_version=champion)
        return state["state"] == "passed", rollout_view(state)


def needs_approval(params: dict[str, Any]) -> str:
    """The branch after the analysis: ask a human, or go on to promotion."""
    return Task.APPROVE if params.get("approval") else Task.PROMOTE


def abort(run_id: str, params: dict[str, Any], approval: dict[str, Any] | None) -> dict[str, Any]:
    """A human rejected the rollout (or nobody answered in time): take the candidate out; always raises."""
    from mlcicd import deploy as dep

    with stage(run_id, Task.ABORT) as settings:
        model_name = str(params["model_name"])
        target = dep.get_target(p.target_name(params, settings), settings, model_name)
        rollout.take_out(settings, target, run_id, strict=False)
        who = (approval or {}).get("by") or "nobody (the approval timed out)"
        record.update(run_dir(settings, run_id), rollout={"state": "rejected", "approval": approval})
        champion = rollout.tag_outcome(settings, model_name, "rejected")
        raise DeployError(
            f"the rollout was rejected by {who}; the champion serves all traffic, unchanged",
            champion_version=champion,
        )
