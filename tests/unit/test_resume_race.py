"""The scheduler guard of mlcicd.resume_race: installed once, by the plugin's listener, for scheduler jobs
only. Its effect, a quickly answered approval that no longer fails, is tested against a real scheduler in
tests/e2e/test_trigger.py (answer_the_moment_it_asks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from mlcicd_plugin import MlcicdPlugin

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
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PLUGINS)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_the_guard_is_installed_only_on_the_versions_it_was_checked_against():
    script = textwrap.dedent("""
        import airflow
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from mlcicd import resume_race

        original = SchedulerJobRunner._process_executor_events
        airflow.__version__ = "3.3.3"  # a patch release the guard was not read against
        assert resume_race.install() is False and SchedulerJobRunner._process_executor_events is original
        airflow.__version__ = "3.3.2"
        assert resume_race.install() is True and SchedulerJobRunner._process_executor_events is not original
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
