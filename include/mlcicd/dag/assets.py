"""Airflow Assets shared by the DAGs (a thin Airflow adapter: cheap to import at parse time)."""

from __future__ import annotations

from airflow.sdk import Asset

# ml_monitor emits an event on it when the guarded policy decides to retrain; ml_retrain is
# scheduled on it beside its time schedule. The event's extra holds the reason and optional conf.
RETRAIN_REQUEST = Asset(name="mlcicd_retrain_request", uri="mlcicd://retrain-request")


def retrain_request(model: str | None = None) -> Asset:
    """The retrain requests of a model project's DAG (its own Asset), or ``ml_retrain``'s."""
    if model is None:
        return RETRAIN_REQUEST
    return Asset(name=f"mlcicd_retrain_request__{model}", uri=f"mlcicd://retrain-request/{model}")
