"""Settings are parsed and checked in one place; the registries agree with the Params' choices."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlcicd import choices, deploy, settings
from mlcicd.errors import ConfigError


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("MLCICD_LOCAL_PORT", "abc", "MLCICD_LOCAL_PORT='abc' is not an integer"),
        (
            "MLCICD_DOCKER_PORT",
            "70000",
            "MLCICD_DOCKER_PORT='70000' is out of range: it must be between 1 and 65535",
        ),
        ("MLCICD_HEALTH_TIMEOUT_S", "soon", "MLCICD_HEALTH_TIMEOUT_S='soon' is not a number"),
        ("MLCICD_BUILD_TIMEOUT_S", "inf", "MLCICD_BUILD_TIMEOUT_S='inf' is not a number"),
        ("MLCICD_KUBE_REPLICAS", "0", "MLCICD_KUBE_REPLICAS='0' is out of range: it must be at least 1"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        settings.load()
    assert str(caught.value) == message


def test_unset_and_empty_settings_take_the_defaults(monkeypatch):
    monkeypatch.delenv("MLCICD_DOCKER_PORT", raising=False)
    monkeypatch.setenv("MLCICD_HEALTH_TIMEOUT_S", "")
    s = settings.load()
    assert s.docker_port == 5200 and s.health_timeout_s == 90.0


def test_the_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MLCICD_STATE_DIR": str(tmp_path), "MLCICD_LOCAL_PORT": "abc"}
    out = subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "error: MLCICD_LOCAL_PORT='abc' is not an integer"


def test_the_cli_reports_a_bad_setting_as_json_when_asked(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MLCICD_STATE_DIR": str(tmp_path), "MLCICD_KUBE_REPLICAS": "two"}
    out = subprocess.run(
        [sys.executable, "-m", "mlcicd", "run", "--json"], env=env, capture_output=True, text=True
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 2 and summary["outcome"] == "usage_error"
    assert summary["error"]["message"] == "MLCICD_KUBE_REPLICAS='two' is not an integer"


def test_registries_match_the_params_choices():
    assert tuple(deploy.TARGETS) == choices.DEPLOY_TARGETS
