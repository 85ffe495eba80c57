"""The one error boundary of every task, and what tasks leave behind (run record, XComs, links).

Failures the user must fix (:class:`~mlcicd.errors.MlcicdError`) become Airflow's non-retried
``AirflowFailException``; anything else propagates and may be retried.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlcicd import record
from mlcicd.errors import MlcicdError
from mlcicd.names import ERROR_XCOM, LINKS_XCOM
from mlcicd.settings import Settings, load

log = logging.getLogger("mlcicd")


def run_dir(settings: Settings, run_id: str) -> Path:
    return record.run_dir(settings.runs_dir, run_id)


@contextlib.contextmanager
def stage(run_id: str, name: str) -> Iterator[Settings]:
    """Record a stage's start, end and error; turn user-fixable errors into non-retried failures."""
    try:
        settings = load()
    except MlcicdError as exc:  # a bad setting: nowhere to record it yet, and no retry will mend it
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{name}: {exc}") from exc
    path = run_dir(settings, run_id)
    started = time.time()
    _reset_peak_memory()
    _RUNNING[name] = {"state": "running", "started_at": started}
    record.update(path, run_id=run_id, stages={name: _RUNNING[name]})

    def finished(state: str) -> dict[str, Any]:
        done = {k: v for k, v in _RUNNING.pop(name, {}).items() if k == "rows"}
        return {
            name: {
                "state": state,
                "seconds": round(time.time() - started, 2),
                **done,
                "peak_memory_mb": _peak_memory_mb(),
            }
        }

    try:
        yield settings
    except Exception as exc:
        error = {
            "stage": name,
            "kind": getattr(exc, "kind", "error"),
            "message": str(exc) if isinstance(exc, MlcicdError) else f"{type(exc).__name__}: {exc}",
            **(getattr(exc, "details", None) or {}),
        }
        record.update(path, stages=finished("failed"), error=error)
        xcom_push(ERROR_XCOM, error)  # REST clients (mlcicd trigger) show it
        if not isinstance(exc, MlcicdError):
            raise  # may be transient: Airflow's retries apply
        log.error("%s failed: %s", name, exc)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{name}: {exc}") from exc
    record.update(path, stages=finished("success"))


_RUNNING: dict[str, dict[str, Any]] = {}  # this process's stages in progress


def working_on(run_id: str, name: str, rows: int) -> None:
    """Say how many rows the stage ``name`` is working on: the run record keeps it, and
    ``mlcicd run`` shows it while the stage runs and when it ends."""
    info = _RUNNING.setdefault(name, {"state": "running", "started_at": time.time()})
    info["rows"] = int(rows)
    record.update(run_dir(load(), run_id), stages={name: dict(info)})


def _reset_peak_memory() -> None:
    """Start this process's peak resident memory (VmHWM) afresh, so that each stage reports its own:
    under ``mlcicd run`` every task runs in one process (Linux 4.0+; elsewhere the peak is the process's)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory since :func:`_reset_peak_memory`, in MB."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def xcom_push(key: str, value: Any) -> None:
    """Push an XCom from the running task; a no-op outside one (unit tests)."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:  # not inside a running task: nothing to push to
        return
    context["ti"].xcom_push(key=key, value=value)


def push_links(**links: str | None) -> None:
    """Leave UI links for this task (read by :mod:`mlcicd.dag.links` when the task ends)."""
    xcom_push(LINKS_XCOM, {k: v for k, v in links.items() if v})


def mlflow_client(settings: Settings) -> tuple[Any, str]:
    """The MLflow client of the installation and the id of its experiment (created if missing)."""
    from mlcicd import registry

    c = registry.client(settings.tracking_uri, settings.registry_uri)
    return c, registry.ensure_experiment(c, settings.experiment_name, settings.artifact_root)
