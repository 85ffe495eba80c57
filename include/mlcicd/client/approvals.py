"""Answer a rollout's approval (``approve_rollout``, a human-in-the-loop task) through the REST API,
as the UI's Required Actions does: ``python -m mlcicd approve|reject RUN_ID``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from mlcicd.client.trigger import Client, connect
from mlcicd.errors import TriggerError
from mlcicd.names import APPROVE_OPTION, REJECT_OPTION, RETRAIN_DAG, ExitCode, Task


def pending(client: Client, dag_id: str, run_id: str) -> Any | None:
    """The run's approval request (``HITLDetail``), or None when the run has not reached it."""
    import airflow_client.client as ac

    try:
        return client._call(
            "get the approval",
            lambda: ac.TaskInstanceApi(client.api).get_hitl_detail(dag_id, run_id, Task.APPROVE, -1),
        )
    except ac.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def answer(client: Client, dag_id: str, run_id: str, option: str) -> Any:
    import airflow_client.client as ac

    body = ac.UpdateHITLDetailPayload(chosen_options=[option])
    return client._call(
        "answer the approval",
        lambda: ac.TaskInstanceApi(client.api).update_hitl_detail(dag_id, run_id, Task.APPROVE, -1, body),
    )


def answer_approval(url: str, run_id: str, approve: bool, dag_id: str = RETRAIN_DAG) -> dict[str, Any]:
    """Approve or reject a rollout waiting in ``approve_rollout``; returns who answered what, when.

    Raises TriggerError when the run has no approval waiting, or someone answered it already.
    """
    import airflow_client.client as ac

    client = connect(url)
    if client.run(dag_id, run_id) is None:
        raise TriggerError(f"no run {run_id!r} of {dag_id} on {client.url}", ExitCode.USAGE)
    detail = pending(client, dag_id, run_id)
    if detail is None:
        states = client.task_states(dag_id, run_id)
        raise TriggerError(
            f"run {run_id} has no approval waiting: {Task.APPROVE} is "
            f"{states.get(Task.APPROVE) or 'not started'} (it asks only with approval=true, after "
            f"{Task.ANALYZE} passed)",
            ExitCode.USAGE,
        )
    if detail.response_received:
        raise TriggerError(_answered(run_id, detail))
    option = APPROVE_OPTION if approve else REJECT_OPTION
    try:
        done = answer(client, dag_id, run_id, option)
    except ac.ApiException as exc:
        if exc.status == 409:  # answered between our two calls
            raise TriggerError(_answered(run_id, pending(client, dag_id, run_id))) from exc
        if exc.status == 403:
            raise TriggerError(f"Airflow refused the answer: {exc.body}") from exc
        raise
    return {
        "run_id": run_id,
        "decision": option,
        "by": _who(done.responded_by),
        "at": str(done.responded_at),
        "airflow_url": f"{client.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}",
    }


def _who(user: Any) -> str | None:
    return None if user is None else (user.name or user.id)


def _answered(run_id: str, detail: Any) -> str:
    chosen = ", ".join(detail.chosen_options or []) or "the default"
    who = _who(detail.responded_by_user) or "nobody (it timed out)"
    return f"the approval of run {run_id} was already answered: {chosen}, by {who} at {detail.responded_at}"
