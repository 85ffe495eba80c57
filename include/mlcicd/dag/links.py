"""Operator extra links shown on task pages in the Airflow UI: the MLflow run, the GX reports, the scan.

Tasks leave their links in the ``mlcicd_links`` XCom (see :func:`mlcicd.boundary.push_links`);
Airflow calls ``get_link`` at the end of the task and stores the result for the UI. The classes
are registered by the plugin (:mod:`mlcicd.plugin.registration`) so that the API server can show them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from mlcicd.names import LINKS_XCOM


class _XComLink(BaseOperatorLink):
    entry = ""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        links = XCom.get_value(ti_key=ti_key, key=LINKS_XCOM) or {}
        return str(links.get(self.entry) or "")


class MlflowRunLink(_XComLink):
    name = "MLflow run"
    entry = "mlflow_run"


class DataDocsLink(_XComLink):
    name = "Data validation report"
    entry = "data_docs"


class ShiftReportLink(_XComLink):
    """The profile's page: how the batch shifted from the champion's training data (never blocking)."""

    name = "Data shift report"
    entry = "data_shift"


class ScanReportLink(_XComLink):
    """The scan's page: the candidate's hidden weaknesses, slice by slice."""

    name = "Model scan report"
    entry = "scan_report"
