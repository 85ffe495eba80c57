"""The human approval before a rollout's last traffic step: Airflow's own human-in-the-loop branch.

It shows in the UI's Required Actions and is answered there, through the REST API
(``PATCH .../taskInstances/approve_rollout/-1/hitlDetails``) or with ``python -m mlcicd approve|reject``.
No answer within ``MLCICD_APPROVAL_TIMEOUT_MINUTES`` is a rejection (the scheduler applies it).
The only addition to the standard provider's operator: who decided, and when, is pushed to XCom
before the branch, because a rejection skips the tasks that would otherwise read the return value.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator

from mlcicd.names import APPROVAL_XCOM, APPROVE_OPTION, REJECT_OPTION, Task


class RolloutApproval(HITLBranchOperator):
    def execute(self, context: Any) -> Any:
        """Ask the installation's approvers (MLCICD_APPROVERS; with MLCICD_APPROVAL_FOUR_EYES, not the
        user who triggered the run): Airflow refuses an answer from anyone else (403)."""
        from airflow.sdk.exceptions import AirflowFailException

        from mlcicd import policy
        from mlcicd.errors import ConfigError
        from mlcicd.settings import load

        triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
        try:
            users = policy.approvers(load(), triggered_by)
        except ConfigError as exc:
            raise AirflowFailException(f"{Task.APPROVE}: {exc}") from exc
        if users:
            self.assigned_users = [{"id": u, "name": u} for u in users]
            self.body = f"{self.body}\n\nWho may answer: {', '.join(users)} (MLCICD_APPROVERS)."
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            by = event.get("responded_by_user") or {}
            chosen = list(event.get("chosen_options") or [])
            note = None
            if chosen == [APPROVE_OPTION] and self_approved(context, by):
                # Four eyes, whatever the auth manager's ids and names: the approval is a rejection.
                chosen = event["chosen_options"] = [REJECT_OPTION]
                note = "approved by the user who triggered the run: a rejection (MLCICD_APPROVAL_FOUR_EYES)"
            context["ti"].xcom_push(
                key=APPROVAL_XCOM,
                value={
                    "decision": chosen[0] if chosen else None,
                    "by": by.get("name") or by.get("id"),
                    "at": str(event.get("responded_at")),
                    "timed_out": not by,
                    "note": note,
                },
            )
        return super().execute_complete(context=context, event=event)


def self_approved(context: Any, by: dict[str, Any]) -> bool:
    """Whether, with MLCICD_APPROVAL_FOUR_EYES, the user who triggered the run answered its approval
    (compared by id and by name: MLCICD_APPROVERS holds ids, a run records its trigger by name)."""
    from mlcicd.settings import load

    triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
    return bool(load().approval_four_eyes and triggered_by and triggered_by in (by.get("id"), by.get("name")))


def approval_operator(timeout_minutes: float) -> RolloutApproval:
    return RolloutApproval(
        task_id=Task.APPROVE,
        subject="Promote {{ params.model_name }}: give the candidate all traffic?",
        body=(
            "The candidate passed its {{ params.rollout }} analysis (run record: `rollout`). Approve gives it all "
            "traffic and moves @champion; Reject takes it out. No answer within "
            f"{timeout_minutes:g} minutes rejects."
        ),
        options=[APPROVE_OPTION, REJECT_OPTION],
        options_mapping={APPROVE_OPTION: Task.PROMOTE, REJECT_OPTION: Task.ABORT},
        defaults=[REJECT_OPTION],
        response_timeout=timedelta(minutes=timeout_minutes),
    )
