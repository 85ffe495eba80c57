"""Model projects: the project file's schema and its errors, the entry point's contract, the code version,
and the loader's trust in a project's own classes. Real files, a real git repository, real skops files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlcicd import project
from mlcicd.project import ProjectError, code, entry
from mlcicd.serving import modelfile

ROOT = Path(__file__).resolve().parents[2]
CANCER = ROOT / "examples" / "cancer"


@pytest.fixture
def cancer(tmp_path) -> Path:
    """A copy of the cancer example, to break."""
    folder = tmp_path / "cancer"
    shutil.copytree(CANCER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture
def batch() -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(CANCER / "data" / "breast_cancer.csv")
    return df.drop(columns=["malignant"]), df["malignant"]


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "mlcicd.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def line_with(folder: Path, needle: str) -> int:
    return next(
        i for i, line in enumerate((folder / "mlcicd.toml").read_text().splitlines(), 1) if needle in line
    )


def test_both_examples_load_with_their_contract():
    churn, cancer = project.load_all([ROOT / "examples" / "churn", CANCER])
    assert (churn.name, churn.task, churn.dataset_uri) == ("mlcicd_churn", "binary", "synthetic:")
    assert cancer.dataset_uri == str(CANCER / "data" / "breast_cancer.csv")  # relative to the folder
    assert cancer.spec.training.trusted_types == ["cancer_model.features.Ratios"]
    assert cancer.primary_metric == "roc_auc" and cancer.retrain_dag_id == "ml_retrain__breast_cancer"


BROKEN_FILES = [
    ("[training]", "[training]\nepochs = 3", "epochs", "training.epochs", "unknown key"),
    ('task = "binary"', 'task = "ranking"', "task =", "model.task", "'binary', 'multiclass' or 'regression'"),
    ('entry_point = "cancer_model.model:build"', 'entry_point = "cancer_model.model"', "entry_point", "training.entry_point", "not package.module:function"),
    ("roc_auc = 0.9", "rmse = 0.9", "thresholds", "gate.thresholds.rmse", "not a metric of a binary task"),
    ("port = 5101", "port = 80", "port =", "deploy.port", "greater than or equal to 1024"),
    ('trusted_types = ["cancer_model.features.Ratios"]', 'trusted_types = ["Ratios"]', "trusted_types", "training.trusted_types", "not a dotted class path"),
    ('trusted_types = ["cancer_model.features.Ratios"]', 'trusted_types = ["numpy.random.Generator"]', "trusted_types", "training.trusted_types", "not a class of the project's own code"),
    ("roc_auc = 0.9", "roc_auc = 1.5", "thresholds", "gate.thresholds.roc_auc", "not a score between 0 and 1"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "needle", "key", "says"), BROKEN_FILES)
def test_a_broken_project_file_is_refused_naming_the_file_line_and_key(cancer, old, new, needle, key, says):
    edit(cancer, old, new)
    with pytest.raises(ProjectError) as err:
        project.load(cancer)
    assert f"{cancer / 'mlcicd.toml'}:{line_with(cancer, needle)}: {key}" in str(err.value)
    assert says in str(err.value)


def test_malformed_toml_and_a_missing_file_say_so(cancer, tmp_path):
    (cancer / "mlcicd.toml").write_text("[model\nname = 1")
    with pytest.raises(ProjectError, match="not valid TOML"):
        project.load(cancer)
    with pytest.raises(ProjectError, match="holds no mlcicd.toml .* `python -m mlcicd init DIR`"):
        project.load(tmp_path)


def test_a_pyproject_tool_table_is_a_project_file_and_its_lines_count_in_the_pyproject(cancer):
    text = (cancer / "mlcicd.toml").read_text()
    (cancer / "mlcicd.toml").unlink()
    tables = text.replace("[model]", "[tool.mlcicd.model]").replace("[data]", "[tool.mlcicd.data]")
    tables = tables.replace("[training", "[tool.mlcicd.training").replace("[deploy]", "[tool.mlcicd.deploy]")
    tables = tables.replace("[gate]", "[tool.mlcicd.gate]")
    (cancer / "pyproject.toml").write_text('[project]\nname = "cancer"\n\n' + tables)
    assert project.load(cancer).name == "breast_cancer"
    (cancer / "pyproject.toml").write_text(
        (cancer / "pyproject.toml").read_text().replace("port = 5101", "port = 1")
    )
    with pytest.raises(ProjectError) as err:
        project.load(cancer)
    lines = (cancer / "pyproject.toml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("port = 1 "))
    assert f"pyproject.toml:{line}: tool.mlcicd.deploy.port" in str(err.value)


def test_two_projects_may_not_share_a_model_or_an_endpoint(cancer):
    with pytest.raises(ProjectError, match="both claim the registered model 'breast_cancer'"):
        project.load_all([CANCER, cancer])
    edit(cancer, 'name = "breast_cancer"', 'name = "cancer_two"')
    with pytest.raises(ProjectError, match="both claim port 5101"):
        project.load_all([CANCER, cancer])
    edit(cancer, "port = 5101", "port = 5102")
    assert [p.name for p in project.load_all([CANCER, cancer])] == ["breast_cancer", "cancer_two"]
    # The DAG files build DAGs for those that load: the first of two twins.
    assert [p.name for p in project.load_valid([str(CANCER), str(CANCER)], ROOT)] == ["breast_cancer"]


def test_the_entry_point_builds_an_unfitted_estimator_that_fits_and_holds_its_declared_class(batch):
    found = project.load(CANCER)
    x, y = batch
    model, trusted = entry.fit(found, x, y, {"c": 1.0}, seed=3)
    assert trusted == ["cancer_model.features.Ratios"]
    assert model.predict_proba(x.head(3)).shape == (3, 2)


MODULE = "cancer_model/model.py"


BROKEN_ENTRY_POINTS = [
    ("import no_such_library\n", "cannot be imported from .*ModuleNotFoundError: No module named 'no_such_library' \\(cancer_model/model.py:1\\)"),
    ("def other(h, s):\n    return None\n", "cancer_model.model has no 'build'"),
    ("build = 3\n", "'build' is a int, not a function"),
    ("def build(h, s):\n    raise ValueError('no c given')\n", "raised ValueError: no c given \\(cancer_model/model.py:2\\)"),
    ("def build(h, s):\n    return {'model': 1}\n", "returned a dict, not a scikit-learn estimator"),
    ("from sklearn.linear_model import Ridge\ndef build(h, s):\n    return Ridge()\n", "not a classifier \\(task: binary\\)"),
    ("from sklearn.svm import LinearSVC\ndef build(h, s):\n    return LinearSVC()\n", "LinearSVC has no predict_proba"),
    ("from sklearn.linear_model import LogisticRegression\nimport numpy as np\ndef build(h, s):\n    return LogisticRegression().fit(np.eye(2), [0, 1])\n", "returned a fitted LogisticRegression: return it unfitted"),
]  # fmt: skip


@pytest.mark.parametrize(("code_text", "says"), BROKEN_ENTRY_POINTS)
def test_an_entry_point_that_breaks_its_contract_is_refused_naming_the_problem(
    cancer, batch, code_text, says
):
    (cancer / MODULE).write_text(code_text)
    with pytest.raises(ProjectError, match=says):
        entry.fit(project.load(cancer), *batch, {"c": 1.0}, seed=3)


def test_wrong_prediction_shapes_and_undeclared_classes_fail_at_training(cancer, batch):
    (cancer / "cancer_model" / "wide.py").write_text(
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "class Wide(LogisticRegression):\n"
        "    def predict(self, x):\n        return np.zeros((len(x), 2))\n"
    )
    (cancer / MODULE).write_text(
        "from cancer_model.wide import Wide\ndef build(h, s):\n    return Wide(max_iter=50)\n"
    )
    with pytest.raises(ProjectError, match=r"predicts shape \(100, 2\) for 100 rows; expected \(100,\)"):
        entry.fit(project.load(cancer), *batch, {"c": 1.0}, seed=3)
    edit(cancer, 'trusted_types = ["cancer_model.features.Ratios"]', "trusted_types = []")
    (cancer / MODULE).write_text(CANCER.joinpath(MODULE).read_text())
    with pytest.raises(
        ProjectError, match="holds cancer_model.features.Ratios, which mlcicd.toml does not declare"
    ):
        entry.fit(project.load(cancer), *batch, {"c": 1.0}, seed=3)


def test_a_slow_entry_point_fails_past_the_time_out(cancer, batch):
    (cancer / MODULE).write_text(
        "import time\nfrom sklearn.linear_model import LogisticRegression\n"
        "def build(h, s):\n    time.sleep(5)\n    return LogisticRegression()\n"
    )
    with pytest.raises(ProjectError, match="took longer than search_timeout_s=0.5 s"):
        entry.fit(project.load(cancer), *batch, {"c": 1.0}, seed=3, timeout_s=0.5)


def test_two_projects_with_the_same_package_name_each_import_their_own(cancer, batch):
    (cancer / "cancer_model" / "features.py").write_text(
        CANCER.joinpath("cancer_model/features.py").read_text() + "\nMARK = 'copy'\n"
    )
    entry.activate(project.load(CANCER))
    import cancer_model.features as original

    assert not hasattr(original, "MARK")
    entry.activate(project.load(cancer))
    import cancer_model.features as copied

    assert copied.MARK == "copy" and str(cancer) in copied.__file__


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_code_version_names_the_commit_the_digest_and_uncommitted_changes(cancer):
    assert code.version(cancer, "breast_cancer")["commit"] == "unknown"  # not a checkout (in tmp)
    git(cancer, "init", "-q")
    git(cancer, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(cancer, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    head = git(cancer, "rev-parse", "HEAD")
    clean = code.version(cancer, "breast_cancer")
    assert (clean["commit"], clean["dirty"]) == (head, "false")
    assert code.check_commit(clean, head[:12]) is None
    assert "not at 0123456789ab" in code.check_commit(clean, "0123456789ab")
    (cancer / "cancer_model" / "extra.py").write_text("X = 1\n")
    changed = code.version(cancer, "breast_cancer")
    assert changed["dirty"] == "true" and changed["digest"] != clean["digest"]
    assert "uncommitted changes" in code.check_commit(changed, head)
    (cancer / "cancer_model" / "extra.py").unlink()
    (cancer / "cancer_model" / "__pycache__").mkdir(exist_ok=True)
    (cancer / "cancer_model" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert code.version(cancer, "breast_cancer")["digest"] == clean["digest"]  # caches are not code
    (cancer / ".gitignore").write_text("*.env\n")
    commit_all = ("-c", "user.email=t@t", "-c", "user.name=t")
    git(cancer, *commit_all, "add", ".gitignore")
    git(cancer, *commit_all, "commit", "-qm", "ignore env files")
    (cancer / "local.env").write_text("SECRET=1\n")  # ignored by git, but in the folder: in the digest
    assert code.version(cancer, "breast_cancer")["dirty"] == "true"
    (cancer / "local.env").unlink()
    (cancer / "cancer_model" / "linked.py").symlink_to(CANCER / "cancer_model" / "model.py")
    with pytest.raises(ProjectError, match="linked.py is a symbolic link"):
        code.version(cancer, "breast_cancer")


def test_the_loader_trusts_a_declared_class_of_the_project_and_refuses_a_library_declared_as_one(
    tmp_path, batch
):
    import mlflow.sklearn
    from mlflow.models import infer_signature

    found = project.load(CANCER)
    x, y = batch
    model, trusted = entry.fit(found, x, y, {"c": 1.0}, seed=3)

    good = tmp_path / "good"
    mlflow.sklearn.save_model(
        model,
        good,
        serialization_format="skops",
        skops_trusted_types=trusted,
        pip_requirements=[],
        signature=infer_signature(x.head(), model.predict(x.head())),
        metadata={modelfile.TRUSTED_METADATA: trusted},
    )
    loaded = modelfile.load(good, modelfile.digest(good), "v1")
    assert (loaded.predict_proba(x) == model.predict_proba(x)).all()

    def declaring(declared: list[str]) -> Path:
        """The same model, its MLmodel declaring ``declared`` (its digest recorded anew, as training would)."""
        folder = tmp_path / "-".join(declared or ["nothing"]).replace(".", "_")
        shutil.copytree(good, folder)
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        meta["metadata"][modelfile.TRUSTED_METADATA] = declared
        (folder / "MLmodel").write_text(yaml.safe_dump(meta))
        return folder

    undeclared = declaring([])
    with pytest.raises(modelfile.UntrustedModel, match="holds types"):
        modelfile.load(undeclared, modelfile.digest(undeclared), "v2")
    for smuggled in ("builtins.eval", "os.system", "numpy.load", "sklearn.utils.Bunch", "mlcicd.x.Y"):
        folder = declaring([*trusted, smuggled])
        with pytest.raises(modelfile.UntrustedModel, match="only a model project's own classes"):
            modelfile.load(folder, modelfile.digest(folder), "v3")


def test_a_projects_search_draws_from_its_own_space_and_refuses_others():
    from mlcicd import conf, search
    from mlcicd.dag.params import retrain_params
    from mlcicd.errors import ConfigError

    found = project.load(CANCER)
    name, drawn = search.candidates("project", seed=1, max_candidates=10, project=found)
    assert name == "project" and len(drawn) == 3
    assert {c.estimator for c in drawn} == {"project"} and all(0.01 <= c.params["c"] <= 10 for c in drawn)
    assert search.candidates("none", 1, 10, found) == ("none", [])
    for spec, says in (
        ("quick", "none, project, or"),
        (
            {"project": {"candidates": 2, "space": {"epochs": [1, 2]}}},
            "not a hyperparameter the project declares (c)",
        ),
        (
            {"project": {"candidates": 2, "space": {"c": {"loguniform": [0, 1]}}}},
            "loguniform needs positive bounds",
        ),
        ({"logistic_regression": {"candidates": 2, "space": {}}}, "none, project, or"),
    ):
        with pytest.raises(ConfigError, match=re.escape(says)):
            search.candidates(spec, 1, 10, found)
    # The conf check (the CI client's, with the schemas the server reports) takes the project's shape.
    schemas = {k: p.schema for k, p in retrain_params(found).items()}
    assert conf.check({"search": "project"}, schemas, found.retrain_dag_id) == {"search": "project"}
    with pytest.raises(ConfigError, match='search="quick" is invalid'):
        conf.check({"search": "quick"}, schemas, found.retrain_dag_id)
    with pytest.raises(ConfigError, match="min_roc_auc=0.5 is invalid"):  # below the project's floor
        conf.check({"min_roc_auc": 0.5}, schemas, found.retrain_dag_id)


def test_activating_a_project_touches_only_modules_from_project_folders(cancer):
    import yaml

    entry.activate(project.load(CANCER))
    import cancer_model

    entry.activate(project.load(cancer))
    assert (
        sys.modules["yaml"] is yaml and "cancer_model" not in sys.modules
    )  # only the old project's code left
    (cancer / "json").mkdir()
    (cancer / "json" / "__init__.py").write_text("")
    with pytest.raises(ProjectError, match="package 'json' is already imported here"):
        entry.activate(project.load(cancer))
    assert cancer_model.__file__.startswith(str(CANCER))


def test_a_run_may_train_only_a_configured_project_for_its_own_model(cancer, monkeypatch):
    from mlcicd.conf.run import project as project_of
    from mlcicd.errors import ConfigError

    monkeypatch.setenv("MLCICD_PROJECTS", str(CANCER))
    assert project_of({"project": str(CANCER), "model_name": "breast_cancer"}).root == CANCER
    for params in (
        {"project": str(cancer), "model_name": "breast_cancer"},  # a folder nobody configured
        {"project": str(CANCER), "model_name": "mlcicd_churn"},  # another model
    ):
        with pytest.raises(ConfigError, match="is not the project of this run's DAG"):
            project_of(params)
    assert project_of({"model_name": "mlcicd_churn"}) is None


def test_a_project_whose_dags_cannot_be_built_is_named_and_left_out(cancer):
    from mlcicd.dag.params import buildable, project_problems

    edit(cancer, 'name = "breast_cancer"', 'name = "other"')
    edit(cancer, 'task = "binary"', 'task = "regression"')
    edit(cancer, "thresholds = { roc_auc = 0.9, accuracy = 0.85, f1 = 0.8 }", "thresholds = { rmse = 3.0 }")
    regression = project.load(cancer)
    assert "trains binary classifiers only" in project_problems(regression)[0]
    good = project.load(CANCER)
    assert project_problems(good) == [] and buildable([good, regression]) == [good]
