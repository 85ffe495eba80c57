"""Deployment behind a narrow target interface, and the smoke test every target runs.

A target deploys a :class:`Release` so that either the new version serves at the stable endpoint
after passing its smoke test, or :class:`DeployError` is raised and the previous version still
serves (rollback). Targets: ``local`` (a server process on this machine) here; Docker and
Kubernetes targets implement the same protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mlcicd.errors import ConfigError, DeployError
from mlcicd.settings import Settings


@dataclass(frozen=True)
class Release:
    model_name: str
    version: str
    model_uri: str
    mlflow_run_id: str
    airflow_run_id: str
    image: str | None = None  # the model-server image (repository:tag), for the targets that run one
    image_digest: str | None = None  # repository@sha256:..., once pushed to a registry

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SmokeTest:
    """Sample rows (MLflow ``dataframe_split`` payload) and the predictions made offline for them."""

    payload: dict[str, Any]
    expected: list[Any]


@dataclass(frozen=True)
class Deployment:
    target: str
    endpoint: str
    version: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeployTarget(Protocol):
    name: str

    def current(self) -> Deployment | None:
        """What serves at the stable endpoint now, or None."""

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Serve ``release`` at the stable endpoint, or raise DeployError leaving the old one serving."""

    def stop(self) -> None:
        """Stop serving."""


def smoke_test(endpoint: str, smoke: SmokeTest, timeout_s: float = 30.0) -> list[str]:
    """Send the sample rows and compare with the offline predictions; return the problems found."""
    import requests

    problems: list[str] = []
    try:
        r = requests.post(f"{endpoint}/invocations", json=smoke.payload, timeout=timeout_s)
    except requests.RequestException as exc:
        return [f"POST {endpoint}/invocations failed: {exc}"]
    if r.status_code != 200:
        return [f"POST {endpoint}/invocations answered {r.status_code}: {r.text[:300]}"]
    got = r.json().get("predictions")
    if not isinstance(got, list) or len(got) != len(smoke.expected):
        return [f"expected {len(smoke.expected)} predictions, got {str(got)[:200]}"]
    mismatched = [i for i, (a, b) in enumerate(zip(got, smoke.expected, strict=True)) if a != b]
    if mismatched:
        problems.append(
            f"{len(mismatched)} of {len(got)} predictions differ from the offline ones "
            f"(rows {mismatched[:10]}; served {[got[i] for i in mismatched[:5]]}, "
            f"offline {[smoke.expected[i] for i in mismatched[:5]]})"
        )
    bad = requests.post(
        f"{endpoint}/invocations", json={"dataframe_split": {"columns": ["?"], "data": [[1]]}}
    )
    if not 400 <= bad.status_code < 500:
        problems.append(f"a request with wrong columns answered {bad.status_code}, expected a 4xx")
    return problems


def prepare_bundle(settings: Settings, release: Release, version_dir: Path) -> Path:
    """Download the version's model to ``version_dir/model`` beside a ``release.json``: all the server reads."""
    import mlflow.artifacts

    model_dir = version_dir / "model"
    if not (model_dir / "MLmodel").exists():
        version_dir.mkdir(parents=True, exist_ok=True)
        tmp = version_dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=release.model_uri, dst_path=str(tmp), tracking_uri=settings.tracking_uri
        )
        tmp.rename(model_dir)
    (version_dir / "release.json").write_text(json.dumps(release.to_dict(), indent=2))
    return version_dir


TARGETS = {
    "local": "mlcicd.deploy:LocalProcessTarget",
    "docker": "mlcicd.docker_target:DockerTarget",
    "kubernetes": "mlcicd.k8s_target:KubernetesTarget",
}


def preflight(name: str, settings: Settings) -> None:
    """Checks a target can make before any work is spent: its connection is defined."""
    if name == "kubernetes":
        from mlcicd.k8s_target import check_connection

        check_connection(settings.kube_conn_id)


def check_target(name: str) -> str:
    """``name`` if it is a deploy target; a ConfigError that lists them otherwise."""
    if name not in TARGETS:
        raise ConfigError(
            f"unknown deploy target {name!r}; choose one of {', '.join(TARGETS)} "
            "(the deploy_target param or the MLCICD_DEPLOY_TARGET setting)"
        )
    return name


def get_target(name: str, settings: Settings, model_name: str) -> DeployTarget:
    check_target(name)
    import importlib

    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)(settings, model_name)


def wait_healthy(endpoint: str, version: str, timeout_s: float, alive: Any = None) -> None:
    """Wait until ``/health`` reports ``version``; ``alive()`` returning False aborts early."""
    import requests

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise DeployError(f"the server for v{version} exited before it became healthy")
        try:
            r = requests.get(f"{endpoint}/health", timeout=2)
            if r.status_code == 200 and str(r.json().get("model_version")) == str(version):
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise DeployError(f"{endpoint}/health did not report v{version} within {timeout_s:.0f} s (last: {last})")


_HANDED_OUT: set[int] = set()


def free_port(host: str) -> int:
    """A port that is free now and that this process has not handed out before.

    The kernel readily gives a just-released port to the next ``bind(0)``, so without the memory
    two callers (say, a fixed stable port chosen earlier and a later staging port) could get the
    same one, and the second would find it taken.
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no fresh free port on {host} after 100 tries")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


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
