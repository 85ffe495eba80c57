"""The model projects' files, checked: a project that breaks its schema shows here, as this file's
import error in the Airflow UI (naming the file, the line and the key), while the other projects
keep their DAGs.

Builds no DAG: ``ml_retrain`` and ``ml_monitor`` build one of each per valid project in
``MLCICD_PROJECTS`` (see docs/projects.md).
"""

from __future__ import annotations

from mlcicd import project, settings
from mlcicd.dag.params import project_problems

_projects = project.load_all(project.folders(settings.load().projects, settings.PROJECT_ROOT))
if _problems := [problem for p in _projects for problem in project_problems(p)]:
    raise project.ProjectError("these projects get no DAGs:\n" + "\n".join(f"  {p}" for p in _problems))
