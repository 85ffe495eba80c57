"""Retrain, check and ship the model: data checks, training, a metric gate, deployment.

### Stages
0. **reconcile_serving**: what the deploy target serves must be what `@champion` names: an
   interrupted promotion is finished, any other difference is settled by deploying the champion
   again, and what cannot be repaired stops the run with what to do.
1. **ingest_data**: read the batch named by `dataset_uri` (CSV/Parquet path or URI, or the built-in
   `synthetic:` generator), check the target, store it under the run's folder with a digest.
2. **validate_data**: hold the batch to its Great Expectations contract (columns, types, target,
   nulls, plausible values, known categories, duplicates: a failure stops the run) and report its
   shift from the profile of the champion's training batch (ranges, means, category shares: never
   blocking). The suite is declared in `include/suites/` or inferred; the report links from the task.
3. **train_model**: fit a scikit-learn Pipeline and log params, metrics, dataset, model with
   signature and code version to MLflow.
4. **evaluate_candidate**: score candidate and champion (`@champion` alias) on the same holdout;
   paired bootstrap interval of the metric difference; ROC and confusion-matrix plots. A champion
   that cannot be loaded or scored stops the run: the gate fails closed.
5. **decide_promotion**: thresholds must hold and the candidate must not be worse than the
   champion by more than `max_degradation` (lower CI bound). The decision is logged to MLflow.
6. **register_model → build_image → deploy_model → promote_champion** on promotion: register,
   alias `challenger`, build the model-server image (docker and kubernetes targets), deploy with a
   smoke test (a failure rolls back) and move `champion`, under one (target, model) lock and only
   if it still names the version replaced; `promote_champion` checks it and drops `challenger`.
   **record_rejection** otherwise: the champion is untouched.

Every param below is validated on trigger (UI form, REST API or `python -m mlcicd run`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from mlcicd import settings
from mlcicd.assets import RETRAIN_REQUEST
from mlcicd.dag_params import retrain_params
from mlcicd.links import DataDocsLink, MlflowRunLink, ShiftReportLink
from mlcicd.names import DECISION_XCOM, Task
from mlcicd.tasks import retrain, ship
from mlcicd.tasks.params import params_of

if TYPE_CHECKING:
    from airflow.sdk import Context

SERVICE_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=20)}

_cron = settings.load().retrain_schedule
# Time-scheduled and on retrain requests from ml_monitor; requests only when the time schedule is off.
SCHEDULE = (
    AssetOrTimeSchedule(timetable=CronTriggerTimetable(_cron, timezone="UTC"), assets=RETRAIN_REQUEST)
    if _cron
    else [RETRAIN_REQUEST]
)


@dag(
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={"owner": "mlcicd", "retries": 0},
    params=retrain_params(),
    tags=["mlcicd", "retraining"],
    doc_md=__doc__,
    description=__doc__.split("\n")[0],
)
def ml_retrain() -> None:
    @task(task_id=Task.RECONCILE, **SERVICE_RETRIES)
    def reconcile_serving(**context: Any) -> dict[str, Any]:
        """Check that what serves is what @champion names; finish or undo what an earlier run left."""
        return ship.reconcile(context["run_id"], params_of(context))

    @task
    def ingest_data(**context: Any) -> dict[str, Any]:
        """Read, check and store the batch."""
        run_date = context.get("logical_date") or context["dag_run"].run_after
        return retrain.ingest(context["run_id"], params_of(context), run_date)

    @task
    def validate_data(batch: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Validate the batch with its Great Expectations suite."""
        return retrain.validate(context["run_id"], batch, params_of(context))

    @task
    def train_model(batch: dict[str, Any], validation: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Train the candidate pipeline, tracked in MLflow."""
        return retrain.train(context["run_id"], batch, params_of(context), validation)

    @task
    def evaluate_candidate(batch: dict[str, Any], trained: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Score candidate and champion on the same holdout."""
        return retrain.evaluate(context["run_id"], batch, trained, params_of(context))

    @task.branch
    def decide_promotion(trained: dict[str, Any], evaluated: dict[str, Any], **context: Context) -> str:
        """Apply the promotion gate and branch on its decision."""
        decision = retrain.decide(context["run_id"], trained, evaluated, params_of(context))
        context["ti"].xcom_push(key=DECISION_XCOM, value=decision)
        return Task.REGISTER if decision["promote"] else Task.REJECT

    @task(task_id=Task.REGISTER, **SERVICE_RETRIES)
    def register_model(trained: dict[str, Any], decision: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Register the candidate and alias it challenger."""
        return ship.register(context["run_id"], trained, decision, params_of(context))

    @task(**SERVICE_RETRIES)
    def build_image(release: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Build the model-server image for targets that run one (docker, kubernetes)."""
        return ship.build_image(context["run_id"], release, params_of(context))

    @task(**SERVICE_RETRIES)
    def deploy_model(
        release: dict[str, Any],
        image: dict[str, Any],
        trained: dict[str, Any],
        batch: dict[str, Any],
        **context: Any,
    ) -> dict[str, Any]:
        """Deploy the challenger and smoke-test it; roll back on failure."""
        return ship.deploy(context["run_id"], release, image, trained, batch, params_of(context))

    @task(**SERVICE_RETRIES)
    def promote_champion(
        release: dict[str, Any], deployment: dict[str, Any], **context: Any
    ) -> dict[str, Any]:
        """Move the champion alias to the deployed version."""
        return ship.promote(context["run_id"], release, deployment)

    @task(task_id=Task.REJECT)
    def record_rejection(decision: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Record why the candidate was rejected."""
        return ship.reject(context["run_id"], decision, params_of(context))

    batch = ingest_data()
    reconcile_serving() >> batch
    validation = validate_data(batch)
    trained = train_model(batch, validation)
    evaluated = evaluate_candidate(batch, trained)
    validation.operator.operator_extra_links = (DataDocsLink(), ShiftReportLink())
    trained.operator.operator_extra_links = (MlflowRunLink(),)
    evaluated.operator.operator_extra_links = (MlflowRunLink(),)
    branch = decide_promotion(trained, evaluated)
    release = register_model(trained, branch[DECISION_XCOM])
    image = build_image(release)
    deployment = deploy_model(release, image, trained, batch)
    promote_champion(release, deployment)
    record_rejection(branch[DECISION_XCOM])


dag = ml_retrain()

if __name__ == "__main__":
    dag.test()
