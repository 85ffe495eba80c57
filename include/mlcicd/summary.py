"""The run summary shared by ``mlcicd run`` and ``mlcicd trigger``: one outcome vocabulary."""

from __future__ import annotations

from typing import Any

from mlcicd.errors import DataError, DeployError, ValidationFailed
from mlcicd.names import Outcome


def outcome(state: str, decision: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    """promoted / rejected for a successful run; why it failed otherwise (from the stage's error kind)."""
    if state == "success":
        return (decision or {}).get("decision", "unknown")
    kind = (error or {}).get("kind")
    if kind in (DataError.kind, ValidationFailed.kind):
        return Outcome.DATA_REJECTED
    if kind == DeployError.kind:
        return Outcome.ROLLED_BACK
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
