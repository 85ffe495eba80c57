"""The model server's settings (mlcicd.serving.config): one table, one reader, one policy. Unset or empty
gives the documented default; a value is read for every variable of the table; a bad value of any kind
is a SettingError naming the variable, the value and what is allowed; and no other module of the server
reads its environment."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from mlcicd.serving import config
from mlcicd.serving.config import DEFAULTS, SERVER_SETTINGS, ServerSettings, SettingError, read
from mlcicd.serving.limits import Limits

# The documented defaults (docs/configuration.md's server settings), written out: the table must give these.
DOCUMENTED = {
    "model_dir": None, "model_digest": None, "host": "127.0.0.1", "port": 5100, "token": None,
    "metrics_token": None, "workers": None, "threads": 1, "max_body_bytes": 8 * 2**20, "max_rows": 10_000,
    "max_concurrency": 64, "timeout_s": 30.0, "batch_rows": 256, "batch_wait_ms": 2.0,
    "prediction_log_dir": None, "prediction_log_retention_hours": 720.0,
    "prediction_log_max_bytes": 10 * 2**30, "prediction_log_max_queue_bytes": 64 * 2**20,
    "prometheus_multiproc_dir": None,
}  # fmt: skip
DIGEST = "sha256:" + "0123456789abcdef" * 4
# A value of each variable, none of them the default: the text set and the value read.
VALID = {
    "MLCICD_MODEL_DIR":                      ("/opt/mlcicd/bundle", Path("/opt/mlcicd/bundle")),
    "MLCICD_MODEL_DIGEST":                   (DIGEST, DIGEST),
    "HOST":                                  ("0.0.0.0", "0.0.0.0"),
    "PORT":                                  ("8080", 8080),
    "MLCICD_SERVER_TOKEN":                   (" s3cret\n", "s3cret"),  # blanks around it are not part of it
    "MLCICD_SERVER_METRICS_TOKEN":           ("m3trics", "m3trics"),
    "MLCICD_SERVER_WORKERS":                 ("3", 3),
    "MLCICD_SERVER_THREADS":                 ("2", 2),
    "MLCICD_SERVER_MAX_BODY_BYTES":          ("1048576", 2**20),
    "MLCICD_SERVER_MAX_ROWS":                ("777", 777),
    "MLCICD_SERVER_MAX_CONCURRENCY":         ("16", 16),
    "MLCICD_SERVER_TIMEOUT_S":               ("1.5", 1.5),
    "MLCICD_SERVER_BATCH_ROWS":              ("32", 32),
    "MLCICD_SERVER_BATCH_WAIT_MS":           ("0", 0.0),
    "MLCICD_PREDICTION_LOG_DIR":             ("/var/log/predictions", Path("/var/log/predictions")),
    "MLCICD_PREDICTION_LOG_RETENTION_HOURS": ("48", 48.0),
    "MLCICD_PREDICTION_LOG_MAX_BYTES":       ("1000000", 1_000_000),
    "MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES": ("4096", 4096),
    "PROMETHEUS_MULTIPROC_DIR":              ("/tmp/metrics", Path("/tmp/metrics")),
}  # fmt: skip
# The bounds themselves are allowed.
EDGES = [
    ("PORT", "1", 1), ("PORT", "65535", 65535), ("MLCICD_SERVER_WORKERS", "128", 128),
    ("MLCICD_SERVER_WORKERS", "auto", None), ("MLCICD_SERVER_MAX_BODY_BYTES", str(2**30), 2**30),
    ("MLCICD_SERVER_TIMEOUT_S", "3600", 3600.0), ("MLCICD_SERVER_TIMEOUT_S", "0.001", 0.001),
    ("MLCICD_SERVER_BATCH_WAIT_MS", "1000", 1000.0), ("MLCICD_SERVER_MAX_ROWS", "+5", 5),
]  # fmt: skip
# Values refused, of every kind that can be wrong: not a number, out of bounds, not the format.
BAD = [
    ("PORT", "http"), ("PORT", "0"), ("PORT", "65536"),
    ("MLCICD_SERVER_WORKERS", "0"), ("MLCICD_SERVER_WORKERS", "129"), ("MLCICD_SERVER_WORKERS", "many"),
    ("MLCICD_SERVER_THREADS", "0"), ("MLCICD_SERVER_THREADS", "-3"),
    ("MLCICD_SERVER_MAX_BODY_BYTES", "8MiB"), ("MLCICD_SERVER_MAX_BODY_BYTES", str(2**30 + 1)),
    ("MLCICD_SERVER_MAX_ROWS", "1.5"), ("MLCICD_SERVER_MAX_ROWS", "1_000"), ("MLCICD_SERVER_MAX_ROWS", "0"),
    ("MLCICD_SERVER_MAX_CONCURRENCY", "-1"), ("MLCICD_SERVER_MAX_CONCURRENCY", "10001"),
    ("MLCICD_SERVER_TIMEOUT_S", "0"), ("MLCICD_SERVER_TIMEOUT_S", "nan"), ("MLCICD_SERVER_TIMEOUT_S", "inf"),
    ("MLCICD_SERVER_TIMEOUT_S", "3601"), ("MLCICD_SERVER_TIMEOUT_S", "30s"),
    ("MLCICD_SERVER_BATCH_ROWS", "0"),
    ("MLCICD_SERVER_BATCH_WAIT_MS", "-1"), ("MLCICD_SERVER_BATCH_WAIT_MS", "1e9"),
    ("MLCICD_PREDICTION_LOG_RETENTION_HOURS", "0"), ("MLCICD_PREDICTION_LOG_RETENTION_HOURS", "thirty days"),
    ("MLCICD_PREDICTION_LOG_MAX_BYTES", "10GiB"), ("MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES", "0"),
    ("MLCICD_MODEL_DIGEST", "abc"), ("MLCICD_MODEL_DIGEST", DIGEST.upper()), ("MLCICD_MODEL_DIGEST", DIGEST[:-1]),
]  # fmt: skip
BY_NAME = {s.name: s for s in SERVER_SETTINGS}


def test_the_table_declares_every_setting_once_with_its_meaning():
    names = [s.name for s in SERVER_SETTINGS]
    assert len(names) == len(set(names))
    assert [s.field for s in SERVER_SETTINGS] == [f.name for f in fields(ServerSettings)]
    assert all(s.meaning and s.kind.allowed for s in SERVER_SETTINGS)
    assert {s.name for s in SERVER_SETTINGS if s.internal} == {"PROMETHEUS_MULTIPROC_DIR"}


def test_unset_or_empty_gives_the_documented_defaults():
    assert vars(read({})) == DOCUMENTED
    assert read({s.name: " " for s in SERVER_SETTINGS}) == read({}) == DEFAULTS
    assert Limits() == Limits.of(DEFAULTS)  # the limits' defaults are the table's


def test_the_tests_tables_cover_every_setting():
    assert set(VALID) == set(BY_NAME)
    can_be_wrong = {s.name for s in SERVER_SETTINGS if s.kind not in (config.TEXT, config.PATH)}
    assert {name for name, _ in BAD} == can_be_wrong


@pytest.mark.parametrize("name", VALID)
def test_every_variable_is_read(name):
    text, value = VALID[name]
    field = BY_NAME[name].field
    settings = read({name: text})
    assert getattr(settings, field) == value != getattr(DEFAULTS, field)
    assert {k: v for k, v in vars(settings).items() if k != field} == {
        k: v for k, v in vars(DEFAULTS).items() if k != field
    }  # that variable, and only it


def test_all_variables_together():
    settings = read({name: text for name, (text, _) in VALID.items()})
    assert {BY_NAME[name].field: value for name, (_, value) in VALID.items()} == vars(settings)


@pytest.mark.parametrize(("name", "text", "value"), EDGES)
def test_the_bounds_are_allowed(name, text, value):
    assert getattr(read({name: text}), BY_NAME[name].field) == value


@pytest.mark.parametrize(("name", "text"), BAD)
def test_a_bad_value_is_refused_naming_the_variable_the_value_and_what_is_allowed(name, text):
    with pytest.raises(SettingError) as refused:
        read({name: text})
    allowed = BY_NAME[name].kind.allowed
    assert f"{name}={text!r} is not allowed: give {allowed}" in str(refused.value)
    assert isinstance(refused.value, ValueError)
    with pytest.raises(SettingError, match=name):
        config.value(BY_NAME[name].field, {name: text})  # one setting: the same policy


def test_every_bad_value_is_named_at_once():
    with pytest.raises(SettingError) as refused:
        read({"MLCICD_SERVER_MAX_ROWS": "ten", "PORT": "0", "MLCICD_SERVER_TOKEN": "fine"})
    assert "MLCICD_SERVER_MAX_ROWS='ten'" in str(refused.value) and "PORT='0'" in str(refused.value)


def test_a_client_reads_only_the_setting_it_needs():
    """The CLI and the smoke tests send the token: a bad limit in their environment is not theirs to refuse."""
    env = {"MLCICD_SERVER_TOKEN": "t0ken", "MLCICD_SERVER_MAX_ROWS": "ten"}
    assert config.value("token", env) == "t0ken"
    assert config.value("metrics_token", env) is None


def test_the_workers_environment_reads_back_as_what_was_decided(tmp_path):
    written = config.as_environ(model_dir=tmp_path, prediction_log_dir=None, max_concurrency=3)
    assert written == {
        "MLCICD_MODEL_DIR": str(tmp_path),
        "MLCICD_PREDICTION_LOG_DIR": None,
        "MLCICD_SERVER_MAX_CONCURRENCY": "3",
    }
    settings = read({k: v for k, v in written.items() if v is not None})
    assert (settings.model_dir, settings.prediction_log_dir, settings.max_concurrency) == (tmp_path, None, 3)


def environment_reads(source: str) -> list[int]:
    """Lines of ``source`` that read the process environment (writing it for the workers is no read)."""
    tree = ast.parse(source)
    writes = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del))
    } | {
        id(node.func.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "pop"
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and ast.unparse(node) in ("os.environ", "os.getenv", "os.environb", "os.getenvb")
        and id(node) not in writes
    ]


def test_no_other_module_of_the_server_reads_the_environment():
    package = Path(config.__file__).parent
    reads = {
        p.name: lines
        for p in sorted(package.glob("*.py"))
        if p.name != "config.py" and (lines := environment_reads(p.read_text()))
    }
    assert reads == {}, f"read the settings through mlcicd.serving.config, not the environment: {reads}"


def test_the_environment_check_can_fail():
    assert environment_reads("import os\nx = os.getenv('MLCICD_SERVER_TOKEN')\n") == [2]
    assert environment_reads("import os\nx = os.environ['PORT']\n") == [2]
    assert environment_reads("import os\nx = dict(os.environ)\n") == [2]
    assert environment_reads("import os\nos.environ['PORT'] = '1'\nos.environ.pop('PORT', None)\n") == []


def test_the_app_takes_its_limits_and_log_bounds_from_the_settings(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mlcicd.serving import server
    from tests.helpers import make_model_dir

    _, x = make_model_dir(tmp_path, rows=300, seed=5)
    env = {
        "MLCICD_SERVER_MAX_BODY_BYTES": "200000",
        "MLCICD_SERVER_MAX_ROWS": "5",
        "MLCICD_SERVER_MAX_CONCURRENCY": "4",
        "MLCICD_SERVER_TIMEOUT_S": "9",
        "MLCICD_SERVER_BATCH_ROWS": "7",
        "MLCICD_SERVER_BATCH_WAIT_MS": "3",
        "MLCICD_PREDICTION_LOG_RETENTION_HOURS": "5",
        "MLCICD_PREDICTION_LOG_MAX_BYTES": "123456",
        "MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES": "65536",
    }
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    app = server.create_app(tmp_path, tmp_path / "predictions")
    try:
        assert app.state.limits == Limits(200_000, 5, 4, 9.0, 7, 3.0)
        assert (app.state.batcher.max_rows, app.state.batcher.max_wait_s) == (7, 0.003)
        for logger in (app.state.prediction_log, app.state.shadow_log):
            assert (logger.retention_hours, logger.max_total_bytes, logger.max_queue_bytes) == (
                5.0,
                123456,
                65536,
            )
        body = {"dataframe_split": json.loads(x.head(6).to_json(orient="split", index=False))}
        r = TestClient(app).post("/invocations", json=body)
        assert r.status_code == 413 and "MLCICD_SERVER_MAX_ROWS" in r.json()["message"]
    finally:
        app.state.prediction_log.close()
        app.state.shadow_log.close()


def test_the_server_does_not_start_with_a_bad_setting(tmp_path):
    env = {**os.environ, "MLCICD_SERVER_MAX_ROWS": "ten"}
    command = [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "mlcicd model server: not starting: MLCICD_SERVER_MAX_ROWS='ten' is not allowed" in done.stderr
