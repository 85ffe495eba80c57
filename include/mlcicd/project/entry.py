"""The project's training entry point: imported from the project folder, called, and held to its contract.

``package.module:function(hyperparameters, schema)`` returns an **unfitted** scikit-learn-compatible
estimator (typically a Pipeline with the team's own feature code) for the project's task; mlcicd fits
it. Everything the function or its estimator can get wrong is a :class:`ProjectError` that names it:
the import, an exception, a fitted or non-estimator result, the wrong kind of estimator for the task,
predictions of the wrong shape, and classes in the model file the project did not declare.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.project import Project, ProjectError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class BatchSchema:
    """What the entry point is told of the batch: its feature columns by kind, the target and the task."""

    target: str
    task: str
    columns: dict[str, str]  # feature column -> pandas dtype name
    numeric: tuple[str, ...] = field(default=())
    categorical: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, features: pd.DataFrame, target: str, task: str) -> BatchSchema:
        import pandas as pd

        numeric = tuple(c for c in features.columns if pd.api.types.is_numeric_dtype(features[c]))
        return cls(
            target=target,
            task=task,
            columns={str(c): str(features[c].dtype) for c in features.columns},
            numeric=numeric,
            categorical=tuple(c for c in features.columns if c not in numeric),
        )


_SEEN: list[str] = []  # the project folders this process has imported from


def activate(project: Project) -> None:
    """Import the project's code from its folder in this process from now on (a task's process serves
    one project): its folder goes first on ``sys.path`` and the folders of projects activated before
    leave it; the modules imported from any of those folders are forgotten, so that the code imported
    next is what this folder holds now (``mlcicd run`` runs every task in one process). Nothing
    imported from anywhere else is touched.

    Raises:
        ProjectError: a package of the project's is already imported from elsewhere (a library of
            the same name): the project's would not be the one imported.
    """
    root = str(project.root)
    if root not in _SEEN:
        _SEEN.append(root)
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if any(origin.startswith(seen + "/") for seen in _SEEN):
            del sys.modules[name]
    for name in packages(project):
        module = sys.modules.get(name)
        if module is not None:
            raise ProjectError(
                f"{project.name}'s package {name!r} is already imported here from "
                f"{getattr(module, '__file__', None) or 'a built-in module'}: rename the project's package"
            )
    for seen in _SEEN:
        if seen != root and seen in sys.path:
            sys.path.remove(seen)
    if sys.path[:1] != [root]:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    importlib.invalidate_caches()


def packages(project: Project) -> list[str]:
    """The top-level modules the project's folder provides: packages and modules its entry point can import
    (its tests folder aside)."""
    out = []
    for path in project.root.iterdir():
        if path.name.startswith((".", "_")) or path.name == "tests":
            continue
        if (path.is_dir() and (path / "__init__.py").is_file()) or (path.suffix == ".py" and path.is_file()):
            out.append(path.stem)
    return sorted(out)


def resolve(project: Project) -> Any:
    """The entry point's function, imported from the project folder."""
    spec = project.spec.training.entry_point
    module_name, _, attr = spec.partition(":")
    activate(project)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error of the team's code, whatever it is
        raise ProjectError(
            f"entry point {spec}: module {module_name!r} cannot be imported from {project.root}: "
            f"{type(exc).__name__}: {exc}{_where(exc, project)}"
        ) from None
    function = getattr(module, attr, None)
    if function is None:
        raise ProjectError(f"entry point {spec}: {module_name} has no {attr!r} ({module.__file__})")
    if not callable(function):
        raise ProjectError(f"entry point {spec}: {attr!r} is a {type(function).__name__}, not a function")
    return function


def build(project: Project, hyperparameters: dict[str, Any], schema: BatchSchema) -> Any:
    """Call the entry point and check what it returns: an unfitted estimator for the project's task.

    Raises:
        ProjectError: as the module says.
    """
    function = resolve(project)
    spec = project.spec.training.entry_point
    try:
        estimator = function(dict(hyperparameters), schema)
    except Exception as exc:  # the team's code raised: its message and where
        raise ProjectError(
            f"entry point {spec} raised {type(exc).__name__}: {exc}{_where(exc, project)}"
        ) from None
    check_estimator(estimator, project.task, spec)
    return estimator


def estimator(
    project: Project, features: pd.DataFrame, target: str, hyperparameters: dict[str, Any], seed: int
) -> Any:
    """The unfitted estimator of one fit: the entry point called with ``hyperparameters`` and the run's
    ``random_seed`` (always given, so that a rebuild can seed what it seeds) and the batch's schema."""
    given = {**hyperparameters, "random_seed": seed}
    return build(project, given, BatchSchema.of(features, target, project.task))


