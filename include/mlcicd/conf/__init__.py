"""A run's conf: checked here, wherever it enters; read as the stages want it in :mod:`.run`.

The CI client (:mod:`mlcicd.client.trigger`, with the schemas the Airflow server reports),
``mlcicd run`` (:mod:`mlcicd.cli.env`, with the DAG's own Params) and a retrain request's conf
(:func:`mlcicd.dag.params.check_retrain_conf`, on both ends of the hand-off) all call :func:`check`:
the same rules, the same messages, one error type (:class:`~mlcicd.errors.ConfigError`). It needs
no Airflow and no ML stack: only ``jsonschema``, as Airflow's own ``Param`` validation does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlcicd.choices import NAME_PATTERN, is_name
from mlcicd.errors import ConfigError

NAMES = ("model_name", "dataset_name")  # matched in full: a JSON-schema pattern lets a trailing "\n" by
SHOWN = 60  # characters of a key or value shown in a message


def check(
    conf: Any, schemas: Mapping[str, Mapping[str, Any] | None], dag_id: str = "ml_retrain"
) -> dict[str, Any]:
    """``conf`` if it is an object whose every key is a Param of ``dag_id`` and every value valid.

    ``schemas``: each Param's JSON schema (``Param.schema``, or ``params[key]["schema"]`` as the REST
    API reports them). Beyond the schemas: names match :data:`~mlcicd.choices.NAME_PATTERN` in full,
    and a ``search`` has a known shape (drawing its candidates needs scikit-learn: not here). A model
    project's DAG (it has a ``project`` Param) has its search checked where the project is read.

    Raises:
        ConfigError: naming every bad key and why.
    """
    import jsonschema

    if not isinstance(conf, Mapping):
        raise ConfigError(f"a {dag_id} conf must be a JSON object of its params, got {type(conf).__name__}")
    problems = []
    if unknown := sorted(_short(str(k)) for k in conf if k not in schemas):
        problems.append(f"unknown param(s) {', '.join(unknown)}")
    for key, value in conf.items():
        if key not in schemas:
            continue
        try:
            jsonschema.validate(value, dict(schemas[key] or {}), format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            problems.append(f"{key}={_shown(value)} is invalid: {exc.message[:200]}")
            continue
        if key in NAMES and value is not None and not is_name(value):
            problems.append(f"{key}={_shown(value)} is invalid: it must match {NAME_PATTERN} in full")
        elif key == "search" and "project" not in schemas:  # a project's space: checked with its project
            from mlcicd import search

            try:
                search.parse(value)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError(
            f"the {dag_id} conf is refused: {'; '.join(problems)}. See its Params (the trigger form)"
        )
    return dict(conf)


def check_names(params: Mapping[str, Any]) -> None:
    """The run's model and dataset names, matched in full (the params' schema lets a trailing newline by).

    Raises:
        ConfigError: a name that is not one.
    """
    for key in NAMES:
        value = params.get(key)
        if (value is not None or key == "model_name") and not is_name(value):
            raise ConfigError(
                f"{key}={value!r} is not a name: it must match {NAME_PATTERN} in full "
                "(letters, digits, '_', '.', '-'; no spaces or line breaks)"
            )


def _short(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _shown(value: Any) -> str:
    return _short(json.dumps(value, default=str))
