"""A real Airflow (API server, scheduler, DAG processor) on loopback over the project's DAGs.

Used by ``python -m mlcicd airflow`` (the Airflow UI on the embedded default), by the tests of the
trigger client and by the benchmark. SQLite metadata DB, LocalExecutor with small parallelism,
SimpleAuthManager with one admin user. Stopped with SIGINT (SIGTERM leaves components orphaned).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcicd import ports
from mlcicd.names import RETRAIN_DAG
from mlcicd.settings import airflow_env

COMPONENTS = ("api-server", "scheduler", "dag-processor")
USER = "admin"


@dataclass
class AirflowServer:
    url: str
    home: Path
    env: dict[str, str]
    password: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def token(self) -> str:
        import requests

        r = requests.post(
            f"{self.url}/auth/token", json={"username": USER, "password": self.password}, timeout=10
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def get(self, path: str) -> Any:
        import requests

        r = requests.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token()}"}, timeout=10)
        r.raise_for_status()
        return r.json()


def free_port() -> int:
    return ports.free_port("127.0.0.1")


def jwt_secret(home: Path) -> str:
    """This Airflow home's token-signing secret: random, made once, readable by its owner only
    (a fixed one would let anyone who reads this file sign tokens for the UI and the reports)."""
    import secrets

    path = home / "jwt_secret"
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made before, or by a start at the same moment
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    for _ in range(50):  # the other start may still be writing it
        if secret := path.read_text().strip():
            return secret
        time.sleep(0.05)
    raise RuntimeError(f"{path} is empty: remove it and start again")


def server_env(home: Path, port: int, password: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every component; a caller's AIRFLOW_*, MLCICD_* and MLFLOW_* are replaced."""
    url = f"http://127.0.0.1:{port}"
    # MLFLOW_* too: mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI into the calling process.
    # The port shard is the machine's, not the caller's configuration: it stays.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MLCICD_", "MLFLOW_")) or k == ports.SHARD_ENV
    }
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            **airflow_env(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret(home),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # The scheduler serves task logs (LocalExecutor) on 8793 by default: a second Airflow on the
            # machine (another project's, or the tests' other worker) would find it taken.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    env.update(extra or {})
    return env


def start(
    home: Path,
    *,
    port: int | None = None,
    password: str = "admin",
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 180,
    wait_for_dag: str = RETRAIN_DAG,
) -> AirflowServer:
    """Migrate the DB, start the components, wait until they are healthy and the DAG is served."""
    import requests

    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps({USER: password}))
    port = port or free_port()
    env = server_env(home, port, password, extra_env)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    server = AirflowServer(f"http://127.0.0.1:{port}", home, env, password)
    for component in COMPONENTS:
        log = open(home / f"{component}.log", "ab")  # noqa: SIM115 - owned by the child
        server.procs.append(
            subprocess.Popen(
                [airflow, component], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        log.close()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(requests.RequestException, KeyError):
                h = requests.get(f"{server.url}/api/v2/monitor/health", timeout=5).json()
                if h["scheduler"]["status"] == "healthy" and h["dag_processor"]["status"] == "healthy":
                    r = requests.get(
                        f"{server.url}/api/v2/dags/{wait_for_dag}",
                        headers={"Authorization": f"Bearer {server.token()}"},
                        timeout=5,
                    )
                    if r.status_code == 200:
                        return server
            exited = [c for c, p in zip(COMPONENTS, server.procs, strict=True) if p.poll() is not None]
            if exited:
                raise RuntimeError(f"airflow {', '.join(exited)} exited; see the logs in {home}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Airflow did not become ready in {timeout_s:.0f} s; see the logs in {home}"
                )
            time.sleep(1)
    except BaseException:
        stop(server)
        raise


def stop(server: AirflowServer, timeout_s: float = 30) -> None:
    """SIGINT each component, then kill what is left of their process groups (workers, serve-logs)."""
    for p in server.procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGINT)
    for p in server.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