def fit(
    project: Project,
    features: pd.DataFrame,
    labels: pd.Series,
    hyperparameters: dict[str, Any],
    seed: int,
    timeout_s: float | None = None,
) -> tuple[Any, list[str]]:
    """(the fitted model, the project's types it holds): built and fitted within ``timeout_s``, its
    predictions of the right shape and its types declared.

    Raises:
        ProjectError: as the module says, or the build and fit took longer than ``timeout_s``.
    """
    import contextlib

    from mlcicd.search.limits import CandidateTimeout, time_limit

    spec = project.spec.training.entry_point
    try:
        with time_limit(timeout_s) if timeout_s else contextlib.nullcontext():
            model = estimator(project, features, str(labels.name), hyperparameters, seed)
            model.fit(features, labels)
    except CandidateTimeout:
        raise ProjectError(
            f"building and fitting {spec} took longer than search_timeout_s={timeout_s:g} s"
        ) from None
    except ProjectError:
        raise
    except Exception as exc:  # the team's estimator failed to fit: its message and where
        raise ProjectError(
            f"the estimator of {spec} failed to fit: {type(exc).__name__}: {exc}{_where(exc, project)}"
        ) from None
    try:
        check_predictions(model, features.head(100), project.task, spec)
        return model, check_types(model, project)
    except ProjectError:
        raise
    except Exception as exc:  # predict, predict_proba or the skops writer failed on the team's model
        raise ProjectError(
            f"the fitted estimator of {spec} failed: {type(exc).__name__}: {exc}{_where(exc, project)}"
        ) from None


def check_estimator(estimator: Any, task: str, spec: str) -> None:
    """An unfitted scikit-learn-compatible estimator of the task's kind."""
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    missing = [m for m in ("fit", "predict", "get_params") if not callable(getattr(estimator, m, None))]
    if missing:
        raise ProjectError(
            f"entry point {spec} returned a {type(estimator).__name__}, not a scikit-learn estimator "
            f"(it has no {', '.join(missing)}); return an unfitted estimator or Pipeline"
        )
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        pass
    except TypeError:  # check_is_fitted refuses what is not an estimator
        raise ProjectError(
            f"entry point {spec} returned a {type(estimator).__name__}, not an estimator"
        ) from None
    else:
        raise ProjectError(
            f"entry point {spec} returned a fitted {type(estimator).__name__}: return it unfitted; mlcicd "
            "fits it on the batch's training split, so that the gate judges what the batch taught it"
        )
    if task == "regression" and not is_regressor(estimator):
        raise ProjectError(
            f"entry point {spec} returned a {type(estimator).__name__}, not a regressor (task: regression)"
        )
    if task != "regression":
        if not is_classifier(estimator):
            raise ProjectError(
                f"entry point {spec} returned a {type(estimator).__name__}, not a classifier (task: {task})"
            )
        if not hasattr(estimator, "predict_proba"):
            raise ProjectError(
                f"entry point {spec}: {type(estimator).__name__} has no predict_proba; the gate, the scan "
                "and the rollout compare class probabilities"
            )


def check_predictions(model: Any, features: pd.DataFrame, task: str, spec: str) -> None:
    """The fitted model predicts one value per row (and, for a classifier, one probability per class)."""
    import numpy as np

    rows = len(features)
    predicted = np.asarray(model.predict(features))
    if predicted.shape != (rows,):
        raise ProjectError(
            f"the estimator of {spec} predicts shape {predicted.shape} for {rows} rows; expected ({rows},)"
        )
    if task != "regression":
        classes = len(getattr(model, "classes_", ()))
        proba = np.asarray(model.predict_proba(features))
        if proba.shape != (rows, classes):
            raise ProjectError(
                f"the estimator of {spec} gives predict_proba of shape {proba.shape} for {rows} rows and "
                f"{classes} classes; expected ({rows}, {classes})"
            )


def undeclared_types(model: Any, project: Project) -> list[str]:
    """Types in the model's skops file that neither skops, mlcicd's loader nor the project trusts."""
    import skops.io

    from mlcicd.serving.modelfile import TRUSTED_TYPES

    declared = set(TRUSTED_TYPES) | set(project.spec.training.trusted_types)
    return sorted(t for t in skops.io.get_untrusted_types(data=skops.io.dumps(model)) if t not in declared)


def check_types(model: Any, project: Project) -> list[str]:
    """The project's declared types the model holds (what its loader must trust).

    Raises:
        ProjectError: the model holds a type the project did not declare.
    """
    import skops.io

    undeclared = undeclared_types(model, project)
    if undeclared:
        raise ProjectError(
            f"the model of {project.name} holds {', '.join(undeclared)}, which {project.file.name} does not "
            "declare: the server's loader refuses any class it was not told to trust. If it is your own "
            "code, add it to [training] trusted_types; otherwise build the model without it"
        )
    held = set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    return sorted(t for t in project.spec.training.trusted_types if t in held)


def _where(exc: BaseException, project: Project) -> str:
    """`` (file.py:12)``: the deepest frame of the traceback inside the project folder, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(project.root))]
    if not frames:
        return ""
    last = frames[-1]
    return f" ({Path(last.filename).relative_to(project.root)}:{last.lineno})"
