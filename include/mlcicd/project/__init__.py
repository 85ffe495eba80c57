"""Model projects: a team's model, described by one file in its own repository.

A project is a folder holding ``mlcicd.toml`` (or a ``pyproject.toml`` with a ``[tool.mlcicd]`` table)
and the team's code; :func:`load` reads and checks the file against :mod:`.schema`, with errors that
name the key and its line. The training entry point (``package.module:function``) is imported from
the project folder by :mod:`.entry`; :mod:`.code` says which code that is (commit, digest, dirty).

Cheap to import (tomllib and pydantic): the DAG files read the projects at parse time.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcicd.errors import ConfigError
from mlcicd.names import MONITOR_DAG, RETRAIN_DAG
from mlcicd.project.schema import TASK_METRICS, ProjectFile

PROJECT_FILE, PYPROJECT = "mlcicd.toml", "pyproject.toml"
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class ProjectError(ConfigError):
    """The project file or the project's code breaks the contract; the message names where."""


@dataclass(frozen=True)
class Project:
    root: Path  # the project folder, resolved
    file: Path  # the file it was read from
    spec: ProjectFile

    @property
    def name(self) -> str:
        """The registered model's name: one project per registered model on an installation."""
        return self.spec.model.name

    @property
    def task(self) -> str:
        return self.spec.model.task

    @property
    def retrain_dag_id(self) -> str:
        return f"{RETRAIN_DAG}__{self.name}"

    @property
    def monitor_dag_id(self) -> str:
        return f"{MONITOR_DAG}__{self.name}"

    @property
    def primary_metric(self) -> str:
        return self.spec.gate.primary_metric or next(iter(TASK_METRICS[self.task]))

    @property
    def dataset_uri(self) -> str:
        """The batches' URI, a relative path taken from the project folder."""
        uri = self.spec.data.batches
        return uri if URI_SCHEME.match(uri) or Path(uri).is_absolute() else str(self.root / uri)

    @property
    def suite_path(self) -> Path | None:
        return self.root / self.spec.data.suite if self.spec.data.suite else None

    def doc_md(self) -> str:
        """The project's part of its DAGs' documentation (the UI's DAG docs)."""
        spec = self.spec
        floors = ", ".join(f"{k} {v:g}" for k, v in spec.gate.thresholds.items())
        return (
            f"### Model project `{self.name}`\n"
            f"- folder: `{self.root}` (`{self.file.name}`)\n"
            f"- task: {spec.model.task}, target `{spec.model.target}`, batches `{spec.data.batches}`\n"
            f"- entry point: `{spec.training.entry_point}`; trusted types: "
            f"{', '.join(f'`{t}`' for t in spec.training.trusted_types) or 'none'}\n"
            f"- gate: {self.primary_metric} against the champion; floors {floors or 'the installation’s'}\n"
        )


def find_file(folder: Path) -> Path:
    """The project file in ``folder``: ``mlcicd.toml``, else a pyproject with ``[tool.mlcicd]``."""
    if (folder / PROJECT_FILE).is_file():
        return folder / PROJECT_FILE
    pyproject = folder / PYPROJECT
    if pyproject.is_file() and "mlcicd" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    raise ProjectError(
        f"{folder} holds no {PROJECT_FILE} (nor a {PYPROJECT} with a [tool.mlcicd] table): "
        "`python -m mlcicd init DIR` writes one to start from"
    )


def load(folder: str | Path) -> Project:
    """Read and check the project in ``folder``.

    Raises:
        ProjectError: no project file, malformed TOML, or a key outside the schema; the message names
            the file, the line and the key.
    """
    from pydantic import ValidationError

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ProjectError(f"project folder {folder} does not exist")
    path = find_file(root)
    text = path.read_text(encoding="utf-8")
    raw = _read_toml(path)
    prefix: tuple[str, ...] = ()
    if path.name == PYPROJECT:
        raw, prefix = raw["tool"]["mlcicd"], ("tool", "mlcicd")
    try:
        spec = ProjectFile.model_validate(raw)
    except ValidationError as exc:
        raise ProjectError(_describe(exc, path, text, prefix)) from None
    for key, problem in [*_task_problems(spec), *_trusted_problems(spec, root)]:
        full = (*prefix, *key)
        raise ProjectError(f"{path}:{line_of(text, full)}: {'.'.join(full)}: {problem}")
    return Project(root=root, file=path, spec=spec)


def load_all(paths: Iterable[str | Path]) -> list[Project]:
    """Every project, once checked together: one project per registered model.

    Raises:
        ProjectError: a project fails :func:`load`, or two claim one registered model; every problem is named.
    """
    projects: list[Project] = []
    problems: list[str] = []
    for folder in paths:
        try:
            project = load(folder)
        except ProjectError as exc:
            problems.append(f"{folder}: {exc}")
            continue
        problem = _clash(project, projects)
        if problem:
            problems.append(problem)
            continue
        projects.append(project)
    if problems:
        raise ProjectError("\n".join(problems))
    return projects


