"""Watch the served model: drift of logged predictions and decay against labels; request a retrain.

### Stages
1. **evaluate_window**: read the window's prediction log, compare each feature and the predicted
   class with the champion's training reference (KS test for numeric, chi-square for categorical,
   each with an effect-size floor), compare live accuracy on labelled predictions with the
   accuracy recorded at promotion, write an HTML drift report to MLflow (link on the task).
2. **decide_retrain**: the guarded policy: drift or decay in `consecutive_windows` windows in a
   row, each with at least `min_predictions`, and `cooldown_hours` since the last retrain.
3. **request_retrain**: emits an event on the `mlcicd_retrain_request` Asset, which `ml_retrain`
   is scheduled on; the event's extra holds the reason and `retrain_conf`.

Empty windows, too little traffic, malformed log lines and a champion without a recorded
reference are logged and never lead to a retrain.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow import sdk
from airflow.sdk import task

from mlcicd import project as project_files
from mlcicd import settings
from mlcicd.dag.assets import retrain_request
from mlcicd.dag.links import MlflowRunLink
from mlcicd.dag.params import buildable, monitor_params
from mlcicd.names import MONITOR_DAG
from mlcicd.tasks import monitor

if TYPE_CHECKING:
    from mlcicd.project import Project


_settings = settings.load()


def build_dag(project: Project | None = None) -> Any:
    """``ml_monitor``, or a model project's monitor DAG (``ml_monitor__<model>``): the same tasks."""
    doc = __doc__ if project is None else f"{__doc__}\n{project.doc_md()}"
    requests = retrain_request(project.name if project else None)

    @sdk.dag(
        dag_id=project.monitor_dag_id if project else MONITOR_DAG,
        schedule=_settings.monitor_schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=1),
        default_args={"owner": "mlcicd", "retries": 0},
        params=monitor_params(project),
        tags=["mlcicd", "monitoring", *([f"project:{project.name}"] if project else [])],
        doc_md=doc,
        description=doc.split("\n")[0]
        if project is None
        else f"Watch the served {project.name}: drift, decay, retrain requests.",
    )
    def ml_monitor() -> None:
        @task
        def evaluate_window(**context: Any) -> dict[str, Any]:
            """Test the window for drift and decay; apply the retrain policy."""
            given = context["params"].get("window_end")
            end = (
                datetime.fromisoformat(given)
                if given
                else context.get("data_interval_end") or datetime.now(UTC)
            )
            end = end if end.tzinfo else end.replace(tzinfo=UTC)  # a window_end without an offset is UTC
            return monitor.monitor_window(context["run_id"], context["params"], end)

        @task.short_circuit
        def decide_retrain(report: dict[str, Any]) -> bool:
            """Go on to the retrain request only when the policy says so."""
            return bool(report["decision"]["retrain"])

        @task(outlets=[requests])
        def request_retrain(report: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Emit the retrain request event with its reason."""
            extra = monitor.retrain_request(report, context["params"])
            context["outlet_events"][requests].extra = extra
            return extra

        report = evaluate_window()
        report.operator.operator_extra_links = (MlflowRunLink(),)
        decide_retrain(report) >> request_retrain(report)

    return ml_monitor()


dag = build_dag()
for _project in buildable(project_files.load_valid(_settings.projects, settings.PROJECT_ROOT)):
    globals()[_project.monitor_dag_id] = build_dag(_project)

if __name__ == "__main__":
    dag.test()
