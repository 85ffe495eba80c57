"""A guard for an Airflow 3.3 scheduler race that fails a human approval answered within a second or two.

When ``approve_rollout`` parks in ``awaiting_input``, the worker process that ran it exits, and the
executor reports that exit as ``success`` for the same try. An answer (the UI's Required Actions,
``mlcicd approve``, a CI job) resumes the task at once, with the same task-instance key. When the
scheduler queues the resumed task before it has read that stale ``success``, it takes the event for a
task killed outside Airflow and fails it ("state mismatch" in the audit log). Airflow 3.3.2 covers the
case where the resumed task is still ``scheduled``, not ``queued`` or ``running``
(apache/airflow#71580, #72716; the fixes #72767 and #73546 are open). Reproduced here 3 times out of 4
with an answer sent the moment the task asked; ``tests/e2e/test_trigger.py`` answers that way.

The guard, installed in the scheduler by the plugin's listener: before the scheduler reads the
executor's events, a ``success`` whose task instance is, in the same try, ``queued`` or ``running``
again with a ``next_method`` (that is, resuming from ``awaiting_input`` or ``deferred``) is dropped,
as the scheduler already does for ``scheduled``. The resumed attempt reports its own end. A resumed
attempt that dies without reporting is still failed, by the scheduler's missed-heartbeat check.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# The Airflow versions whose scheduler was read and seen to race, and whose private
# SchedulerJobRunner._process_executor_events the guard wraps: exactly these. On any other the guard is
# not installed (and says so): a later 3.3.x may change the method, or carry the upstream fix.
AFFECTED = ("3.3.2",)
_INSTALLED = "_mlcicd_resume_race_guard"


def stale_resume_exits(executor: Any, session: Any) -> list[Any]:
    """Drop, from ``executor``'s pending events, each ``success`` left by the exit of a worker whose task
    has since been resumed and queued again in the same try; return their keys."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    keys = [
        key
        for key, (state, _info) in list(executor.event_buffer.items())
        if isinstance(key, TaskInstanceKey) and state == TaskInstanceState.SUCCESS
    ]
    if not keys:
        return []
    resumed = {
        ti.key
        for ti in session.scalars(select(TI).where(TI.filter_for_tis(keys)))
        if ti.state in (TaskInstanceState.QUEUED, TaskInstanceState.RUNNING) and ti.next_method is not None
    }
    stale = [key for key in keys if key in resumed]
    for key in stale:
        executor.event_buffer.pop(key, None)
        log.info(
            "mlcicd: ignored the executor's success for %s: the exit of the worker that parked it, "
            "read after the task had been resumed (apache/airflow#71580)",
            key,
        )
    return stale


def install() -> bool:
    """Wrap the scheduler's reading of executor events with the guard; True when installed (once)."""
    import airflow
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    if getattr(SchedulerJobRunner, _INSTALLED, False):
        return True
    if airflow.__version__ not in AFFECTED:
        log.warning(
            "mlcicd: the resume-race guard is for Airflow %s; not installed on %s: check "
            "apache/airflow#71580 before relying on fast approvals",
            AFFECTED,
            airflow.__version__,
        )
        return False
    original = SchedulerJobRunner._process_executor_events

    def _process_executor_events(self: Any, executor: Any, session: Any) -> int:
        stale_resume_exits(executor, session)
        return original(self, executor, session)

    SchedulerJobRunner._process_executor_events = _process_executor_events  # type: ignore[method-assign]
    setattr(SchedulerJobRunner, _INSTALLED, True)
    return True
