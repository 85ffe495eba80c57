"""The ``local`` deploy target: each version served by a process on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
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
        if not state or not Server.of(state).alive():
            return None
        return Deployment(self.name, state["endpoint"], state["version"], state)

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        version_dir = self._prepare(release)
        previous = self._state()
        previous_alive = bool(previous) and Server.of(previous).alive()
        if not previous_alive and port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is held by a process that is not this model's server; "
                "stop it or set MLCICD_LOCAL_PORT to a free port"
            )

        staging_port = free_port(self.host)
        staging = self._start(version_dir, staging_port)
        try:
            endpoint = f"http://{self.host}:{staging_port}"
            wait_healthy(endpoint, release.version, self.settings.health_timeout_s, staging.alive)
            problems = smoke_test(endpoint, smoke)
        except DeployError as exc:
            problems = [str(exc)]
        finally:
            staging.stop()
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
            Server.of(previous).stop()
        if port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} is held by another process; free it or set MLCICD_LOCAL_PORT"
            )
        server = self._start(version_dir, self.port)
        try:
            wait_healthy(self.endpoint, release.version, self.settings.health_timeout_s, server.alive)
        except DeployError as exc:
            server.stop()
            if previous_alive:
                old = self._start(Path(previous["model_dir"]), self.port)
                self._write_state({**previous, **old.to_state()})
            raise DeployError(
                f"{exc}; rolled back to v{previous['version'] if previous else '(none)'}"
            ) from exc
        state = {
            "version": release.version,
            **server.to_state(),
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
            Server.of(state).stop()
            self.state_file.unlink(missing_ok=True)

    def _prepare(self, release: Release) -> Path:
        return prepare_bundle(self.settings, release, self.root / f"v{release.version}")

    @property
    def prediction_log_dir(self) -> Path:
        return self.settings.predictions_for(self.model_name)

    def _start(self, version_dir: Path, port: int) -> Server:
        log = open(version_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child process
        cmd = [
            sys.executable, "-m", self.settings.local_server_module,
            "--model-dir", str(version_dir), "--host", self.host, "--port", str(port),
        ]  # fmt: skip
        if port == self.port:  # only live traffic is logged, not the staging smoke test
            cmd += ["--prediction-log", str(self.prediction_log_dir)]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        log.close()
        return Server.started(proc.pid)

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


@dataclass(frozen=True)
class Server:
    """A server process, known by its pid and its start time: a pid alone may have been recycled.

    Not by its command line: right after a spawn, /proc/<pid>/cmdline is empty for a moment (the
    parent resumes once the child's new memory exists, before the kernel writes the arguments into
    it), so a check on the command line judged a healthy new server dead, about one spawn in ten
    on a busy machine: the intermittent "exited before it became healthy" deploy failures.
    The start time is kept in seconds after boot, which a step of the wall clock does not move.
    """

    pid: int
    started_after_boot_s: float | None  # None in state files written before it was recorded

    @classmethod
    def started(cls, pid: int) -> Server:
        import psutil

        try:
            return cls(pid, _since_boot(psutil.Process(pid)))
        except psutil.Error:  # gone already: alive() says so
            return cls(pid, -1.0)

    @classmethod
    def of(cls, state: dict[str, Any]) -> Server:
        pid = state.get("pid")
        return cls(pid if isinstance(pid, int) else -1, state.get("started_after_boot_s"))

    def to_state(self) -> dict[str, Any]:
        return {"pid": self.pid, "started_after_boot_s": self.started_after_boot_s}

    def _process(self) -> Any:
        """The psutil handle of this very process if it still exists (a zombie included), else None."""
        import psutil

        if self.pid <= 0:
            return None
        try:
            p = psutil.Process(self.pid)
            if self.started_after_boot_s is None:  # an old state file: the server has long been running
                return p if "--model-dir" in p.cmdline() else None
            return p if _since_boot(p) == self.started_after_boot_s else None
        except psutil.Error:  # gone, or a zombie (its command line can no longer be read)
            return None

    def alive(self) -> bool:
        import psutil

        p = self._process()
        try:
            return p is not None and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; return once it has exited (or is a zombie)."""
        import psutil

        p = self._process()
        if p is None:
            return
        try:
            ours = p.ppid() == os.getpid()  # then collect its exit status: no zombie left behind
        except psutil.Error:
            return
        for send in (p.terminate, p.kill):  # psutil refuses to signal a recycled pid
            with contextlib.suppress(psutil.NoSuchProcess):
                send()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if ours:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(self.pid, os.WNOHANG)
                if not self.alive():
                    return
                time.sleep(0.05)
        raise DeployError(f"the server process {self.pid} did not exit after SIGKILL")


def _since_boot(p: Any) -> float:
    """When ``p`` started, in seconds after boot (to the clock tick /proc reports)."""
    import psutil

    return round(p.create_time() - psutil.boot_time(), 2)