def _clash(project: Project, others: Sequence[Project]) -> str | None:
    """Why ``project`` cannot sit beside ``others`` on one installation: its model or its endpoint is taken."""
    for other in others:
        if other.name == project.name:
            return (
                f"{other.file} and {project.file} both claim the registered model {project.name!r}: "
                "one project per registered model (its champion, endpoint and monitor are its own)"
            )
        if other.spec.deploy.port == project.spec.deploy.port:
            port = project.spec.deploy.port
            shared = (
                f"port {port}" if port else "the installation's port (MLCICD_LOCAL_PORT, MLCICD_DOCKER_PORT)"
            )
            return (
                f"{other.file} and {project.file} both claim {shared} for their endpoint on the local and "
                "docker targets: give each its own [deploy] port"
            )
    return None


def of_model(model_name: str, configured: Iterable[str], base: Path) -> Project | None:
    """The configured project that owns ``model_name``, if one does."""
    return next((p for p in load_valid(configured, base) if p.name == model_name), None)


def folders(configured: Iterable[str], base: Path) -> list[Path]:
    """The configured project folders (``MLCICD_PROJECTS``), a relative one taken from ``base``."""
    return [Path(f).expanduser() if Path(f).expanduser().is_absolute() else base / f for f in configured]


def load_valid(configured: Iterable[str], base: Path) -> list[Project]:
    """The configured projects that load, the first of two claiming one model: what the DAG files build
    DAGs for, so that one team's broken project file does not take the others' DAGs away. ``dags/ml_projects.py``
    raises the errors of the rest (:func:`load_all`), where the UI shows them."""
    out: list[Project] = []
    for folder in folders(configured, base):
        try:
            project = load(folder)
        except ProjectError:
            continue
        if _clash(project, out) is None:
            out.append(project)
    return out


def _trusted_problems(spec: ProjectFile, root: Path) -> list[tuple[tuple[str, ...], str]]:
    """Trusted types must be the project's own: a class of a package or module in its folder."""
    out = []
    for name in spec.training.trusted_types:
        top = name.split(".")[0]
        if not ((root / top / "__init__.py").is_file() or (root / f"{top}.py").is_file()):
            out.append(
                (
                    ("training", "trusted_types"),
                    f"{name!r} is not a class of the project's own code ({top}/ is not in {root})",
                )
            )
    return out


def _task_problems(spec: ProjectFile) -> list[tuple[tuple[str, ...], str]]:
    metrics = TASK_METRICS[spec.model.task]
    out = [
        (
            ("gate", "thresholds", name),
            f"not a metric of a {spec.model.task} task; choose from {', '.join(metrics)}",
        )
        for name in spec.gate.thresholds
        if name not in metrics
    ]
    out += [
        (("gate", "thresholds", name), f"{bound:g} is not a score between 0 and 1")
        for name, bound in spec.gate.thresholds.items()
        if metrics.get(name) == "min" and name != "r2" and not 0 <= bound <= 1
    ]
    if spec.gate.primary_metric and spec.gate.primary_metric not in metrics:
        out.append(
            (
                ("gate", "primary_metric"),
                f"not a metric of a {spec.model.task} task; choose from {', '.join(metrics)}",
            )
        )
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not UTF-8 text") from None


def _describe(exc: Any, path: Path, text: str, prefix: tuple[str, ...]) -> str:
    lines = []
    for err in exc.errors():
        key = tuple(str(k) for k in err["loc"])
        what = "unknown key (misspelt?)" if err["type"] == "extra_forbidden" else err["msg"]
        full = (*prefix, *key)
        lines.append(f"{path}:{line_of(text, full)}: {'.'.join(full) or '(top level)'}: {what}")
    return "the project file breaks its schema:\n" + "\n".join(f"  {line}" for line in lines)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")


def line_of(text: str, key: Sequence[str]) -> int:
    """The line (1-based) where ``key`` (a path of table and key names) is written, else the line of
    its nearest enclosing table that is, else 1.

    tomllib keeps no positions and the TOML libraries that do (tomlkit) expose none for a key path;
    the path's own names are enough to find the line in the text.
    """
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split(header.group(1))
            found.setdefault(table, number)
            continue
        assignment = _KEY.match(line)
        if assignment:
            full = (*table, *_split(assignment.group(1)))
            for end in range(len(table) + 1, len(full) + 1):
                found.setdefault(full[:end], number)
            inline = line[assignment.end() :]
            for name in re.findall(r"([A-Za-z0-9_-]+)\s*=", inline):  # {a = 1, b = 2}: one level in
                found.setdefault((*full, name), number)
    parts = tuple(key)
    for end in range(len(parts), 0, -1):
        if parts[:end] in found:
            return found[parts[:end]]
    return 1


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in dotted.split("."))
