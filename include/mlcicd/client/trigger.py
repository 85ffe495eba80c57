"""Start ``ml_retrain`` from CI through Airflow's REST API v2, wait for the verdict, map it to an exit code.

Uses the official ``apache-airflow-client``; the JWT comes from ``POST /auth/token``. Credentials
are read from the environment only (``MLCICD_AIRFLOW_USERNAME`` / ``MLCICD_AIRFLOW_PASSWORD``, or
``MLCICD_AIRFLOW_TOKEN``), never from the command line.

The run id is derived from the commit and the run conf, so a re-triggered CI job attaches to the
run it started before instead of training twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from mlcicd import conf as confs
from mlcicd import summary as run_summary
from mlcicd.choices import DEFAULT_MODEL_NAME
from mlcicd.errors import ConfigError, TriggerError
from mlcicd.names import (
    RETRAIN_DAG,
    ExitCode,
    Task,
)
from mlcicd.names import exit_code as outcome_exit_code

TERMINAL_RUN_STATES = {"success", "failed"}


@dataclass
class TriggerOptions:
    url: str
    dag_id: str = RETRAIN_DAG
    conf: dict[str, Any] = field(default_factory=dict)
    sha: str | None = None
    wait: bool = False
    timeout_s: float = 3600.0
    poll_s: float = 2.0
    unpause: bool = False
    accept_rejection: bool = False
    connect_attempts: int = 4
    mlflow_url: str | None = None
    model_name: str | None = None  # the DAG's model_name default (a model project's), when conf names none


def commit_sha(explicit: str | None = None) -> str:
    """The commit to attach the run to: explicit, the CI's variable, or ``git rev-parse HEAD``."""
    for value in (explicit, os.getenv("GITHUB_SHA"), os.getenv("CI_COMMIT_SHA"), os.getenv("GIT_COMMIT")):
        if value:
            return value
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise TriggerError(
            "no commit SHA: pass --sha, or run inside a git checkout or a CI job", ExitCode.USAGE
        ) from exc


