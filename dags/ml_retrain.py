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
3. **plan_search → train_candidate (one per candidate) → select_candidate** when `search` asks for
   candidates (a preset or a JSON space): each is fitted on the training part less a validation
   split and compared on that split (never on the gate's holdout), as a child of the run's MLflow
   parent run; a failed candidate is recorded, the best goes on. **train_model**: fit the
   scikit-learn Pipeline (the chosen hyperparameters on the whole training part, or the run's own
   with `search=none`) and log params, metrics, dataset, model with signature and code version.
4. **evaluate_candidate**: score candidate and champion (`@champion` alias) on the same holdout;
   interval of the paired metric difference (DeLong for ROC AUC, bootstrap otherwise); ROC and
   confusion-matrix plots. A champion that cannot be loaded or scored stops the run: the gate
   fails closed.
5. **decide_promotion**: thresholds must hold and the candidate must not be worse than the
   champion by more than `max_degradation` (lower CI bound). The decision is logged to MLflow.
6. **register_model → build_image → deploy_model** on promotion: register, alias `challenger`,
   build the model-server image (docker and kubernetes targets), start it beside the champion behind
   the traffic front and smoke-test it directly (a failure stops it; the champion keeps serving).
   `rollout=canary` gives it the first traffic step; `shadow` a copy of live traffic.
7. **analyze_rollout** (a rescheduling sensor): each step's measurements (error rate, p99 latency,
   prediction shift against the champion) advance, finish, or abort (traffic back to 0 %).
   `switch` passes at once.
8. **needs_approval → approve_rollout** when `approval` is on: a human-in-the-loop branch in the UI's
   Required Actions; Reject or no answer in time → **abort_rollout**.
9. **promote_champion**: all traffic to the candidate, the old version drains and stops, and
   `champion` moves, under the (target, model) lock and only if it still names the version the
   gate judged against. **record_rejection** when the gate says no: the champion is untouched.

Every param below is validated on trigger (UI form, REST API or `python -m mlcicd run`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow import sdk
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, PokeReturnValue, task

from mlcicd import project as project_files
from mlcicd import settings
from mlcicd.conf.run import asked_params, params_of
from mlcicd.dag.approval import approval_operator
from mlcicd.dag.assets import retrain_request
from mlcicd.dag.links import DataDocsLink, MlflowRunLink, ScanReportLink, ShiftReportLink
from mlcicd.dag.params import buildable, retrain_params
from mlcicd.names import APPROVAL_XCOM, DECISION_XCOM, RETRAIN_DAG, Task
from mlcicd.tasks import retrain, rollout, scan, search, ship

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlcicd.project import Project

SERVICE_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=20)}
# Tasks that talk to the deploy target (Docker engine, cluster, traffic front) go to their own queue:
# on the CeleryExecutor only that queue's workers hold the Docker socket; other executors ignore it.
# Read once at parse: the queue, the schedule, the search's parallelism, the approval's timeout.
_settings = settings.load()
DEPLOY = {"queue": _settings.deploy_queue}
ANALYSIS_POKE_S = 5  # the sensor's check; it measures when the run's rollout_interval_s is due


def schedule(model: str | None) -> Any:
    """Time-scheduled and on retrain requests from the model's monitor; requests only when the time schedule is off."""
    cron, requests = _settings.retrain_schedule, retrain_request(model)
    if cron:
        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=requests)
    return [requests]


