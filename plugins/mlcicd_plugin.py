"""Registers mlcicd's operator extra links and serves the GX Data Docs inside the Airflow API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlcicd.links import DataDocsLink, MlflowRunLink, ScanReportLink, ShiftReportLink
from mlcicd.settings import DATA_DOCS_URL_PREFIX, load


def _data_docs_app():
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="mlcicd data validation reports")
    folder = load().data_docs_dir
    folder.mkdir(parents=True, exist_ok=True)
    app.mount("/", StaticFiles(directory=folder, html=True), name="data_docs")
    return app


class MlcicdPlugin(AirflowPlugin):
    name = "mlcicd"
    operator_extra_links = [MlflowRunLink(), DataDocsLink(), ShiftReportLink(), ScanReportLink()]
    fastapi_apps = [{"app": _data_docs_app(), "url_prefix": DATA_DOCS_URL_PREFIX, "name": "mlcicd data docs"}]