def run_id_for(sha: str, conf: dict[str, Any]) -> str:
    """``ci__<sha12>__<conf digest>``: the same commit and data reference give the same run."""
    digest = hashlib.sha256(json.dumps(conf, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"ci__{sha[:12]}__{digest}"


def validate_conf(params: dict[str, Any], conf: dict[str, Any], dag_id: str = RETRAIN_DAG) -> None:
    """Check ``conf`` against the DAG's Param schemas as the server reports them (before sending)."""
    try:
        confs.check(conf, {key: (param or {}).get("schema") for key, param in params.items()}, dag_id)
    except ConfigError as exc:
        raise TriggerError(str(exc), ExitCode.USAGE) from exc


class Client:
    """The REST calls the trigger needs, over apache-airflow-client with a JWT."""

    def __init__(self, url: str, connect_attempts: int = 4) -> None:
        self.url = url.rstrip("/")
        self.connect_attempts = connect_attempts
        self.api: Any = None

    def login(self, username: str | None, password: str | None, token: str | None) -> None:
        import airflow_client.client as ac

        if not token:
            if not username or not password:
                raise TriggerError(
                    "no Airflow credentials: set MLCICD_AIRFLOW_USERNAME and MLCICD_AIRFLOW_PASSWORD "
                    "(or MLCICD_AIRFLOW_TOKEN) in the environment"
                )
            token = self._token(username, password)
        config = ac.Configuration(host=self.url, access_token=token)
        self.api = ac.ApiClient(config)

    def _token(self, username: str, password: str) -> str:
        import urllib3

        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
        delay, last = 1.0, ""
        for attempt in range(1, self.connect_attempts + 1):
            try:
                r = http.request(
                    "POST", f"{self.url}/auth/token", json={"username": username, "password": password}
                )
            except urllib3.exceptions.HTTPError as exc:
                last = str(exc)
            else:
                if r.status in (200, 201):
                    return r.json()["access_token"]
                if r.status in (401, 403):
                    raise TriggerError(
                        f"Airflow at {self.url} refused the credentials (HTTP {r.status}): check "
                        "MLCICD_AIRFLOW_USERNAME / MLCICD_AIRFLOW_PASSWORD"
                    )
                if r.status == 404:
                    raise TriggerError(
                        f"{self.url}/auth/token not found: is {self.url} an Airflow 3 API server?"
                    )
                last = f"HTTP {r.status}: {r.data[:200]!r}"
            if attempt < self.connect_attempts:
                time.sleep(delay)
                delay *= 2
        raise TriggerError(
            f"cannot reach Airflow at {self.url} after {self.connect_attempts} attempts ({last})"
        )

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import airflow_client.client as ac
        import urllib3

        try:
            return fn()
        except ac.ApiException as exc:
            if exc.status in (401, 403):
                raise TriggerError(f"{what}: Airflow refused the token (HTTP {exc.status})") from exc
            raise
        except urllib3.exceptions.HTTPError as exc:
            raise TriggerError(f"{what}: lost the connection to {self.url} ({exc})") from exc

    def dag(self, dag_id: str) -> Any:
        import airflow_client.client as ac

        try:
            return self._call("get DAG", lambda: ac.DAGApi(self.api).get_dag_details(dag_id))
        except ac.ApiException as exc:
            if exc.status == 404:
                known = self._call("list DAGs", lambda: ac.DAGApi(self.api).get_dags(limit=100)).dags
                names = ", ".join(sorted(d.dag_id for d in known)) or "(none)"
                raise TriggerError(f"unknown DAG {dag_id!r} on {self.url}; DAGs there: {names}") from exc
            raise

    def unpause(self, dag_id: str) -> None:
        import airflow_client.client as ac

        body = ac.DAGPatchBody(is_paused=False)
        self._call(
            "unpause DAG", lambda: ac.DAGApi(self.api).patch_dag(dag_id, body, update_mask=["is_paused"])
        )

    def run(self, dag_id: str, run_id: str) -> Any | None:
        import airflow_client.client as ac

        try:
            return self._call("get run", lambda: ac.DagRunApi(self.api).get_dag_run(dag_id, run_id))
        except ac.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def start(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> Any:
        import airflow_client.client as ac

        body = ac.TriggerDAGRunPostBody(
            dag_run_id=run_id, logical_date=None, conf=conf, note="started by mlcicd trigger"
        )
        return self._call("trigger run", lambda: ac.DagRunApi(self.api).trigger_dag_run(dag_id, body))

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        import airflow_client.client as ac

        tis = self._call(
            "list tasks", lambda: ac.TaskInstanceApi(self.api).get_task_instances(dag_id, run_id, limit=100)
        )
        return {ti.task_id: (ti.state.value if ti.state else None) for ti in tis.task_instances}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        import airflow_client.client as ac

        try:
            entry = self._call(
                "get XCom",
                lambda: ac.XComApi(self.api).get_xcom_entry(dag_id, task_id, run_id, key, deserialize=True),
            )
        except ac.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        value = entry.actual_instance.value if hasattr(entry, "actual_instance") else entry.value
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value


def connect(url: str, connect_attempts: int = 4) -> Client:
    """A logged-in client; credentials from the environment only."""
    client = Client(url, connect_attempts)
    client.login(
        os.getenv("MLCICD_AIRFLOW_USERNAME"),
        os.getenv("MLCICD_AIRFLOW_PASSWORD"),
        os.getenv("MLCICD_AIRFLOW_TOKEN"),
    )
    return client


def trigger(options: TriggerOptions, out: Callable[[str], None] = print) -> tuple[int, dict[str, Any]]:
    """Start (or attach to) the run for this commit; with ``wait``, follow it to the end.

    Returns:
        (exit code, summary). Raises TriggerError for failures before or while waiting.
    """
    client = connect(options.url, options.connect_attempts)
    dag = client.dag(options.dag_id)
    sha = commit_sha(options.sha)
    declared = dag.params or {}
    options = replace(options, model_name=(declared.get("model_name") or {}).get("value"))
    if "code_commit" in declared and "code_commit" not in options.conf:
        # A model project's DAG trains the commit CI tested, or refuses the run.
        options = replace(options, conf={**options.conf, "code_commit": sha})
    validate_conf(dag.params or {}, options.conf, options.dag_id)
    if dag.is_paused:
        if not options.unpause:
            raise TriggerError(
                f"DAG {options.dag_id} is paused on {client.url}: unpause it in the UI, or pass --unpause"
            )
        client.unpause(options.dag_id)
        out(f"unpaused {options.dag_id}")

    run_id = run_id_for(sha, options.conf)
    existing = client.run(options.dag_id, run_id)
    if existing is not None:
        out(f"attaching to {run_id} (already started for commit {sha[:12]}; state {existing.state.value})")
    else:
        client.start(options.dag_id, run_id, options.conf)
        out(f"started {run_id} for commit {sha[:12]}")
    link = f"{client.url}/dags/{options.dag_id}/runs/{quote(run_id, safe='')}"
    out(f"Airflow run: {link}")
    if not options.wait:
        return ExitCode.OK, {"run_id": run_id, "state": "started", "airflow_url": link}
    return follow(client, options, run_id, link, out)


def follow(
    client: Client, options: TriggerOptions, run_id: str, link: str, out: Callable[[str], None]
) -> tuple[int, dict[str, Any]]:
    started = time.monotonic()
    seen: dict[str, str | None] = {}
    while True:
        states = client.task_states(options.dag_id, run_id)
        for task_id, state in states.items():
            if seen.get(task_id) != state and state is not None:
                out(f"  {task_id:<20} {state}")
                if task_id == Task.APPROVE and state == "awaiting_input":
                    out(
                        f"  waiting for a human: answer in the UI (Browse > Required Actions) or with "
                        f"`python -m mlcicd approve|reject {run_id}`"
                    )
            seen[task_id] = state
        run = client.run(options.dag_id, run_id)
        state = run.state.value if run is not None and run.state else "unknown"
        if state in TERMINAL_RUN_STATES:
            break
        if time.monotonic() - started > options.timeout_s:
            raise TriggerError(
                f"timed out after {options.timeout_s:.0f} s waiting for {run_id} (state {state}); "
                f"the run goes on in Airflow: {link}"
            )
        time.sleep(options.poll_s)

    def xcom(task_id: str, key: str = "return_value") -> Any:
        return client.xcom(options.dag_id, run_id, task_id, key)

    model_name = options.conf.get("model_name") or options.model_name or DEFAULT_MODEL_NAME
    summary = run_summary.from_xcoms(xcom, run_id, state, seen, link, options.mlflow_url, model_name)
    summary["dag_id"] = options.dag_id
    return exit_code(summary, options.accept_rejection), summary


def exit_code(summary: dict[str, Any], accept_rejection: bool = False) -> int:
    return outcome_exit_code(summary["outcome"], rejection_fails=not accept_rejection)
