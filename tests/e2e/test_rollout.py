"""Canary rollouts through ml_retrain (`mlcicd run`: a real DAG run, MLflow, HAProxy and servers).

Constant load runs throughout. A healthy canary walks its steps and becomes champion; a canary that
breaks a condition is aborted at its first step with the champion serving everything, unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlcicd import synthetic
from mlcicd.ports import free_port
from tests.helpers import Load, state_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FAST = ["rollout_interval_s=2", "rollout_checks=1", "rollout_min_requests=5", "max_degradation=0.05"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("rollout") / "state"
    port = free_port("127.0.0.1")
    e = state_env(state, MLCICD_LOCAL_PORT=str(port))
    yield e, f"http://127.0.0.1:{port}"
    subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=e, capture_output=True, timeout=120)


def run(env: dict, *conf: str) -> tuple[int, dict]:
    args = [sys.executable, "-m", "mlcicd", "run", "--json"] + [a for c in conf for a in ("--conf", c)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-3000:]
    return done.returncode, json.loads(lines[-1])


def payload() -> dict:
    rows = synthetic.generate(50, 1).drop(columns="churned").head(5)
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


def champion(endpoint: str) -> str:
    return str(requests.get(f"{endpoint}/health", timeout=5).json()["model_version"])


def test_a_healthy_canary_walks_its_steps_and_a_broken_one_is_aborted_at_its_first(env):
    e, endpoint = env
    code, first = run(e, "synthetic_seed=1")
    assert code == 0 and first["outcome"] == "promoted", first
    # The MLflow store may be the test session's, shared with other tests: versions are read, not assumed.
    v1 = first["champion_version"]
    v2, v3 = str(int(v1) + 1), str(int(v1) + 2)  # the registry numbers a model's versions in sequence
    with Load(endpoint, payload(), clients=2, pause_s=0.02) as load:  # below saturation
        load.mark(v1, v2)
        code, healthy = run(e, "synthetic_seed=2", "rollout=canary", "rollout_steps=[20, 60]", *FAST)
        load.mark(v2, v3)
        code_bad, broken = run(
            e,
            "synthetic_seed=3",
            "rollout=canary",
            "rollout_steps=[20, 60]",
            "rollout_max_p99_ms=0.001",
            *FAST,
        )
        load.mark(v2)  # aborted: only the champion answers from here on
        time.sleep(1)
        after = champion(endpoint)
    assert code == 0 and healthy["outcome"] == "promoted", json.dumps(healthy.get("rollout"), indent=1)[:4000]
    assert healthy["candidate"]["model_version"] == healthy["champion_version"] == v2
    steps = healthy["rollout"]["steps"]
    assert [s["percent"] for s in steps] == [20, 60] and {s["verdict"] for s in steps} == {"passed"}
    assert all(m["candidate"]["requests"] >= 5 for s in steps for m in s["measurements"])

    assert code_bad == 4 and broken["outcome"] == "rolled_back", broken
    assert broken["candidate"]["model_version"] == v3
    assert [s["verdict"] for s in broken["rollout"]["steps"]] == ["failed"]  # its first step
    assert "p99 latency" in broken["rollout"]["steps"][0]["measurements"][0]["note"]
    assert after == v2 and broken["champion_version"] == v2

    assert load.failures() == [], load.failures()[:5]
    assert load.misrouted() == [], load.misrouted()[:5]
    counts = load.versions()
    assert counts.get(v3, 0) > 0, counts  # the broken canary did take its share before the abort
