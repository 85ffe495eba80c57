"""Registers mlcicd's operator extra links and serves the report pages inside the Airflow API server
(behind Airflow's login, under a sandboxing Content-Security-Policy: see mlcicd.webreports)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlcicd.links import DataDocsLink, MlflowRunLink, ScanReportLink, ShiftReportLink
from mlcicd.settings import DATA_DOCS_URL_PREFIX, load


def _reports_app():
    from fastapi import Depends

    from mlcicd import webreports

    folder = load().data_docs_dir
    folder.mkdir(parents=True, exist_ok=True)
    return webreports.create_app(folder, dependencies=[Depends(webreports.airflow_reader)])


class MlcicdPlugin(AirflowPlugin):
    name = "mlcicd"
    operator_extra_links = [MlflowRunLink(), DataDocsLink(), ShiftReportLink(), ScanReportLink()]
    fastapi_apps = [{"app": _reports_app(), "url_prefix": DATA_DOCS_URL_PREFIX, "name": "mlcicd reports"}]
