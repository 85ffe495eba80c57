"""The Compose stack's check-env refuses the example settings and weak ones, naming what to set."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "include" / "compose" / "check_env.py"
GOOD = {
    "POSTGRES_PASSWORD": "pg-" + "a" * 30,  # pragma: allowlist secret
    "AIRFLOW_ADMIN_PASSWORD": "admin-" + "b" * 20,  # pragma: allowlist secret
    "AIRFLOW_JWT_SECRET": "jwt-" + "c" * 40,  # pragma: allowlist secret
    "AIRFLOW_API_SECRET_KEY": "api-" + "d" * 40,  # pragma: allowlist secret
    "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
    "MLFLOW_ADMIN_PASSWORD": "mlflow-" + "e" * 20,  # pragma: allowlist secret
    "MLFLOW_SECRET_KEY": "csrf-" + "f" * 40,  # pragma: allowlist secret
    "MLCICD_HOST_STATE_DIR": "/srv/mlcicd-state",
}


def check(env: dict[str, str] | None = None, env_file: Path | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT)] + (["--env-file", str(env_file)] if env_file else [])
    return subprocess.run(args, env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True, text=True)


def test_the_example_env_is_refused_with_every_variable_named():
    done = check(env_file=ROOT / ".env.example")
    assert done.returncode == 1
    for var in (
        "POSTGRES_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_SECRET_KEY",
        "MLCICD_HOST_STATE_DIR",
    ):
        assert var in done.stderr, var
    assert "set it in .env" in done.stderr


def test_good_settings_pass():
    done = check(GOOD)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"POSTGRES_PASSWORD": "short"}, "POSTGRES_PASSWORD has 5 characters"),  # pragma: allowlist secret
        (
            {"AIRFLOW_JWT_SECRET": "change-me-" + "x" * 40},  # pragma: allowlist secret
            "AIRFLOW_JWT_SECRET is the example value",
        ),
        ({"MLFLOW_SECRET_KEY": "jwt-" + "c" * 40}, "the same value"),  # pragma: allowlist secret
        ({"AIRFLOW_FERNET_KEY": "not-a-key"}, "AIRFLOW_FERNET_KEY is not a Fernet key"),
        ({"CHECK_REDIS_PASSWORD": "1"}, "REDIS_PASSWORD is unset"),
        (
            {"CHECK_REDIS_PASSWORD": "1", "REDIS_PASSWORD": "--" + "r" * 30},
            "REDIS_PASSWORD starts with '-'",
        ),  # pragma: allowlist secret
        (
            {"CHECK_REDIS_PASSWORD": "1", "REDIS_PASSWORD": "r@" + "r" * 30},
            "characters a URL would need encoded",
        ),  # pragma: allowlist secret
        (
            {"MLCICD_HOST_STATE_DIR": "/tmp"},
            "MLCICD_HOST_STATE_DIR must be an absolute path to a folder of its own",
        ),
        ({"MLCICD_HOST_STATE_DIR": "state"}, "MLCICD_HOST_STATE_DIR must be an absolute path"),
        ({"MLFLOW_ADMIN_PASSWORD": ""}, "MLFLOW_ADMIN_PASSWORD is unset"),
    ],
)
def test_weak_settings_are_refused(change, message):
    done = check({**GOOD, **change})
    assert done.returncode == 1 and message in done.stderr, done.stderr
