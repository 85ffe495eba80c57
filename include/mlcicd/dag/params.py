"""The DAGs' Params (the trigger forms), and the check of a retrain request's conf against them.

The DAG files import these; ``ml_monitor`` checks the conf it sends to ``ml_retrain`` with
:func:`check_retrain_conf` before it emits the request, and ``ml_retrain`` checks it again on receipt
(anyone who can post an Asset event through the REST API can send one).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param

from mlcicd.dag.tables import MONITOR_PARAMS, RETRAIN_PARAMS
from mlcicd.names import RETRAIN_DAG

if TYPE_CHECKING:
    from mlcicd.project import Project


def retrain_params(project: Project | None = None) -> dict[str, Param]:
    """``ml_retrain``'s Params, or a model project's (:func:`project_retrain_specs`), new objects on each
    call: a run resolves its conf into them in place."""
    specs = RETRAIN_PARAMS if project is None else project_retrain_specs(project)
    return {key: Param(**copy.deepcopy(spec)) for key, spec in specs.items()}


# The built-in families' knobs: a project's entry point takes its own hyperparameters instead.
FAMILY_PARAMS = ("estimator", "n_estimators", "max_depth", "learning_rate", "regularization_c")
COMMIT_PATTERN = "^[0-9a-fA-F]{7,40}$"


def project_retrain_specs(project: Project) -> dict[str, dict[str, Any]]:
    """A project's retrain Params: ``ml_retrain``'s, with the project's defaults; its model, target and
    folder fixed; its thresholds as bounds a run may tighten and never loosen; its own hyperparameters
    in place of the built-in families' knobs; and the commit a CI run tested."""
    spec, gate = project.spec, project.spec.gate
    synthetic = project.dataset_uri.startswith("synthetic:")
    out = {
        k: copy.deepcopy(v)
        for k, v in RETRAIN_PARAMS.items()
        if k not in FAMILY_PARAMS and (synthetic or not k.startswith("synthetic_"))
    }
    fixed = {"model_name": project.name, "target_column": spec.model.target}
    for key, value in fixed.items():
        out[key].update(default=value, enum=[value], description=f"Fixed by the project ({project.file}).")
    out["dataset_uri"]["default"] = project.dataset_uri
    out["dataset_name"]["default"] = spec.data.dataset_name
    out["primary_metric"]["default"] = project.primary_metric
    for metric, bound in gate.thresholds.items():
        key = f"min_{metric}"
        if key in out:  # binary's floors; the other tasks' metrics get their Params with the task types
            out[key].update(default=bound, minimum=bound)
            out[key]["description"] += f" The project's floor: {bound:g}."
    out["max_degradation"].update(default=gate.max_degradation, maximum=gate.max_degradation)
    out["confidence"].update(default=gate.confidence, minimum=gate.confidence)
    out["test_size"]["default"] = spec.training.test_size
    out["random_seed"]["default"] = spec.training.random_seed
    deploy = spec.deploy
    out["deploy_target"]["default"] = deploy.target
    out["rollout"]["default"] = deploy.rollout
    out["rollout_steps"]["default"] = list(deploy.rollout_steps)
    out["approval"]["default"] = deploy.approval
    out["search"] = dict(
        default="none",
        type=["string", "object"],
        title="Candidate search",
        pattern="^(none|project)$|^\\s*\\{",
        propertyNames={"enum": ["project"]},
        description="none: one candidate with the hyperparameters below; project: the project file's "
        '[training.search]; or {"project": {"candidates": N, "space": {...}}} over the '
        "hyperparameters the entry point takes.",
    )
    return {
        "project": dict(
            default=str(project.root),
            type="string",
            enum=[str(project.root)],
            title="Model project",
            description=f"The folder this DAG trains ({spec.training.entry_point}); fixed.",
        ),
        **out,
        "hyperparameters": dict(
            default=dict(spec.training.hyperparameters),
            type="object",
            title="Hyperparameters",
            description=f"Given to {spec.training.entry_point}; keys the project file does not declare "
            "are refused.",
            propertyNames={"enum": sorted(spec.training.hyperparameters)},
        ),
        "code_commit": dict(
            default=None,
            type=["null", "string"],
            pattern=COMMIT_PATTERN,
            title="Commit tested",
            description="The commit CI tested: the run is refused unless the project's code is at it, "
            "with no uncommitted change. Empty: whatever the folder holds, recorded.",
        ),
    }


def monitor_params(project: Project | None = None) -> dict[str, Param]:
    """``ml_monitor``'s Params (a project's: its model fixed, its ``[monitor]`` defaults), new objects on each call."""
    return {key: Param(**spec) for key, spec in monitor_specs(project).items()}


def project_problems(project: Project) -> list[str]:
    """Why a project's DAGs cannot be built from its file: a task this version does not train, or a value
    its file allows that a Param of its DAGs does not (Airflow would refuse the whole DAG file)."""
    import jsonschema

    if project.task != "binary":
        return [
            f"{project.file}: task {project.task!r}: this version trains binary classifiers only "
            "(multiclass and regression come with the task types)"
        ]
    problems = []
    for specs in (project_retrain_specs(project), monitor_specs(project)):
        for key, spec in specs.items():
            schema = {k: v for k, v in spec.items() if k not in ("default", "title", "description")}
            try:
                jsonschema.validate(spec["default"], schema)
            except jsonschema.ValidationError as exc:
                problems.append(
                    f"{project.file}: {key}={spec['default']!r} is not allowed: {exc.message[:160]}"
                )
    return problems


def buildable(projects: list[Project]) -> list[Project]:
    """The projects whose DAGs can be built (:func:`project_problems`); ``dags/ml_projects.py`` reports the rest."""
    return [p for p in projects if not project_problems(p)]


def monitor_specs(project: Project | None = None) -> dict[str, dict[str, Any]]:
    specs = copy.deepcopy(MONITOR_PARAMS)
    if project is not None:
        specs["model_name"].update(default=project.name, enum=[project.name])
        for key, value in project.spec.monitor.model_dump().items():
            specs[key]["default"] = value
        specs["project"] = dict(
            default=str(project.root),
            type="string",
            enum=[str(project.root)],
            title="Model project",
            description="The folder whose model this DAG watches; fixed.",
        )
    return specs


def check_retrain_conf(conf: Any, project: Project | None = None) -> dict[str, Any]:
    """``conf`` if it is an object whose every key is a Param of ``ml_retrain`` (or of the project's
    retrain DAG) and every value valid (:func:`mlcicd.conf.check` against these Params' schemas).

    Raises:
        ConfigError: naming each bad key and why.
    """
    from mlcicd import conf as confs

    schemas = {key: param.schema for key, param in retrain_params(project).items()}
    return confs.check(conf, schemas, project.retrain_dag_id if project else RETRAIN_DAG)
