"""Policy is the installation's: params (the form, the REST API, an Asset event's retrain conf) may
only tighten the rules that protect production (issue 28, finding 3)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlcicd import policy
from mlcicd.choices import RETRAIN_DEFAULTS
from mlcicd.conf.run import params_of
from mlcicd.errors import ConfigError
from mlcicd.settings import load

STRICT = {
    "MLCICD_REQUIRE_APPROVAL": "true", "MLCICD_SCAN_MAJOR": "reject", "MLCICD_ALLOWED_MODELS": "mlcicd_churn,fraud",
    "MLCICD_ALLOWED_TARGETS": "local,kubernetes", "MLCICD_APPROVERS": "alice,bob", "MLCICD_APPROVAL_FOUR_EYES": "true",
}  # fmt: skip
WAIVING = {"approval": False, "scan_major": "warn", "scan_allow_major_without_champion": True}


@pytest.fixture
def strict(monkeypatch):
    for key, value in STRICT.items():
        monkeypatch.setenv(key, value)
    return load()


def test_params_cannot_waive_the_installations_rules(strict):
    applied = policy.apply({**RETRAIN_DEFAULTS, **WAIVING}, strict)
    assert applied.params["approval"] is True and applied.params["scan_major"] == "reject"
    assert applied.params["scan_allow_major_without_champion"] is False
    assert len(applied.overridden) == 3 and "MLCICD_REQUIRE_APPROVAL" in applied.overridden[0]


def test_params_may_tighten_a_lenient_installation(monkeypatch):
    monkeypatch.setenv("MLCICD_SCAN_MAJOR", "warn")
    monkeypatch.setenv("MLCICD_SCAN_ALLOW_MAJOR_WITHOUT_CHAMPION", "true")
    lenient = load()
    asked = {**RETRAIN_DEFAULTS, "approval": True, "scan_major": "reject"}
    assert policy.apply(asked, lenient).params == asked
    assert policy.apply({**asked, **WAIVING}, lenient).params["scan_major"] == "warn"


def test_a_retrain_conf_from_an_asset_event_cannot_waive_them_either(strict):
    """Anyone allowed to post an Asset event sets a retrain's conf: it is checked, then tightened."""
    event = SimpleNamespace(extra={"conf": {**WAIVING, "model_name": "mlcicd_churn"}})
    context = {"params": dict(RETRAIN_DEFAULTS), "triggering_asset_events": {"retrain": [event]}}
    params = params_of(context)
    assert params["approval"] is True and params["scan_major"] == "reject"
    assert params["scan_allow_major_without_champion"] is False


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"model_name": "other_model"}, "MLCICD_ALLOWED_MODELS"),
        ({"deploy_target": "docker"}, "MLCICD_ALLOWED_TARGETS"),
    ],
)
def test_models_and_targets_outside_the_allowed_ones_are_refused(strict, asked, message):
    with pytest.raises(ConfigError, match=message):
        policy.check_allowed({**RETRAIN_DEFAULTS, **asked}, strict)
    policy.check_allowed({**RETRAIN_DEFAULTS, "deploy_target": "kubernetes"}, strict)


def test_four_eyes_leaves_the_user_who_triggered_out_of_the_approvers(strict, monkeypatch):
    assert policy.approvers(strict, "alice") == ["bob"]
    assert policy.approvers(strict, None) == ["alice", "bob"]  # a scheduled run: nobody triggered it
    monkeypatch.setenv("MLCICD_APPROVERS", "alice")
    with pytest.raises(ConfigError, match="'alice', who triggered it, is the only approver"):
        policy.approvers(load(), "alice")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLCICD_SCAN_MAJOR": "ignore"}, "MLCICD_SCAN_MAJOR='ignore'"),
        ({"MLCICD_REQUIRE_APPROVAL": "maybe"}, "not true or false"),
        ({"MLCICD_APPROVAL_FOUR_EYES": "true", "MLCICD_APPROVERS": ""}, "needs MLCICD_APPROVERS"),
        ({"MLCICD_ALLOWED_TARGETS": "ftp"}, "the targets are local, docker, kubernetes"),
    ],
)
def test_a_bad_rule_setting_is_named(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load()


def test_four_eyes_turns_the_triggering_users_own_approval_into_a_rejection_by_id_or_name(strict):
    from mlcicd.dag.approval import self_approved

    context = {"dag_run": SimpleNamespace(triggering_user_name="alice")}
    assert self_approved(context, {"id": "7", "name": "alice"})  # FAB: a numeric id, the name matches
    assert self_approved(context, {"id": "alice", "name": "Alice A."})
    assert not self_approved(context, {"id": "bob", "name": "bob"})
    assert not self_approved(
        {"dag_run": SimpleNamespace(triggering_user_name=None)}, {"id": "alice", "name": "alice"}
    )