def build_dag(project: Project | None = None) -> Any:
    """``ml_retrain``, or a model project's retrain DAG (``ml_retrain__<model>``): the same tasks."""
    doc = __doc__ if project is None else f"{__doc__}\n{project.doc_md()}"

    @sdk.dag(
        dag_id=project.retrain_dag_id if project else RETRAIN_DAG,
        schedule=schedule(project.name if project else None),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=2),
        default_args={"owner": "mlcicd", "retries": 0},
        params=retrain_params(project),
        tags=["mlcicd", "retraining", *([f"project:{project.name}"] if project else [])],
        doc_md=doc,
        description=doc.split("\n")[0]
        if project is None
        else f"Retrain, check and ship {project.name} ({project.root}).",
    )
    def ml_retrain() -> None:
        @task(task_id=Task.RECONCILE, **SERVICE_RETRIES, **DEPLOY)
        def reconcile_serving(**context: Any) -> dict[str, Any]:
            """Check that what serves is what @champion names; finish or undo what an earlier run left."""
            return ship.reconcile(context["run_id"], asked_params(context))

        @task
        def ingest_data(**context: Any) -> dict[str, Any]:
            """Read, check and store the batch."""
            run_date = context.get("logical_date") or context["dag_run"].run_after
            return retrain.ingest(context["run_id"], params_of(context), run_date)

        @task
        def validate_data(batch: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Validate the batch with its Great Expectations suite."""
            return retrain.validate(context["run_id"], batch, params_of(context))

        @task(task_id=Task.PLAN_SEARCH)
        def plan_search(
            batch: dict[str, Any], validation: dict[str, Any], **context: Any
        ) -> list[dict[str, Any]]:
            """Draw the search's candidates (none with search=none) and split off their validation rows."""
            return search.plan(context["run_id"], batch, params_of(context))

        @task(task_id=Task.TRAIN_CANDIDATE, max_active_tis_per_dagrun=_settings.search_parallelism)
        def train_candidate(
            batch: dict[str, Any], candidate: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Fit one candidate and score it on the validation rows (a child MLflow run)."""
            return search.train_candidate(context["run_id"], batch, candidate, params_of(context))

        @task(task_id=Task.SELECT, trigger_rule="none_failed")
        def select_candidate(
            planned: list[dict[str, Any]], results: list[dict[str, Any]], **context: Any
        ) -> dict[str, Any]:
            """Choose the best candidate by its validation metric."""
            return search.select(context["run_id"], planned, results)

        @task
        def train_model(
            batch: dict[str, Any], validation: dict[str, Any], selected: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Train the candidate pipeline, tracked in MLflow."""
            return retrain.train(context["run_id"], batch, params_of(context), validation, selected)

        @task
        def evaluate_candidate(
            batch: dict[str, Any], trained: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Score candidate and champion on the same holdout."""
            return retrain.evaluate(context["run_id"], batch, trained, params_of(context))

        @task(task_id=Task.SCAN)
        def scan_model(
            batch: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Scan candidate and champion for hidden weaknesses (weak slices, fragility, leakage)."""
            return scan.scan_model(context["run_id"], batch, trained, evaluated, params_of(context))

        @task.branch
        def decide_promotion(
            trained: dict[str, Any], evaluated: dict[str, Any], scanned: dict[str, Any], **context: Context
        ) -> str:
            """Apply the promotion gate and branch on its decision."""
            decision = retrain.decide(context["run_id"], trained, evaluated, params_of(context), scanned)
            context["ti"].xcom_push(key=DECISION_XCOM, value=decision)
            return Task.REGISTER if decision["promote"] else Task.REJECT

        @task(task_id=Task.REGISTER, **SERVICE_RETRIES)
        def register_model(
            trained: dict[str, Any], decision: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Register the candidate and alias it challenger."""
            return ship.register(context["run_id"], trained, decision, params_of(context))

        @task(**SERVICE_RETRIES, **DEPLOY)
        def build_image(release: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Build the model-server image for targets that run one (docker, kubernetes)."""
            return ship.build_image(context["run_id"], release, params_of(context))

        @task(**SERVICE_RETRIES, **DEPLOY)
        def deploy_model(
            release: dict[str, Any],
            image: dict[str, Any],
            trained: dict[str, Any],
            batch: dict[str, Any],
            **context: Any,
        ) -> dict[str, Any]:
            """Deploy the challenger and smoke-test it; roll back on failure."""
            return ship.deploy(context["run_id"], release, image, trained, batch, params_of(context))

        @task.sensor(
            task_id=Task.ANALYZE, poke_interval=ANALYSIS_POKE_S, mode="reschedule", timeout=6 * 3600, **DEPLOY
        )
        def analyze_rollout(deployment: dict[str, Any], **context: Any) -> PokeReturnValue:
            """Measure the candidate against the champion on live traffic; advance, finish or abort."""
            done, view = rollout.analyze(context["run_id"], params_of(context))
            return PokeReturnValue(is_done=done, xcom_value=view)

        @task.branch(task_id=Task.ASK_APPROVAL)
        def needs_approval(**context: Any) -> str:
            """Ask a human before the last traffic step when the run says so."""
            return rollout.needs_approval(params_of(context))

        @task(task_id=Task.PROMOTE, trigger_rule="none_failed_min_one_success", **SERVICE_RETRIES, **DEPLOY)
        def promote_champion(
            release: dict[str, Any], deployment: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            """Give the candidate all traffic and move the champion alias to it."""
            return ship.promote(context["run_id"], release, deployment, params_of(context))

        @task(task_id=Task.ABORT, **DEPLOY)
        def abort_rollout(**context: Any) -> dict[str, Any]:
            """The rollout was rejected (or nobody answered): take the candidate out."""
            approval = context["ti"].xcom_pull(task_ids=Task.APPROVE, key=APPROVAL_XCOM)
            return rollout.abort(context["run_id"], params_of(context), approval)

        @task(task_id=Task.REJECT)
        def record_rejection(decision: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Record why the candidate was rejected."""
            return ship.reject(context["run_id"], decision, params_of(context))

        batch = ingest_data()
        reconcile_serving() >> batch
        validation = validate_data(batch)
        planned = plan_search(batch, validation)
        selected = select_candidate(planned, train_candidate.partial(batch=batch).expand(candidate=planned))
        trained = train_model(batch, validation, selected)
        selected.operator.operator_extra_links = (MlflowRunLink(),)
        evaluated = evaluate_candidate(batch, trained)
        validation.operator.operator_extra_links = (DataDocsLink(), ShiftReportLink())
        trained.operator.operator_extra_links = (MlflowRunLink(),)
        evaluated.operator.operator_extra_links = (MlflowRunLink(),)
        scanned = scan_model(batch, trained, evaluated)
        scanned.operator.operator_extra_links = (ScanReportLink(),)
        branch = decide_promotion(trained, evaluated, scanned)
        release = register_model(trained, branch[DECISION_XCOM])
        image = build_image(release)
        deployment = deploy_model(release, image, trained, batch)
        asked = analyze_rollout(deployment) >> needs_approval()
        approval = approval_operator(_settings.approval_timeout_minutes)
        asked >> [approval, promoted := promote_champion(release, deployment)]
        approval >> [promoted, abort_rollout()]
        record_rejection(branch[DECISION_XCOM])

    return ml_retrain()


dag = build_dag()
for _project in buildable(project_files.load_valid(_settings.projects, settings.PROJECT_ROOT)):
    globals()[_project.retrain_dag_id] = build_dag(_project)

if __name__ == "__main__":
    dag.test()
