"""The Airflow plugin, registered through the ``airflow.plugins`` entry point of mlcicd's package
(pyproject.toml): installing mlcicd into an Airflow is enough, nothing goes into its plugins folder.

It registers mlcicd's operator extra links, serves the report pages inside the Airflow API server
(behind Airflow's login, under a sandboxing Content-Security-Policy: see mlcicd.plugin.webreports), and
installs in the scheduler the guard against a race that fails quickly answered approvals
(see mlcicd.plugin.resume_race)."""

from __future__ import annotations

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from mlcicd.dag.links import DataDocsLink, MlflowRunLink, ScanReportLink, ShiftReportLink
from mlcicd.settings import DATA_DOCS_URL_PREFIX, load


def _reports_app():
    from fastapi import Depends

    from mlcicd.plugin import webreports

    folder = load().data_docs_dir
    folder.mkdir(parents=True, exist_ok=True)
    return webreports.create_app(folder, dependencies=[Depends(webreports.airflow_reader)])


class SchedulerGuards:
    @hookimpl
    def on_starting(self, component: object) -> None:
        if type(component).__module__ == "airflow.jobs.job":  # a scheduler (or other) job, not a task
            from mlcicd.plugin import resume_race

            resume_race.install()


class MlcicdPlugin(AirflowPlugin):
    name = "mlcicd"
    operator_extra_links = [MlflowRunLink(), DataDocsLink(), ShiftReportLink(), ScanReportLink()]
    listeners = [SchedulerGuards()]
    fastapi_apps = [{"app": _reports_app(), "url_prefix": DATA_DOCS_URL_PREFIX, "name": "mlcicd reports"}]
