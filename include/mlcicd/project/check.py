"""``mlcicd check``: a model repository's CI step one, before any run is triggered.

Four steps, each stopping the check when it fails, each with its exit status: the project file holds
its schema (2); the project's own unit tests pass (3); the entry point's estimator fits a small sample
of the project's batches, or rows made from its declared contract where the batches cannot be read
(4); and the fitted model survives the serving round trip: written as training writes it (skops, the
declared classes), read back by the model server's loader, and predicting exactly what it predicted
before (5).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.errors import MlcicdError
from mlcicd.project import Project, ProjectError, load

if TYPE_CHECKING:
    import pandas as pd

    from mlcicd.settings import Settings

SAMPLE_ROWS = 500
TEST_TIMEOUT_S = 600


@dataclass
class Step:
    name: str
    exit_code: int
    ok: bool = False
    seconds: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


STEPS = (("project file", 2), ("unit tests", 3), ("fit on a sample", 4), ("serving round trip", 5))


def check(
    folder: str | Path, settings: Settings, report: Callable[[Step], None] = lambda s: None
) -> list[Step]:
    """Run the steps in order until one fails (the steps that ran); ``report`` sees each step as it ends."""
    steps = [Step(name, code) for name, code in STEPS]
    found: dict[str, Any] = {}
    actions = (
        lambda: _project_file(folder, found),
        lambda: run_tests(found["project"]),
        lambda: _fit(found, settings),
        lambda: round_trip(found["project"], found["model"], found["trusted"], found["features"]),
    )
    for step, action in zip(steps, actions, strict=True):
        started = time.monotonic()
        try:
            step.detail, step.ok = action(), True
        except MlcicdError as exc:
            step.detail = str(exc)
        except Exception as exc:  # whatever the team's code raised: reported as the step's failure
            step.detail = f"{type(exc).__name__}: {exc}"
        step.seconds = round(time.monotonic() - started, 2)
        report(step)
        if not step.ok:
            return steps[: steps.index(step) + 1]
    return steps


def _project_file(folder: str | Path, found: dict[str, Any]) -> str:
    found["project"] = project = load(folder)
    return f"{project.file}: {project.name} ({project.task}, entry point {project.spec.training.entry_point})"


def run_tests(project: Project) -> str:
    """The project's unit tests with pytest, from its folder (its code importable as in training)."""
    paths = [p for p in project.spec.tests.paths if (project.root / p).exists()]
    if not paths:
        raise ProjectError(
            f"{project.name} has no unit tests ({', '.join(project.spec.tests.paths)} under {project.root}): "
            "write one for your feature code (`python -m mlcicd init` scaffolds one), or name where they are "
            "in [tests] paths"
        )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(project.root),
        *paths,
    ]
    env = {**os.environ, "PYTHONPATH": str(project.root), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        out = subprocess.run(
            cmd, cwd=project.root, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, env=env
        )
    except subprocess.TimeoutExpired:
        raise ProjectError(f"the unit tests of {project.name} took longer than {TEST_TIMEOUT_S} s") from None
    last = out.stdout.strip().splitlines()[-1:] or ["(no output)"]
    if out.returncode != 0:
        tail = "\n".join(out.stdout.strip().splitlines()[-25:])
        raise ProjectError(
            f"the unit tests of {project.name} failed ({last[0]}):\n{tail}\n{out.stderr[-1000:]}"
        )
    return last[0]


def sample(project: Project, settings: Settings) -> tuple[pd.DataFrame, str]:
    """(a sample of the project's batches, where it came from); rows made from the declared suite where
    the batches cannot be read here."""
    import json

    from mlcicd import data
    from mlcicd.validation.sample import rows_from_suite

    seed = project.spec.training.random_seed
    try:
        df = data.read_batch(
            project.dataset_uri,
            data.SyntheticOptions(rows=SAMPLE_ROWS, seed=seed),
            roots=(*settings.data_roots, str(project.root)),
            memory_limit_mb=settings.memory_limit_mb,
        )
    except MlcicdError as exc:
        if project.suite_path is None:
            raise ProjectError(
                f"the batches of {project.name} ({project.dataset_uri}) cannot be read here ({exc}), and the "
                "project declares no [data] suite to make rows from: declare one, or run check where the batches are"
            ) from None
        try:
            suite = json.loads(project.suite_path.read_text())
            made = rows_from_suite(suite, SAMPLE_ROWS, seed)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ProjectError(f"rows cannot be made from the suite {project.suite_path}: {err}") from None
        return made, f"{SAMPLE_ROWS} rows made from {project.suite_path.name}"
    rows = min(SAMPLE_ROWS, len(df))
    return df.sample(n=rows, random_state=seed), f"{rows} rows of {project.dataset_uri}"


def _fit(found: dict[str, Any], settings: Settings) -> str:
    from mlcicd.project import entry

    project = found["project"]
    df, source = sample(project, settings)
    target = project.spec.model.target
    if target not in df.columns:
        raise ProjectError(f"the sample ({source}) has no target column {target!r}")
    features, labels = df.drop(columns=[target]), df[target]
    hyperparameters = dict(project.spec.training.hyperparameters)
    model, trusted = entry.fit(project, features, labels, hyperparameters, project.spec.training.random_seed)
    found.update(model=model, trusted=trusted, features=features)
    return f"{type(model).__name__} fitted on {source}" + (f"; holds {', '.join(trusted)}" if trusted else "")


def round_trip(project: Project, model: Any, trusted: list[str], features: pd.DataFrame) -> str:
    """Write the model as training does, read it back with the model server's loader, compare predictions."""
    import mlflow.sklearn
    import numpy as np

    from mlcicd.serving import modelfile
    from mlcicd.training import model_options

    with tempfile.TemporaryDirectory(prefix="mlcicd-check-") as tmp:
        folder = Path(tmp) / "model"
        mlflow.sklearn.save_model(model, folder, **model_options(model, features.head(5), trusted))
        try:
            served = modelfile.load(folder, modelfile.digest(folder), f"the model of {project.name}")
        except modelfile.UntrustedModel as exc:
            raise ProjectError(str(exc)) from None
    pairs = [("predict", model.predict(features), served.predict(features))]
    if hasattr(model, "predict_proba"):
        pairs.append(("predict_proba", model.predict_proba(features), served.predict_proba(features)))
    for method, before, after in pairs:
        if not np.array_equal(np.asarray(before), np.asarray(after)):
            raise ProjectError(
                f"the model read back by the server's loader gives other {method} results than the one "
                f"fitted ({int(np.sum(np.asarray(before) != np.asarray(after)))} of {np.asarray(before).size} "
                "values differ): something in it does not survive skops (state kept outside its attributes?)"
            )
    return f"written with skops, read back by the server's loader, same predictions on {len(features)} rows"
