"""The scheduler guard of mlcicd.plugin.resume_race: installed once, by the plugin's listener, for scheduler jobs
only; its filter (``stale_resume_exits``) drops exactly the stale ``success`` events, read against real task
instances in an Airflow metadata database of the test's own. Its effect, a quickly answered approval that no
longer fails, is tested against a real scheduler in tests/e2e/test_trigger.py (answer_the_moment_it_asks),
which meets the race about 3 times in 4; the filter's tests here do not depend on it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from mlcicd.plugin import resume_race

SCRIPT = textwrap.dedent("""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from mlcicd.plugin.registration import MlcicdPlugin

    original = SchedulerJobRunner._process_executor_events
    [guard] = MlcicdPlugin.listeners
    guard.on_starting(component=object())  # a task runner or anything not a job: nothing installed
    assert SchedulerJobRunner._process_executor_events is original

    from airflow.jobs.job import Job
    guard.on_starting(component=Job.__new__(Job))
    wrapped = SchedulerJobRunner._process_executor_events
    assert wrapped is not original and wrapped.__closure__[0].cell_contents is original
    guard.on_starting(component=Job.__new__(Job))  # a second job in the process: not wrapped twice
    assert SchedulerJobRunner._process_executor_events is wrapped
    print("ok")
""")


def test_the_plugin_installs_the_guard_once_and_only_for_jobs():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_the_guard_is_installed_only_on_the_versions_it_was_checked_against():
    script = textwrap.dedent("""
        import airflow
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from mlcicd.plugin import resume_race

        original = SchedulerJobRunner._process_executor_events
        airflow.__version__ = "3.3.3"  # a patch release the guard was not read against
        assert resume_race.install() is False and SchedulerJobRunner._process_executor_events is original
        airflow.__version__ = "3.3.2"
        assert resume_race.install() is True and SchedulerJobRunner._process_executor_events is not original
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


# The filter, against real task instances. Each case is one run of a one-task DAG: the task instance as the
# database holds it (state, next_method, try) and the executor's pending event for it (state, try).
# Dropped: only a success of the very try that is queued or running again after a resume.
RESUME = "execute_complete"  # the next_method of a task resumed from awaiting_input or deferred
S = TaskInstanceState
CASES = {
    "resumed_queued":       (S.QUEUED,         RESUME, 1, S.SUCCESS, 1, True),
    "resumed_running":      (S.RUNNING,        RESUME, 1, S.SUCCESS, 1, True),
    "queued_not_resumed":   (S.QUEUED,         None,   1, S.SUCCESS, 1, False),
    "running_not_resumed":  (S.RUNNING,        None,   1, S.SUCCESS, 1, False),
    "resumed_scheduled":    (S.SCHEDULED,      RESUME, 1, S.SUCCESS, 1, False),  # Airflow's own check has it
    "awaiting_input":       (S.AWAITING_INPUT, RESUME, 1, S.SUCCESS, 1, False),  # not answered yet
    "deferred":             (S.DEFERRED,       RESUME, 1, S.SUCCESS, 1, False),
    "finished":             (S.SUCCESS,        None,   1, S.SUCCESS, 1, False),
    "resumed_failed_event": (S.QUEUED,         RESUME, 1, S.FAILED,  1, False),
    "resumed_later_try":    (S.QUEUED,         RESUME, 2, S.SUCCESS, 1, False),  # an earlier try's exit
}  # fmt: skip
DAG_ID, TASK_ID = "guarded", "approve_rollout"


