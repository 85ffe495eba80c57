"""Names shared by the DAGs, the stage adapters, the CLI and the trigger client: defined once here.

Cheap to import (no third-party imports): the DAG files import it at parse time.
"""

from __future__ import annotations

from enum import IntEnum

RETRAIN_DAG = "ml_retrain"
MONITOR_DAG = "ml_monitor"


class Task:
    """Task ids of ``ml_retrain`` and ``ml_monitor``, in the order they run."""

    RECONCILE = "reconcile_serving"
    INGEST = "ingest_data"
    VALIDATE = "validate_data"
    PLAN_SEARCH = "plan_search"
    TRAIN_CANDIDATE = "train_candidate"
    SELECT = "select_candidate"
    TRAIN = "train_model"
    EVALUATE = "evaluate_candidate"
    SCAN = "scan_model"
    DECIDE = "decide_promotion"
    REGISTER = "register_model"
    BUILD = "build_image"
    DEPLOY = "deploy_model"
    ANALYZE = "analyze_rollout"
    ASK_APPROVAL = "needs_approval"
    APPROVE = "approve_rollout"
    PROMOTE = "promote_champion"
    ABORT = "abort_rollout"
    REJECT = "record_rejection"
    EVALUATE_WINDOW = "evaluate_window"
    DECIDE_RETRAIN = "decide_retrain"
    REQUEST_RETRAIN = "request_retrain"


RETRAIN_STAGES = (
    Task.RECONCILE, Task.INGEST, Task.VALIDATE, Task.PLAN_SEARCH, Task.TRAIN_CANDIDATE, Task.SELECT, Task.TRAIN, Task.EVALUATE, Task.SCAN, Task.DECIDE,
    Task.REGISTER, Task.BUILD, Task.DEPLOY, Task.ANALYZE, Task.ASK_APPROVAL, Task.APPROVE, Task.PROMOTE,
    Task.ABORT, Task.REJECT,
)  # fmt: skip

# XCom keys beside each task's return value.
ERROR_XCOM = "mlcicd_error"  # {stage, kind, message} of a failed stage, for REST clients
DECISION_XCOM = "decision"  # the gate's Decision, pushed by decide_promotion
LINKS_XCOM = "mlcicd_links"  # UI links a task leaves for the operator extra links
APPROVE_OPTION, REJECT_OPTION = "Approve", "Reject"  # the approval's two answers
APPROVAL_XCOM = "approval"  # {decision, by, at} pushed by approve_rollout


class Outcome:
    """What a run came to, in the words ``mlcicd run`` and ``mlcicd trigger`` both print."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    DATA_REJECTED = "data_rejected"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    USAGE_ERROR = "usage_error"
    ERROR = "error"


class ExitCode(IntEnum):
    """Exit status of ``mlcicd run`` and ``mlcicd trigger``."""

    OK = 0  # promoted (or, for run / --accept-rejection, cleanly rejected by the gate)
    FAILED = 1  # any other failure, a timeout, an unreachable server
    USAGE = 2  # bad usage or params: nothing ran
    DATA = 3  # the batch was refused (unreadable, unusable, failed validation)
    DEPLOY = 4  # the deployment failed and was rolled back
    REJECTED = 5  # the gate rejected the candidate (trigger only, unless --accept-rejection)


def exit_code(outcome: str, *, rejection_fails: bool) -> ExitCode:
    """The exit status of an outcome; ``rejection_fails``: a gate rejection is a failing CI job."""
    if outcome == Outcome.REJECTED:
        return ExitCode.REJECTED if rejection_fails else ExitCode.OK
    return {
        Outcome.PROMOTED: ExitCode.OK,
        Outcome.DATA_REJECTED: ExitCode.DATA,
        Outcome.ROLLED_BACK: ExitCode.DEPLOY,
        Outcome.USAGE_ERROR: ExitCode.USAGE,
    }.get(outcome, ExitCode.FAILED)


def mlflow_run_url(mlflow_url: str, experiment_id: str | None, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return f"{mlflow_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
