"""The local target when deploys of one model overlap (two runs a few seconds apart, a retried task).

Each deploy is its own process, as two `mlcicd run` or two Airflow workers are. Without the
(target, model) lock the second one found the stable port "held by another process": the first
one's new server, started while its state file still named the old one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mlcicd.ports import free_port
from tests.helpers import make_model_dir

pytestmark = pytest.mark.e2e
MODEL = "overlap_m"
SCRIPT = Path(__file__).resolve().parents[1] / "fixtures" / "deploy_local.py"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-target")
    state = root / "state"
    versions = state / "deployments" / "local" / MODEL
    for v in ("1", "2", "3"):
        model, x = make_model_dir(versions / f"v{v}", rows=400, seed=int(v), version=v)
    rows = x.head(5)
    smoke = {v: root / f"smoke-v{v}.json" for v in ("1", "2", "3")}
    for v, path in smoke.items():
        from mlflow.pyfunc import load_model

        expected = load_model(str(versions / f"v{v}" / "model")).predict(rows).tolist()
        payload = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        path.write_text(json.dumps({"payload": payload, "expected": expected}))
    port = free_port("127.0.0.1")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MLCICD_STATE_DIR": str(state),
        "MLCICD_LOCAL_PORT": str(port),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    yield {"env": env, "smoke": smoke, "endpoint": f"http://127.0.0.1:{port}", "state": state}
    subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=env, capture_output=True, timeout=60)


def start(setup, version: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), MODEL, version, str(setup["smoke"][version])],
        env=setup["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    lines = out.strip().splitlines()
    assert lines, err[-2000:]
    return {"code": proc.returncode, **json.loads(lines[-1])}


def test_overlapping_deploys_queue_and_the_last_one_serves(setup):
    first = result(start(setup, "1"))
    assert first["code"] == 0 and first["version"] == "1", first
    second, third = start(setup, "2"), start(setup, "3")  # at once, both replacing v1
    done = [result(second), result(third)]
    assert [d["code"] for d in done] == [0, 0], done
    served = requests.get(f"{setup['endpoint']}/version", timeout=5).json()["version"]
    state = json.loads((setup["state"] / "deployments" / "local" / MODEL / "front.json").read_text())
    # The one that finished last serves, and the state file says so; the other's server is gone.
    assert served == state["stable"]["version"] and served in ("2", "3")
    assert {state["previous_version"], served} == {"2", "3"}
    assert state["candidate"] is None


def test_the_server_gets_none_of_airflows_environment(setup):
    """The task that starts a server holds the Fernet key and the database URI; the server must not."""
    secrets = {"AIRFLOW__CORE__FERNET_KEY": "fernet-key-of-the-test", "AWS_SECRET_ACCESS_KEY": "aws-of-the-test",  # pragma: allowlist secret
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw-of-the-test@db/airflow"}  # fmt: skip  # pragma: allowlist secret
    front = setup["state"] / "deployments" / "local" / MODEL / "front.json"
    assert json.loads(front.read_text())["stable"]["version"] != "1"  # so v1 gets a new server
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), MODEL, "1", str(setup["smoke"]["1"])],
        env={**setup["env"], **secrets, "MLCICD_SERVER_MAX_ROWS": "777"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = result(proc)
    assert done["code"] == 0 and done["version"] == "1", done
    state = json.loads(front.read_text())
    environ = Path(f"/proc/{state['stable']['pid']}/environ").read_bytes().decode().split("\0")
    names = {e.partition("=")[0] for e in environ if e}
    assert not names & set(secrets), names
    assert not [e for e in environ if "of-the-test" in e]
    assert "MLCICD_SERVER_MAX_ROWS=777" in environ  # its own settings do reach it
    assert any(e.startswith("MLCICD_MODEL_DIGEST=sha256:") for e in environ)