@pytest.fixture(scope="module")
def metadata_db(tmp_path_factory):
    """A session factory on an Airflow metadata database (SQLite, foreign keys enforced) made as
    ``airflow db migrate`` makes a new one, holding a run of a one-task DAG per case of CASES."""
    from datetime import UTC, datetime

    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.db import add_default_pool_if_not_exists, synchronize_log_template
    from airflow.utils.orm_event_handlers import setup_event_handlers
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('airflow') / 'airflow.db'}")
    setup_event_handlers(engine)  # Airflow's own connection set-up: SQLite's foreign keys on
    import_all_models()
    Base.metadata.create_all(engine)  # what `airflow db migrate` does on an empty database (then stamps it)
    make_session = sessionmaker(engine, expire_on_commit=False)
    with make_session() as session:
        synchronize_log_template(session=session)
        add_default_pool_if_not_exists(session=session)
        session.add(DagBundleModel(name="tests"))
        with DAG(DAG_ID, schedule=None, start_date=datetime(2025, 1, 1, tzinfo=UTC)) as dag:
            EmptyOperator(task_id=TASK_ID)
        update_dag_parsing_results_in_db(
            "tests", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
        scheduler_dag = SerializedDagModel.get_dag(DAG_ID, session=session)
        for case, (state, next_method, try_number, *_) in CASES.items():
            scheduler_dag.create_dagrun(
                run_id=f"manual__{case}",
                run_after=datetime(2025, 1, 2, tzinfo=UTC),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST,
                state=DagRunState.RUNNING,
                session=session,
            )
            ti = session.scalars(select(TaskInstance).where(TaskInstance.run_id == f"manual__{case}")).one()
            ti.state, ti.next_method, ti.try_number = state, next_method, try_number
            ti.next_kwargs = {} if next_method else None
        session.commit()
    return make_session


def ti_key(case: str, try_number: int) -> TaskInstanceKey:
    return TaskInstanceKey(DAG_ID, TASK_ID, f"manual__{case}", try_number, -1)


def executor_with(events: dict[Any, str]) -> Any:
    """A real executor whose pending events are ``events`` (key -> "success" or "failed"), reported as
    its workers report them."""
    from airflow.executors.base_executor import BaseExecutor

    executor = BaseExecutor()
    for key, outcome in events.items():
        (executor.success if outcome == "success" else executor.fail)(key, info=f"exit of {key}")
    return executor


def not_task_events() -> dict[Any, str]:
    """Success events of other workloads: their states equal TaskInstanceState.SUCCESS as strings."""
    from airflow.models.callback import CallbackKey
    from airflow.models.connection_test import ConnectionTestKey

    return {CallbackKey(id="callback-1"): "success", ConnectionTestKey(id="connection-test-1"): "success"}


def event_of(case: str) -> tuple[TaskInstanceKey, str]:
    *_, event_state, event_try, _dropped = CASES[case]
    return ti_key(case, event_try), event_state.value


@pytest.mark.parametrize("case", CASES)
def test_the_filter_drops_a_success_only_when_its_task_was_resumed_in_the_same_try(metadata_db, case):
    key, outcome = event_of(case)
    executor = executor_with({key: outcome, **not_task_events()})
    before = dict(executor.event_buffer)
    with metadata_db() as session:
        dropped = resume_race.stale_resume_exits(executor, session)
    expected = [key] if CASES[case][-1] else []
    assert dropped == expected
    assert executor.event_buffer == {k: v for k, v in before.items() if k not in expected}


def test_the_filter_reads_every_pending_event_at_once_and_keeps_the_others(metadata_db):
    """All cases in one buffer, as the scheduler reads it (one query over several runs), with a success of a
    task instance the database does not hold and other workloads' successes: exactly the stale ones go."""
    events = dict(event_of(case) for case in CASES)
    events |= {ti_key("never_created", 1): "success", **not_task_events()}
    executor = executor_with(events)
    before = dict(executor.event_buffer)
    with metadata_db() as session:
        dropped = resume_race.stale_resume_exits(executor, session)
    stale = [ti_key(case, CASES[case][4]) for case in CASES if CASES[case][-1]]
    assert dropped == stale and len(stale) == 2
    assert executor.event_buffer == {k: v for k, v in before.items() if k not in stale}
    with metadata_db() as session:
        assert resume_race.stale_resume_exits(executor, session) == []  # what is left stays left


def test_without_a_pending_task_success_the_filter_does_not_query():
    """It runs before every read of the executor's events: with no task success pending it costs no query
    (a session that cannot query proves it)."""
    executor = executor_with({ti_key("resumed_queued", 1): "failed", **not_task_events()})
    before = dict(executor.event_buffer)
    assert resume_race.stale_resume_exits(executor, session=None) == []
    assert executor.event_buffer == before
