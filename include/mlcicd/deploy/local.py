"""The ``local`` deploy target: each version served by a process on this machine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcicd.deploy.base import server_env
from mlcicd.deploy.slots import FrontedTarget
from mlcicd.errors import DeployError
from mlcicd.ports import free_port, port_in_use
from mlcicd.release import Release, prepare_bundle
from mlcicd.settings import Settings

log = logging.getLogger("mlcicd")


class LocalProcessTarget(FrontedTarget):
    """Serve each version as a process on this machine, behind an HAProxy front on the stable port.

    Each version's server runs on a port of its own, started once; the front (a process of its
    own, see :mod:`.haproxy`) moves traffic between them. See :class:`.slots.FrontedTarget`.
    """

    name = "local"

    def __init__(self, settings: Settings, model_name: str) -> None:
        super().__init__(settings, model_name)
        self.host = settings.local_host
        self.port = settings.local_port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def stop_all(cls, settings: Settings) -> list[str]:
        """Stop the servers and the front of every model this target started; return the models' names."""
        stopped = []
        for state_file in (settings.deployments_dir / "local").glob("*/front.json"):
            target = cls(settings, state_file.parent.name)
            if target.current():
                stopped.append(target.model_name)
            target.stop()
        return stopped

    # -- the front: an HAProxy process ------------------------------------------------------------

    def _bind(self) -> str:
        return f"{self.host}:{self.port}"

    def _front_running(self, state: dict[str, Any]) -> bool:
        return bool(state.get("front")) and Server.of(state["front"]).alive()

    def _start_front(self, state: dict[str, Any]) -> dict[str, Any]:
        self._retire_unfronted_server()
        if port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is held by a process that is not this model's front; "
                "stop it or set MLCICD_LOCAL_PORT to a free port"
            )
        binary = self.settings.haproxy_bin
        log_file = open(self.front.dir / "haproxy.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            proc = subprocess.Popen(
                [binary, "-db", "-f", "haproxy.cfg"],
                cwd=self.front.dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")
                },  # none of Airflow's
            )
        except OSError as exc:
            raise DeployError(
                f"the traffic front could not start ({binary}: {exc}); `make install` installs HAProxy, "
                "or set MLCICD_HAPROXY to an HAProxy 2.6+ binary"
            ) from exc
        finally:
            log_file.close()
        front = Server.started(proc.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not front.alive():
                break
            if self.front.answers() and port_in_use(self.host, self.port):
                return {**front.to_state(), "binary": binary}
            time.sleep(0.05)
        front.stop()
        tail = (self.front.dir / "haproxy.log").read_text(errors="replace")[-1500:]
        raise DeployError(f"the traffic front (HAProxy) did not start on {self._bind()}:\n{tail}")

    def _stop_front(self, state: dict[str, Any]) -> None:
        if state.get("front"):
            Server.of(state["front"]).stop()

    def _retire_unfronted_server(self) -> None:
        """Stop a server started on the stable port before the front existed (state ``current.json``)."""
        old = self.root / "current.json"
        try:
            state = json.loads(old.read_text())
        except (OSError, json.JSONDecodeError):
            return
        server = Server.of(state)
        if server.alive():
            log.warning(
                "stopping v%s, started on port %s before the traffic front existed: the front takes "
                "the port (a one-time gap)",
                state.get("version"),
                self.port,
            )
            server.stop()
        old.unlink(missing_ok=True)

    # -- the model servers ------------------------------------------------------------------------

    def _start_server(self, release: Release) -> dict[str, Any]:
        version_dir = prepare_bundle(self.settings, release, self.root / f"v{release.version}")
        port = free_port(self.host)
        log_file = open(version_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child process
        cmd = [
            sys.executable,
            "-m",
            self.settings.local_server_module,
            "--model-dir",
            str(version_dir),
            "--host",
            self.host,
            "--port",
            str(port),
            "--prediction-log",
            str(self.prediction_log_dir),
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **server_env(release, dict(os.environ), process=True, bundle=version_dir),
                "PYTHONWARNINGS": "ignore",
            },
        )
        log_file.close()
        return {
            "version": str(release.version),
            **Server.started(proc.pid).to_state(),
            "host": self.host,
            "port": port,
            "url": f"http://{self.host}:{port}",
            "model_dir": str(version_dir),
            "release": release.to_dict(),
        }

    def _server_alive(self, handle: dict[str, Any]) -> bool:
        return Server.of(handle).alive()

    def _stop_server(self, handle: dict[str, Any]) -> None:
        Server.of(handle).stop()

    def _server_log(self, handle: dict[str, Any]) -> str:
        try:
            return (Path(handle["model_dir"]) / "server.log").read_text(errors="replace")[-2000:].strip()
        except (OSError, KeyError):
            return ""


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
