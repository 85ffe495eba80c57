"""``mlcicd init``: a model project to start from, which passes ``mlcicd check`` and trains as it is.

The project file, a package with a transformer of its own and the training entry point, a unit test,
and the CI files of a model repository (GitHub Actions, GitLab CI, Jenkins) that run ``check``, then
trigger the project's retrain DAG with the commit they tested, wait, and fail on a rejection.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from string import Template

from mlcicd.names import RETRAIN_DAG
from mlcicd.project import PROJECT_FILE, ProjectError

TEMPLATES = Path(__file__).with_name("templates")
# Where each template goes in the project folder ({package}: the project's package).
LAYOUT = {
    "mlcicd.toml": PROJECT_FILE,
    "features.py.tmpl": "{package}/features.py",
    "model.py.tmpl": "{package}/model.py",
    "test_features.py.tmpl": "tests/test_features.py",
    "github-workflow.yml": ".github/workflows/mlcicd.yml",
    "gitlab-ci.yml": ".gitlab-ci.yml",
    "Jenkinsfile": "Jenkinsfile",
}


def names_for(folder: Path, model: str | None = None) -> tuple[str, str]:
    """(the registered model's name, the package's name) for a project in ``folder``."""
    base = model or re.sub(r"[^A-Za-z0-9_]+", "_", folder.resolve().name).strip("_").lower() or "model"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", base):
        raise ProjectError(f"{base!r} is not a model name: pass --model NAME (letters, digits, _ . -)")
    package = re.sub(r"\W+", "_", base).lower()
    package = package if package[0].isalpha() else f"m_{package}"
    if package in sys.stdlib_module_names or package in ("mlcicd", "tests", "sklearn", "pandas", "numpy"):
        package = f"{package}_model"  # never shadow a module the code imports
    return base, package


def init(folder: Path, model: str | None = None) -> list[Path]:
    """Write the project into ``folder`` (made if missing); return the files written.

    Raises:
        ProjectError: a file the project would write is already there (nothing is written), or the
            model name is not one.
    """
    name, package = names_for(folder, model)
    targets = {src: folder / dest.format(package=package) for src, dest in LAYOUT.items()}
    taken = [str(t) for t in [*targets.values(), folder / package / "__init__.py"] if t.exists()]
    if taken:
        raise ProjectError(f"{folder} already holds {', '.join(taken)}: nothing was written")
    values = {"mlcicd_model": name, "mlcicd_package": package, "mlcicd_dag": f"{RETRAIN_DAG}__{name}"}
    for src, dest in targets.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(Template((TEMPLATES / src).read_text()).safe_substitute(values))
    (folder / package / "__init__.py").write_text(
        f'"""The {name} model: its features and training entry point."""\n'
    )
    return [*targets.values(), folder / package / "__init__.py"]
