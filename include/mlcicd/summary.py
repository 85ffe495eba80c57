"""The run summary shared by ``mlcicd run`` and ``mlcicd trigger``: one outcome vocabulary, and the
summary ``trigger`` reads from a run's XComs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlcicd.errors import CodeMismatch, DataError, DeployError, ValidationFailed
from mlcicd.names import DECISION_XCOM, ERROR_XCOM, Outcome, Task, mlflow_run_url


def outcome(state: str, decision: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    """promoted / rejected for a successful run; why it failed otherwise (from the stage's error kind)."""
    if state == "success":
        return (decision or {}).get("decision", "unknown")
    kind = (error or {}).get("kind")
    if kind in (DataError.kind, ValidationFailed.kind):
        return Outcome.DATA_REJECTED
    if kind == DeployError.kind:
        return Outcome.ROLLED_BACK
    if kind == CodeMismatch.kind:  # the run was asked for code it does not have: a usage error, nothing ran
        return Outcome.USAGE_ERROR
    return Outcome.FAILED


def validation_view(validation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The validation part of a summary, from a ValidationOutcome dict."""
    if not validation:
        return None
    return {
        "success": validation["success"],
        "report_path": validation["report_path"],
        "suite": validation["suite_name"],
        "suite_origin": validation["suite_origin"],
        "failures": validation.get("failures", []),
        "shift": validation.get("shift", []),
        "reference": validation.get("reference", ""),
    }


def rollout_view(rollout: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rollout part of a summary: mode, state, and each step's share, verdict and measurements."""
    if not rollout:
        return None
    return {
        "mode": (rollout.get("plan") or {}).get("mode"),
        "state": rollout.get("state"),
        "steps": rollout.get("steps", []),
        "approval": rollout.get("approval"),
    }


def scan_view(scan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The scan part of a summary: counts, the new MAJOR issues, the report."""
    if not scan:
        return None
    issues = scan.get("issues", [])
    return {
        "major": [i["message"] for i in issues if i["severity"] == "major"],
        "minor": sum(i["severity"] != "major" for i in issues),
        "new_major": scan.get("new_major", []),
        "champion_version": scan.get("champion_version"),
        "notes": scan.get("notes", []),
        "report": scan.get("report_url") or scan.get("report_path"),
        "seconds": scan.get("seconds"),
    }


def search_view(search: dict[str, Any] | None) -> dict[str, Any] | None:
    """The search part of a summary (from the run record or select_candidate's XCom): None for search=none."""
    if not search or not search.get("rows"):
        return None
    chosen = search.get("chosen")
    return {
        "name": search.get("name"),
        "metric": search.get("metric"),
        "fit_rows": search.get("fit_rows"),
        "validation_rows": search.get("validation_rows"),
        "chosen": chosen.get("index") if isinstance(chosen, dict) else chosen,
        "candidates": search["rows"],
        "parent_run_id": search.get("parent_run_id"),
    }


def from_xcoms(
    xcom: Callable[..., Any],
    run_id: str,
    state: str,
    tasks: dict[str, Any],
    link: str,
    mlflow_url: str | None,
    model_name: str,
) -> dict[str, Any]:
    """The summary of a run read through the REST API (``mlcicd trigger``): ``xcom(task_id, key)`` reads
    a task's XCom; ``tasks`` maps each task to its state."""
    failed = next((t for t, state in tasks.items() if state == "failed"), None)
    error = failed and (
        xcom(failed, ERROR_XCOM)
        or {"stage": failed, "kind": "error", "message": f"task {failed} failed; see its log"}
    )
    decision = xcom(Task.DECIDE, DECISION_XCOM) or {}
    trained = xcom(Task.TRAIN) or {}
    evaluated = xcom(Task.EVALUATE) or {}
    release = xcom(Task.REGISTER) or {}
    deployment = xcom(Task.DEPLOY)
    promotion = xcom(Task.PROMOTE) or {}
    rejection = xcom(Task.REJECT) or {}
    validation = xcom(Task.VALIDATE)
    verdict = outcome(state, decision, error)
    mlflow_link = None
    if mlflow_url and trained.get("mlflow_run_id"):
        mlflow_link = mlflow_run_url(mlflow_url, trained.get("experiment_id"), trained["mlflow_run_id"])
    return {
        "run_id": run_id,
        "state": state,
        "outcome": verdict,
        "validation": validation_view(validation),
        "candidate": trained
        and {
            "mlflow_run_id": trained.get("mlflow_run_id"),
            "model_version": release.get("version"),
            "metrics": evaluated.get("candidate_metrics"),
        },
        "search": search_view(xcom(Task.SELECT)),
        "scan": scan_view(xcom(Task.SCAN)),
        "gate": decision and {"decision": decision["decision"], "reasons": decision["reasons"]},
        "image": xcom(Task.BUILD),
        "deployment": deployment
        and {
            "target": deployment["target"],
            "state": "serving" if promotion else "staged" if deployment.get("staged") else "serving",
            "endpoint": deployment["endpoint"],
            "serving_version": deployment["version"],
        },
        "rollout": rollout_view(xcom(Task.ANALYZE)),
        "champion_version": promotion.get("champion_version")
        or rejection.get("champion_version")
        or (error or {}).get("champion_version"),
        "model_name": release.get("model_name") or model_name,
        "code": trained.get("code"),  # a model project's: project, commit, digest, dirty
        "error": error,
        "tasks": tasks,
        "airflow_url": link,
        "mlflow_url": mlflow_link,
    }
