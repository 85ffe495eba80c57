"""Model projects end to end: two teams' projects trained, gated, promoted and served side by side on the
session's Airflow home and MLflow store, from a git repository of their own; a worse feature rejected
against its own champion; a run asked for other code refused; `check` and `init` as a model repo's CI
runs them.

The projects are copies of examples/churn and examples/cancer in a fresh repository (their own model
names and free ports, so they sit beside the other tests' models); the tests run in file order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from mlcicd import registry
from mlcicd.cli.run import run_pipeline
from mlcicd.ports import free_port
from mlcicd.settings import PROJECT_ROOT, load

pytestmark = pytest.mark.e2e
EXAMPLES = PROJECT_ROOT / "examples"
CHURN, CANCER = "proj_churn", "proj_cancer"


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    return subprocess.run(
        ["git", *ident, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The teams' repository: both projects, each with its own model name and endpoint port."""
    root = tmp_path_factory.mktemp("model-repo")
    for example, name in (("churn", CHURN), ("cancer", CANCER)):
        folder = root / name
        shutil.copytree(EXAMPLES / example, folder, ignore=shutil.ignore_patterns("__pycache__"))
        text = (folder / "mlcicd.toml").read_text()
        text = text.replace('name = "mlcicd_churn"', f'name = "{CHURN}"').replace(
            'name = "breast_cancer"', f'name = "{CANCER}"'
        )
        text = text.replace("port = 5101", f"port = {free_port('127.0.0.1')}")
        if "[deploy]" not in text:
            text += f"\n[deploy]\nport = {free_port('127.0.0.1')}\n"
        (folder / "mlcicd.toml").write_text(text)
    git(root, "init", "-q")
    head = commit(root, "two model projects")
    saved = os.environ.get("MLCICD_PROJECTS")
    os.environ["MLCICD_PROJECTS"] = f"{root / CHURN},{root / CANCER}"
    yield root, head
    if saved is None:
        os.environ.pop("MLCICD_PROJECTS", None)
    else:
        os.environ["MLCICD_PROJECTS"] = saved


def run(name: str, **conf) -> dict:
    return run_pipeline(conf, dag_id=f"ml_retrain__{name}")


@pytest.fixture(scope="module")
def first(repo):
    return run(CHURN, synthetic_seed=1, synthetic_rows=2000), run(CANCER)


def version_of(name: str, version: str):
    return registry.client(load().tracking_uri).get_model_version(name, version)


