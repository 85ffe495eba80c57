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
from mlcicd.ports import free_port  # noqa: E402 - one allocator for the session: ports are never handed out twice

os.environ["MLCICD_LOCAL_PORT"] = str(free_port("127.0.0.1"))
# Hermetic: none of the user's deployment settings or connections leaks into the tests
# (tests/e2e/test_k8s_cluster.py takes its cluster and registry from MLCICD_TEST_* variables).
for key in ("MLCICD_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLCICD_REGISTRY_URI", "AIRFLOW_HOME",
            "MLCICD_DEPLOY_TARGET", "MLCICD_IMAGE_BUILDER", "AIRFLOW_CONN_DOCKER_DEFAULT",
            "AIRFLOW_CONN_KUBERNETES_DEFAULT", "MLCICD_DOCKER_NETWORK"):  # fmt: skip
    os.environ.pop(key, None)
# Some tests loosen the gate on purpose, to make sure of a promotion: this installation allows it.
os.environ["MLCICD_GATE_MAX_DEGRADATION"] = "0.5"
# Batches the tests write (pytest's tmp_path) and fsspec's memory filesystem may be read.
os.environ["MLCICD_DATA_ROOTS"] = f"{tempfile.gettempdir()},memory:///mlcicd"

from mlcicd.cli.env import prepare_environment  # noqa: E402
from mlcicd.settings import load  # noqa: E402

prepare_environment(load())


COMPOSE_TESTS = "tests/e2e/test_compose.py"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs two workers (pytest -n 2): the Compose test on one, every other test on the
    other, in file order. Split this way because nothing the Compose test does binds a port in this
    network namespace (its stack runs in one of its own), while the other tests pick free ports that a
    second process could pick too, and some modules' tests build on each other.

    A scheduler of our own rather than ``--dist loadgroup``: with pytest 9.2, xdist 3.8.0's groups are
    silently ignored (pytest-xdist#1386) and every test went to whichever worker was free."""
    from xdist.scheduler import LoadScopeScheduling

    class TwoGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "compose" if nodeid.startswith(COMPOSE_TESTS) else "main"

    return TwoGroups(config, log)


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
