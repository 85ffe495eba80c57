"""The local target's handle on its server processes: alive from the first instant, stopped for good.

The target used to recognise its servers by their command line. Right after a spawn the kernel
shows an empty /proc/<pid>/cmdline for a moment, so a new, healthy server was judged dead ("exited
before it became healthy") about one spawn in ten on a busy machine: the intermittent end-to-end
failures. These tests spawn many servers and look at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcicd import settings
from mlcicd.deploy.local import Server

ROOT = Path(__file__).resolve().parents[2]


class Spawner:
    """Starts a stand-in server the way the target starts a model server (``--model-dir`` and all)."""

    def __init__(self, version_dir: Path) -> None:
        self.version_dir = version_dir

    def _start(self, version_dir: Path, port: int) -> Server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fixtures.idle_server",
                "--model-dir",
                str(version_dir),
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return Server.started(proc.pid)


@pytest.fixture
def target(tmp_path):
    (tmp_path / "v1").mkdir()
    return Spawner(tmp_path / "v1"), tmp_path / "v1"


def test_a_new_server_is_alive_at_once(target):
    t, version_dir = target
    for _ in range(150):
        server = t._start(version_dir, 1)
        alive = server.alive()
        server.stop()
        assert alive, "a server judged dead right after its spawn"
        assert not server.alive()


def test_a_server_is_known_across_processes_by_pid_and_start_time(target):
    t, version_dir = target
    server = t._start(version_dir, 1)
    try:
        again = Server.of(server.to_state())  # as another run reads it from the state file
        assert again.alive()
        assert not Server(server.pid, server.started_after_boot_s - 1).alive()  # the same pid, recycled
    finally:
        again.stop()
    assert not server.alive()


def test_stopping_a_server_started_by_another_process(target):
    """The previous version's server was started by an earlier run: not a child of this process."""
    _, version_dir = target
    code = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'tests.fixtures.idle_server'],"
        " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL); print(p.pid)"
    )
    pid = int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ).stdout
    )
    orphan = Server.started(pid)
    assert orphan.alive()
    orphan.stop()
    assert not orphan.alive()


def test_a_state_file_from_before_start_times_were_recorded(target):
    t, version_dir = target
    server = t._start(version_dir, 1)
    try:
        old_style = Server(server.pid, None)  # recognised by its command line, once it is written
        deadline = time.monotonic() + 10
        while not old_style.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert old_style.alive()
        assert not Server(os.getpid(), None).alive()  # pytest is not a model server
    finally:
        server.stop()


def test_malformed_pids_are_not_servers():
    for pid in (-1, 0):
        assert not Server(pid, 1.0).alive()
        Server(pid, 1.0).stop()  # nothing to stop, and no other child's exit status collected


def test_a_busy_deploy_lock_is_a_transient_error_and_changes_nothing(monkeypatch, tmp_path):
    from mlcicd import deploy
    from mlcicd.errors import DeployBusy, MlcicdError

    monkeypatch.setenv("MLCICD_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MLCICD_DEPLOY_LOCK_TIMEOUT_S", "0.2")
    s = settings.load()
    with deploy.lock(s, "local", "m"):
        with pytest.raises(DeployBusy, match="another deploy of m to the local target") as busy:
            with deploy.lock(s, "local", "m"):
                pytest.fail("two holders of one deploy lock")
        assert not isinstance(busy.value, MlcicdError)  # not a rollback: Airflow retries the task
        with deploy.lock(s, "local", "other_model"):
            pass  # another model is not held up
    with deploy.lock(s, "local", "m"):
        pass  # released with its holder