def served(port_of: str, rows: pd.DataFrame) -> tuple[dict, list]:
    url = f"http://127.0.0.1:{port_of}"
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    answer = requests.post(f"{url}/invocations", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return requests.get(f"{url}/version", timeout=10).json(), answer.json()["predictions"]


def test_two_projects_are_promoted_and_served_side_by_side_each_naming_its_commit(repo, first):
    root, head = repo
    for s, name in zip(first, (CHURN, CANCER), strict=True):
        assert s["outcome"] == "promoted", (s.get("error"), s["gate"])
        assert s["code"] == {**s["code"], "project": name, "commit": head, "dirty": "false"}
        tags = version_of(name, s["candidate"]["model_version"]).tags
        assert tags["mlcicd.code.commit"] == head and tags["mlcicd.code.digest"] == s["code"]["digest"]
    cancer = (
        pd.read_csv(EXAMPLES / "cancer" / "data" / "breast_cancer.csv").drop(columns=["malignant"]).head(5)
    )
    port = first[1]["deployment"]["endpoint"].rsplit(":", 1)[1]
    version, predictions = served(
        port, cancer
    )  # the custom transformer, imported from the version's code copy
    assert version["model_name"] == CANCER and version["code_commit"] == head and len(predictions) == 5
    churn_port = first[0]["deployment"]["endpoint"].rsplit(":", 1)[1]
    assert churn_port != port
    assert requests.get(f"http://127.0.0.1:{churn_port}/version", timeout=10).json()["model_name"] == CHURN


def test_a_worse_feature_is_rejected_against_its_own_champion_with_both_commits_recorded(repo, first):
    root, head = repo
    model = root / CANCER / "cancer_model" / "model.py"
    # A "simplification" that keeps three of the thirty measurements: a weaker model.
    model.write_text(
        model.read_text()
        .replace(
            '            ("ratios", Ratios()),',
            '            ("ratios", Ratios()),\n            ("few", ColumnTransformer([("keep", "passthrough", [0, 1, 2])])),',
        )
        .replace(
            "from sklearn.linear_model",
            "from sklearn.compose import ColumnTransformer\nfrom sklearn.linear_model",
        )
    )
    worse = commit(root, "fewer features")
    s = run(CANCER)
    assert s["outcome"] == "rejected", (s.get("error"), s["gate"])
    decision = s["gate"]
    assert any(r.startswith("FAIL") for r in decision["reasons"]), decision["reasons"]
    champion = registry.champion(registry.client(load().tracking_uri), CANCER)
    assert champion.version == first[1]["candidate"]["model_version"]  # untouched
    code = s["code"]
    assert code["commit"] == worse and code["dirty"] == "false"
    rec = registry.client(load().tracking_uri).download_artifacts(
        s["candidate"]["mlflow_run_id"], "gate/decision.json"
    )
    logged = json.loads(Path(rec).read_text())["code"]
    assert logged["candidate"]["commit"] == worse and logged["champion"]["commit"] == head


def test_a_run_asked_for_other_code_or_with_uncommitted_changes_is_refused_before_it_trains(repo, first):
    root, _ = repo
    before = len(registry.client(load().tracking_uri).search_runs([first[1]["candidate"]["experiment_id"]]))
    s = run(CANCER, code_commit="0123456789abcdef")
    assert s["outcome"] == "usage_error" and "not at 0123456789ab" in s["error"]["message"]
    head = git(root, "rev-parse", "HEAD")
    (root / CANCER / "cancer_model" / "notes.py").write_text("X = 1\n")
    s = run(CANCER, code_commit=head)
    assert s["outcome"] == "usage_error" and "uncommitted changes" in s["error"]["message"]
    (root / CANCER / "cancer_model" / "notes.py").unlink()
    after = len(registry.client(load().tracking_uri).search_runs([first[1]["candidate"]["experiment_id"]]))
    assert after == before  # nothing trained


def cli(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlcicd", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=os.environ.copy(),
    )


def test_init_scaffolds_a_project_that_passes_check_and_check_fails_on_its_failing_unit_test(tmp_path):
    folder = tmp_path / "team-model"
    made = cli("init", str(folder))
    assert made.returncode == 0, made.stderr
    assert (folder / ".github/workflows/mlcicd.yml").exists() and (folder / "team_model/features.py").exists()
    checked = cli("check", str(folder), "--json")
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert checked.returncode == 0 and result["ok"], result
    assert [s["name"] for s in result["steps"]] == [
        "project file",
        "unit tests",
        "fit on a sample",
        "serving round trip",
    ]
    test = folder / "tests" / "test_features.py"
    test.write_text(test.read_text().replace("clipped[1, 0] == 50.0", "clipped[1, 0] == 51.0"))
    checked = cli("check", str(folder), "--json")
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert checked.returncode == 3 and [s["ok"] for s in result["steps"]] == [True, False]
    assert "1 failed" in result["steps"][1]["detail"]
    again = cli("init", str(folder))
    assert again.returncode == 2 and "nothing was written" in again.stderr


def test_rebuild_reproduces_a_version_exactly_from_its_folder_or_its_commit(repo, first):
    churn, cancer = (s["candidate"]["model_version"] for s in first)
    done = cli("rebuild", CHURN, churn, "--json")  # the folder still holds the code it was trained on
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["exact"], report
    assert report["code"]["source"] == str(repo[0] / CHURN) and report["holdout_rows"] == 500
    # The cancer folder moved on (a worse feature, committed): its champion is rebuilt from its commit.
    done = cli("rebuild", CANCER, cancer, "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["exact"], report
    assert report["code"]["source"] == f"git archive {repo[1][:12]}" and report["data"]["digest"]
    missing = cli("rebuild", CANCER, "99", "--json")
    assert (
        missing.returncode == 2
        and "not a registered version" in json.loads(missing.stdout)["error"]["message"]
    )
