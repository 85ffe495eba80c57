"""A model project's search: one family, ``project`` (its entry point), over the hyperparameters it
declares. The project knows their types and ranges, so only the space's shape is checked here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlcicd.choices import DISTRIBUTIONS, PROJECT_FAMILY
from mlcicd.errors import ConfigError

if TYPE_CHECKING:
    from mlcicd.project import Project


def parse_project(spec: Any, project: Project) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the search's name, ``{"project": space}``) of a model project's ``search`` param.

    Raises:
        ConfigError: not none, project or ``{"project": {...}}``; ``project`` with no ``[training.search]``;
            a space over hyperparameters the project does not declare, or of the wrong shape.
    """
    declared = project.spec.training.search
    if isinstance(spec, str) and spec.strip() == "none":
        return "none", {}
    if isinstance(spec, str) and spec.strip() == PROJECT_FAMILY:
        if declared is None:
            raise ConfigError(
                f"search=project, but {project.file} declares no [training.search]: add one, or give the "
                'space in the param, e.g. {"project": {"candidates": 3, "space": {...}}}'
            )
        name, spaces = "project", {PROJECT_FAMILY: declared.model_dump()}
    else:
        try:
            spaces = json.loads(spec) if isinstance(spec, str) else spec
        except json.JSONDecodeError:
            spaces = None
        if not isinstance(spaces, dict) or set(spaces) != {PROJECT_FAMILY}:
            raise ConfigError(
                f'search for a model project is none, project, or {{"project": {{"candidates": N, "space": '
                f"{{...}}}}}}; got {str(spec)[:80]!r}"
            )
        name = "custom"
    found = space_problems(spaces[PROJECT_FAMILY], set(project.spec.training.hyperparameters))
    if found:
        raise ConfigError("the search space is refused: " + "; ".join(found))
    return name, spaces


def space_problems(entry: Any, declared: set[str]) -> list[str]:
    """A project's space: its hyperparameters are the project's own, so only their shape is checked."""
    if not isinstance(entry, dict) or set(entry) - {"candidates", "space"}:
        return [f'project: expected {{"candidates": N, "space": {{...}}}}, got {json.dumps(entry)[:80]}']
    n, space = entry.get("candidates"), entry.get("space", {})
    problems = []
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        problems.append(f"project: candidates must be a positive integer, got {n!r}")
    if not isinstance(space, dict) or not space:
        return [*problems, "project: space must be an object of hyperparameters"]
    for name, values in space.items():
        where = f"project.{str(name)[:40]}"
        if name not in declared:
            problems.append(
                f"{where}: not a hyperparameter the project declares ({', '.join(sorted(declared))})"
            )
        elif isinstance(values, list):
            if not values:
                problems.append(f"{where}: an empty list of values")
        elif not isinstance(values, dict) or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
            problems.append(
                f"{where}: expected a list of values or one of {{{', '.join(DISTRIBUTIONS)}: [low, high]}}"
            )
        else:
            ((dist, bounds),) = values.items()
            numbers = (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            )
            if not numbers or bounds[0] > bounds[1] or (dist != "randint" and bounds[0] == bounds[1]):
                problems.append(f"{where}: {dist} needs [low, high] numbers with low below high")
            elif dist == "loguniform" and bounds[0] <= 0:
                problems.append(f"{where}: loguniform needs positive bounds")
            elif dist == "randint" and not all(isinstance(b, int) for b in bounds):
                problems.append(f"{where}: randint needs integer bounds")
    return problems
