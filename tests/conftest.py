"""Test session set-up: a private state folder (Airflow home, MLflow store, runs) for the session.

The environment is set here, at import, because Airflow reads its configuration when first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

STATE = Path(tempfile.mkdtemp(prefix="mlcicd-test-"))
# `make test` runs two pytest workers on a 2-core machine. libgomp's threads spin while they wait for
# work by default, and with the other worker busy that spinning makes the gradient boosting's many
# short parallel regions 10-50x slower (a scan test: 67 s instead of 6 s beside two busy processes);
# passive waiting gives the core back.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


os.environ["MLCICD_STATE_DIR"] = str(STATE)
# `make test` runs two pytest workers, each picking free ports for the servers, proxies and Airflows it
# starts: each takes its own residue class of ports (mlcicd.ports.shard), so no port is handed out twice.
if os.getenv("PYTEST_XDIST_WORKER", "").startswith("gw"):  # gwN (a crashed worker's replacement counts on)
    _count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["MLCICD_PORT_SHARD"] = f"{int(os.environ['PYTEST_XDIST_WORKER'][2:]) % _count}/{_count}"
from mlcicd.ports import free_port  # noqa: E402 - one allocator for the session: ports are never handed out twice

os.environ["MLCICD_LOCAL_PORT"] = str(free_port("127.0.0.1"))
# Hermetic: none of the user's deployment settings or connections leaks into the tests
# (tests/e2e/test_k8s_cluster.py takes its cluster and registry from MLCICD_TEST_* variables).
# The Airflow database too: pytest-xdist's workers inherit the controller's environment, in which this
# file already pointed AIRFLOW__DATABASE__SQL_ALCHEMY_CONN at the controller's folder; kept, both workers'
# first `airflow db migrate` ran on that one database at once ("table connection already exists").
for key in (
    "MLCICD_TRACKING_URI",
    "MLFLOW_TRACKING_URI",
    "MLCICD_REGISTRY_URI",
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "MLCICD_DEPLOY_TARGET",
    "MLCICD_IMAGE_BUILDER",
    "AIRFLOW_CONN_DOCKER_DEFAULT",
    "AIRFLOW_CONN_KUBERNETES_DEFAULT",
    "MLCICD_DOCKER_NETWORK",
):
    os.environ.pop(key, None)
# Some tests loosen the gate on purpose, to make sure of a promotion: this installation allows it.
os.environ["MLCICD_GATE_MAX_DEGRADATION"] = "0.5"
# The model servers the tests deploy run one process (the default, `auto`, gives one per core): two
# processes per server doubled its start-up cost in every deploy, canary and rollback on the shared
# 2-core machine. Several workers are tested on their own (tests/unit/test_server_batching.py).
# The Airflows the tests start get it too (tests.helpers.SERVER_ENV: devserver drops the caller's MLCICD_*).
os.environ["MLCICD_SERVER_WORKERS"] = "1"
# Batches the tests write (pytest's tmp_path) and fsspec's memory filesystem may be read.
os.environ["MLCICD_DATA_ROOTS"] = f"{tempfile.gettempdir()},memory:///mlcicd"

from mlcicd.cli.env import prepare_environment  # noqa: E402
from mlcicd.settings import load  # noqa: E402

prepare_environment(load())


COMPOSE_TESTS = "tests/e2e/test_compose.py"
# Modules by their time in `make test` (CI25, 2 cores), longest first; the others follow in file order.
LONGEST_FIRST = [COMPOSE_TESTS] + [
    f"tests/e2e/test_{m}.py"
    for m in (
        "trigger",
        "docker",
        "rollout",
        "scenario",
        "pipeline",
        "scan",
        "served_is_champion",
        "search",
        "monitor",
        "local_target",
        "traffic_front",
    )
]


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs two workers (pytest -n 2), which take whole modules (some modules' tests build on
    each other), longest first, so that neither waits on the other at the end. The Compose test (about
    25 minutes) has a worker to itself until its last test: no other module waits behind it. Ports do
    not collide: each worker has its own shard (above); the Compose stack runs in a network namespace
    of its own.

    A scheduler of our own rather than ``--dist loadscope``/``loadgroup``: xdist takes scopes in file
    order, and with pytest 9.2, xdist 3.8.0's groups are silently ignored (pytest-xdist#1386)."""
    from xdist.scheduler import LoadScopeScheduling

    def rank(scope: str) -> int:
        return LONGEST_FIRST.index(scope) if scope in LONGEST_FIRST else len(LONGEST_FIRST)

    class LongestFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0]  # the module, parametrized or not

        def _assign_work_unit(self, node: object, lightest: bool = False) -> None:
            order = list(self.workqueue)  # file order within a rank (min/max keep the first of equals)
            pick = max(reversed(order), key=rank) if lightest else min(order, key=rank)
            self.workqueue.move_to_end(pick, last=False)
            super()._assign_work_unit(node)

        def _reschedule(self, node: object) -> None:
            compose = self.assigned_work[node].get(COMPOSE_TESTS, {})
            waiting = list(compose.values()).count(False)
            if node.shutting_down or not self.workqueue or waiting == 0:
                super()._reschedule(node)
            elif waiting == 1:  # a worker runs a test once it holds the next: give it the lightest module
                if self._pending_of(self.assigned_work[node]) == 1:
                    self._assign_work_unit(node, lightest=True)
            # two Compose tests still queued: the first runs without more work

    return LongestFirst(config, log)


@pytest.fixture(scope="session", autouse=True)
def _session_state():
    yield STATE
    from mlcicd.cli.local import stop_servers

    stop_servers()
    shutil.rmtree(STATE, ignore_errors=True)


@pytest.fixture
def churn_df():
    from mlcicd import synthetic

    return synthetic.generate(1200, seed=11)
