"""The ``local`` deploy target: each version served by a process on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlcicd.deploy.base import Deployment, SmokeTest, smoke_test, wait_healthy
from mlcicd.errors import DeployError
from mlcicd.ports import free_port, port_in_use
from mlcicd.release import Release, prepare_bundle
from mlcicd.settings import Settings


class LocalProcessTarget:
    """Serve each version as a process on this machine, the stable endpoint on a fixed port.

    Deploy = start the new version on a spare port, health- and smoke-test it there, then stop the
    old process and restart the new version on the stable port. If anything fails before the old
    process stops, it simply keeps serving; if the new one fails on the stable port, the old
    version is started again there.
    """

    name = "local"

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.settings = settings
        self.model_name = model_name
        self.root = settings.deployments_dir / "local" / model_name
        self.state_file = self.root / "current.json"
        self.host = settings.local_host
        self.port = settings.local_port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def current(self) -> Deployment | None:
        state = self._state()
        if not state or not _is_server(state.get("pid")):
            return None
        return Deployment(self.name, state["endpoint"], state["version"], state)

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        version_dir = self._prepare(release)
        previous = self._state()
        previous_alive = bool(previous) and _is_server(previous.get("pid"))
        if not previous_alive and port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is held by a process that is not this model's server; "
                "stop it or set MLCICD_LOCAL_PORT to a free port"
            )

        staging_port = free_port(self.host)
        staging = self._start(version_dir, staging_port)
        try:
            endpoint = f"http://{self.host}:{staging_port}"
            wait_healthy(
                endpoint, release.version, self.settings.health_timeout_s, lambda: _is_server(staging)
            )
            problems = smoke_test(endpoint, smoke)
        except DeployError as exc:
            problems = [str(exc)]
        finally:
            _stop(staging)
        if problems:
            still = (
                f"v{previous['version']} keeps serving at {self.endpoint}"
                if previous_alive
                else "nothing was serving before, and nothing serves now"
            )
            raise DeployError(
                f"v{release.version} failed its smoke test on a staging port and was not switched in; "
                f"{still}. Problems: " + "; ".join(problems) + f". Server log: {version_dir / 'server.log'}"
            )

        if previous_alive:
            _stop(previous["pid"])
        if port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} is held by another process; free it or set MLCICD_LOCAL_PORT"
            )
        pid = self._start(version_dir, self.port)
        try:
            wait_healthy(
                self.endpoint, release.version, self.settings.health_timeout_s, lambda: _is_server(pid)
            )
        except DeployError as exc:
            _stop(pid)
            if previous_alive:
                old = self._start(Path(previous["model_dir"]), self.port)
                self._write_state({**previous, "pid": old})
            raise DeployError(
                f"{exc}; rolled back to v{previous['version'] if previous else '(none)'}"
            ) from exc
        state = {
            "version": release.version,
            "pid": pid,
            "endpoint": self.endpoint,
            "model_dir": str(version_dir),
            "release": release.to_dict(),
            "previous_version": previous.get("version") if previous else None,
        }
        self._write_state(state)
        return Deployment(self.name, self.endpoint, release.version, state)

    @classmethod
    def stop_all(cls, settings: Settings) -> list[str]:
        """Stop the server of every model this target started; return the models' names."""
        stopped = []
        for state_file in (settings.deployments_dir / "local").glob("*/current.json"):
            target = cls(settings, state_file.parent.name)
            if target.current():
                stopped.append(target.model_name)
            target.stop()
        return stopped

    def stop(self) -> None:
        state = self._state()
        if state:
            _stop(state.get("pid"))
            self.state_file.unlink(missing_ok=True)

    def _prepare(self, release: Release) -> Path:
        return prepare_bundle(self.settings, release, self.root / f"v{release.version}")

    @property
    def prediction_log_dir(self) -> Path:
        return self.settings.predictions_for(self.model_name)

    def _start(self, version_dir: Path, port: int) -> int:
        log = open(version_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child process
        cmd = [
            sys.executable, "-m", self.settings.local_server_module,
            "--model-dir", str(version_dir), "--host", self.host, "--port", str(port),
        ]  # fmt: skip
        if port == self.port:  # only live traffic is logged, not the staging smoke test
            cmd += ["--prediction-log", str(self.prediction_log_dir)]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        log.close()
        return proc.pid

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)


def _is_server(pid: Any) -> bool:
    """Whether ``pid`` is a running model server (not a recycled pid)."""
    import psutil

    if not isinstance(pid, int):
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and "--model-dir" in p.cmdline()
    except psutil.Error:
        return False


def _stop(pid: Any, timeout_s: float = 10.0) -> None:
    import psutil

    if not _is_server(pid):
        return
    p = psutil.Process(pid)
    p.terminate()
    try:
        p.wait(timeout_s)
    except psutil.TimeoutExpired:
        p.kill()
        p.wait(timeout_s)
