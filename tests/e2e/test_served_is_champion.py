"""Served = champion: every failure path after the switch leaves what serves and @champion equal,
and what an earlier run left unequal is repaired by the next run's reconcile_serving or `mlcicd status`.

Real runs on the local target and the session's MLflow store; a registry failure is injected where
the alias moves (the only fault that cannot be provoked for real without breaking the rest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from mlcicd import deploy, registry
from mlcicd.cli.run import exit_code, run_pipeline
from mlcicd.settings import PROJECT_ROOT, load

pytestmark = pytest.mark.e2e
MODEL = "sync_churn"
DATA = "sync_churn_data"  # its own dataset, hence its own suite: test_pipeline infers the default one


def client():
    return registry.client(load().tracking_uri)


def champion() -> str | None:
    ref = registry.champion(client(), MODEL)
    return ref.version if ref else None


def served() -> str | None:
    current = deploy.get_target("local", load(), MODEL).current()
    if current is None:
        return None
    answered = requests.get(f"{current.endpoint}/version", timeout=10).json()["version"]
    assert answered == current.version  # the server's own word agrees with the target's state
    return answered


def status(*args: str) -> tuple[int, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "mlcicd", "status", "--model", MODEL, "--target", "local", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
    )
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def port():
    from mlcicd.ports import free_port

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCICD_LOCAL_PORT", str(free_port("127.0.0.1")))
        yield
    deploy.get_target("local", load(), MODEL).stop()


def promote(seed: int) -> dict:
    s = run_pipeline(
        {"model_name": MODEL, "dataset_name": DATA, "synthetic_seed": seed, "max_degradation": 0.5}
    )
    assert s["outcome"] == "promoted", s.get("error")
    return s


def test_a_promotion_moves_the_alias_under_the_lock_and_records_what_it_replaced(port):
    first = promote(21)
    assert first["stages"]["reconcile_serving"]["state"] == "success"
    second = promote(22)
    v1, v2 = first["champion_version"], second["champion_version"]
    assert champion() == served() == v2
    tags = registry.version_tags(client(), MODEL, v2)
    assert tags[registry.REPLACES_TAG] == v1 and registry.PROMOTED_AT_TAG in tags
    assert registry.version_tags(client(), MODEL, v1)[registry.REPLACES_TAG] == registry.NONE
    code, state = status()
    assert code == 0 and state["state"] == "in_sync" and state["serving"] == state["champion"] == v2


def test_when_the_alias_cannot_move_the_replaced_version_serves_again(port, monkeypatch):
    from mlflow.exceptions import MlflowException

    before = champion()
    assert served() == before

    def registry_down(*args, **kwargs):
        raise MlflowException("the registry is unreachable (injected)")

    monkeypatch.setattr(registry, "move_champion", registry_down)
    s = run_pipeline(
        {"model_name": MODEL, "dataset_name": DATA, "synthetic_seed": 23, "max_degradation": 0.5}
    )
    assert s["gate"]["decision"] == "promoted"
    assert s["outcome"] == "rolled_back" and exit_code(s) == 4, s.get("error")
    assert s["error"]["stage"] == "promote_champion"  # the local target switches there, after staging
    assert f"v{before} serves again, as the alias says" in s["error"]["message"]
    assert champion() == served() == before
    assert "promote_champion" not in s["stages"] or s["stages"]["promote_champion"]["state"] != "success"


def test_a_move_reported_as_failed_that_went_through_is_a_promotion(port, monkeypatch):
    from mlflow.exceptions import MlflowException

    real = registry.move_champion

    def reply_lost(*args, **kwargs):
        real(*args, **kwargs)
        raise MlflowException("the registry's reply was lost (injected)")

    monkeypatch.setattr(registry, "move_champion", reply_lost)
    before = champion()
    s = promote(25)
    assert champion() == served() == s["champion_version"] != before
    assert registry.PROMOTED_AT_TAG in registry.version_tags(client(), MODEL, s["champion_version"])


def test_an_interrupted_promotion_is_finished_by_status_repair(port):
    c = client()
    v2 = champion()
    v1 = registry.version_tags(c, MODEL, v2)[registry.REPLACES_TAG]
    # The state a crash between the switch and the alias move leaves: v2 serves, the alias names v1.
    c.set_registered_model_alias(MODEL, registry.CHAMPION, v1)
    c.delete_model_version_tag(MODEL, v2, registry.PROMOTED_AT_TAG)
    assert served() == v2 and champion() == v1
    code, state = status()
    assert (
        code == 1
        and state["state"] == "disagree"
        and "status --repair` finishes the promotion" in state["note"]
    )
    code, state = status("--repair")
    assert code == 0 and state["state"] == "finished_promotion", state
    assert champion() == served() == v2


def test_a_champion_moved_by_hand_is_served_again_by_the_next_run(port):
    c = client()
    v2 = champion()
    v1 = registry.version_tags(c, MODEL, v2)[registry.REPLACES_TAG]
    c.set_registered_model_alias(MODEL, registry.CHAMPION, v1)  # an operator's rollback, by the registry
    assert served() == v2
    # A run the gate rejects still starts by putting the registry's champion back on the target.
    s = run_pipeline({"model_name": MODEL, "dataset_name": DATA, "synthetic_seed": 24, "min_roc_auc": 0.999})
    assert s["stages"]["reconcile_serving"]["state"] == "success", s.get("error")
    assert s["outcome"] == "rejected"
    assert champion() == served() == v1
