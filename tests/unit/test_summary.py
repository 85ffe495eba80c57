from __future__ import annotations

import pytest

from mlcicd.summary import outcome, validation_view


@pytest.mark.parametrize(
    ("state", "decision", "error", "expected"),
    [
        ("success", {"decision": "promoted"}, None, "promoted"),
        ("success", {"decision": "rejected"}, None, "rejected"),
        ("failed", None, {"stage": "ingest_data", "kind": "data"}, "data_rejected"),
        ("failed", None, {"stage": "validate_data", "kind": "validation"}, "data_rejected"),
        ("failed", {"decision": "promoted"}, {"stage": "deploy_model", "kind": "deploy"}, "rolled_back"),
        # A crash inside deploy_model (MLflow down, say) is not a rollback: nothing was switched.
        ("failed", {"decision": "promoted"}, {"stage": "deploy_model", "kind": "error"}, "failed"),
        ("failed", None, None, "failed"),
    ],
)
def test_outcome(state, decision, error, expected):
    assert outcome(state, decision, error) == expected


def test_validation_view():
    assert validation_view(None) is None
    v = {
        "success": False,
        "report_path": "/r.html",
        "suite_name": "s",
        "suite_origin": "declared",
        "failures": ["x"],
        "shift": ["y"],
        "reference": "champion v2",
    }
    assert validation_view(v) == {
        "success": False,
        "report_path": "/r.html",
        "suite": "s",
        "suite_origin": "declared",
        "failures": ["x"],
        "shift": ["y"],
        "reference": "champion v2",
    }
