"""The run summary shared by ``mlcicd run`` and ``mlcicd trigger``: one outcome vocabulary."""

from __future__ import annotations

from typing import Any

PROMOTED, REJECTED, DATA_REJECTED, ROLLED_BACK, FAILED = (
    "promoted",
    "rejected",
    "data_rejected",
    "rolled_back",
    "failed",
)


def outcome(state: str, decision: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
    """promoted / rejected for a successful run; why it failed otherwise (from the stage's error kind)."""
    if state == "success":
        return (decision or {}).get("decision", "unknown")
    kind = (error or {}).get("kind")
    if kind in ("data", "validation"):
        return DATA_REJECTED
    if kind == "deploy":
        return ROLLED_BACK
    return FAILED


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
    }
