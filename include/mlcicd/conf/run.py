"""The run's params as the stages want them: typed, with defaults, and with retrain requests applied."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlcicd.choices import PROJECT_FAMILY, RETRAIN_DEFAULTS
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from mlcicd.data import SyntheticOptions
    from mlcicd.gate import Policy
    from mlcicd.project import Project
    from mlcicd.promotion.analysis import Plan
    from mlcicd.training import TrainParams


def target_name(params: dict[str, Any], settings: Settings) -> str:
    """The deploy target of this run: the ``deploy_target`` param, else the setting; checked by name."""
    from mlcicd.deploy import check_target

    return check_target(str(params.get("deploy_target") or settings.deploy_target))


def synthetic_options(params: dict[str, Any], run_date: datetime | None) -> SyntheticOptions:
    """The ``synthetic:`` source's knobs; the seed defaults to the run's date (YYYYMMDD)."""
    from mlcicd.data import SyntheticOptions

    seed = params.get("synthetic_seed")
    if seed is None:
        seed = int((run_date or datetime.now()).strftime("%Y%m%d"))
    knobs = {
        k: params.get(k, RETRAIN_DEFAULTS[k])
        for k in ("synthetic_rows", "synthetic_drift", "synthetic_corruption")
    }
    return SyntheticOptions(
        rows=int(knobs["synthetic_rows"]),
        seed=int(seed),
        drift=float(knobs["synthetic_drift"]),
        corruption=str(knobs["synthetic_corruption"]),
    )


def train_params(params: dict[str, Any], candidate: dict[str, Any] | None = None) -> TrainParams:
    """The run's hyperparameters, or a search candidate's (its estimator and sampled values over the run's)."""
    from mlcicd.training import TrainParams

    if candidate and candidate["estimator"] != PROJECT_FAMILY:
        params = {**params, **candidate["params"], "estimator": candidate["estimator"]}
    params = {**RETRAIN_DEFAULTS, **params}  # a project's DAG has no family knobs: their defaults, unused
    return TrainParams(
        estimator=str(params["estimator"]),
        n_estimators=int(params["n_estimators"]),
        max_depth=None if params.get("max_depth") in (None, 0) else int(params["max_depth"]),
        learning_rate=float(params["learning_rate"]),
        regularization_c=float(params["regularization_c"]),
        test_size=float(params["test_size"]),
        random_seed=int(params["random_seed"]),
    )


def project(params: dict[str, Any]) -> Project | None:
    """The model project of the run's DAG (its ``project`` Param), checked, and importable in this
    process from now on; None for ``ml_retrain`` and ``ml_monitor``.

    Raises:
        ProjectError: the project file no longer holds (it changed since the DAG was parsed).
    """
    folder = params.get("project")
    if not folder:
        return None
    from mlcicd import project as projects
    from mlcicd.errors import ConfigError
    from mlcicd.project.entry import activate
    from mlcicd.settings import PROJECT_ROOT, load

    # Only a configured project, and only for its own model: Airflow passes a trigger's unknown keys on
    # as params, so a run of a DAG that declares no project could name any folder.
    configured = [p.root for p in projects.load_valid(load().projects, PROJECT_ROOT)]
    found = projects.load(folder)
    if found.root not in configured or params.get("model_name") != found.name:
        raise ConfigError(
            f"project={str(folder)[:80]!r} is not the project of this run's DAG: a run trains the project its "
            f"DAG was built for (MLCICD_PROJECTS), for that project's model"
        )
    activate(found)
    return found


def hyperparameters(params: dict[str, Any], candidate: dict[str, Any] | None = None) -> dict[str, Any]:
    """A project's hyperparameters for this fit: the run's, with a search candidate's sampled values over them."""
    return {**dict(params.get("hyperparameters") or {}), **(candidate["params"] if candidate else {})}


def resamples(params: dict[str, Any], settings: Settings) -> int:
    """The bootstrap's resamples: the run's, lowered to the installation's ceiling
    (``MLCICD_BOOTSTRAP_MAX_RESAMPLES``); the comparison in the decision record keeps the count used."""
    return min(int(params["bootstrap_resamples"]), settings.bootstrap_max_resamples)


def policy(params: dict[str, Any], settings: Settings) -> Policy:
    """The gate's policy: the run's params, bounded by the installation's floors (they only tighten)."""
    from mlcicd.choices import GATED_METRICS
    from mlcicd.gate import Policy
    from mlcicd.settings import CEILINGS

    asked = {
        k: float(params[k]) for k in (*(f"min_{m}" for m in GATED_METRICS), "max_degradation", "confidence")
    }
    applied = {
        k: (min if k in CEILINGS else max)(v, settings.gate_floors[k]) if k in settings.gate_floors else v
        for k, v in asked.items()
    }
    return Policy(
        thresholds={m: applied[f"min_{m}"] for m in GATED_METRICS},
        primary_metric=str(params["primary_metric"]),
        max_degradation=applied["max_degradation"],
        confidence=applied["confidence"],
        asked=asked,
        floors=dict(settings.gate_floors),
    )


def params_of(context: Any) -> dict[str, Any]:
    """The run's params: with the conf of the retrain requests that started it (if any) applied, then
    tightened to the installation's rules (:mod:`mlcicd.policy`: params may not waive them)."""
    from mlcicd import policy
    from mlcicd.settings import load

    return policy.apply(asked_params(context), load()).params


def asked_params(context: Any) -> dict[str, Any]:
    """The params as the run asked for them (the retrain requests' conf applied), before the
    installation's rules: what ``reconcile_serving`` reports the rules changed."""
    events = context.get("triggering_asset_events") or {}
    extras = [dict(e.extra or {}) for evs in events.values() for e in evs]
    return params_from_events(context["params"], extras)


def params_from_events(params: dict[str, Any], extras: list[dict[str, Any]]) -> dict[str, Any]:
    """Params of a retrain started by retrain-request events: the newest event's conf wins.

    Each conf is checked against the DAG's Params first (an Asset event can be posted through the
    REST API by anyone allowed to): an unknown key or a bad value is a ConfigError, nothing is taken.
    """
    from mlcicd.dag.params import check_retrain_conf

    merged = dict(params)
    owner = project(params) if extras else None
    for extra in extras:
        merged.update(check_retrain_conf(extra.get("conf") or {}, owner))
    return merged


def scan_thresholds(params: dict[str, Any]) -> Any:
    """The scan's thresholds, with the ones the run's params set."""
    from mlcicd.scan import Thresholds

    return Thresholds(
        slice_drop=float(params["scan_slice_drop"]), major_slice_drop=float(params["scan_major_slice_drop"])
    )


def scan_verdict(params: dict[str, Any], scanned: dict[str, Any] | None) -> Any:
    """What the gate needs of the scan: its new MAJOR issues and how to treat them."""
    from mlcicd.gate import ScanFindings

    if not scanned:
        return None
    return ScanFindings(
        new_major=list(scanned["new_major"]),
        champion_version=scanned.get("champion_version"),
        reject=params["scan_major"] == "reject",
        allow_without_champion=bool(params["scan_allow_major_without_champion"]),
        minor=sum(i["severity"] != "major" for i in scanned["issues"]),
        report=scanned.get("report_url") or scanned.get("report_path"),
    )


def rollout_plan(params: dict[str, Any]) -> Plan:
    """The rollout the run asked for (``rollout`` and its ``rollout_*`` knobs)."""
    from mlcicd.promotion.analysis import Plan

    d = {k: params.get(k, RETRAIN_DEFAULTS[k]) for k in RETRAIN_DEFAULTS if k.startswith("rollout")}
    return Plan(
        mode=str(d["rollout"]),
        steps=tuple(sorted({int(x) for x in d["rollout_steps"]})),
        interval_s=int(d["rollout_interval_s"]),
        checks=int(d["rollout_checks"]),
        failure_limit=int(d["rollout_failure_limit"]),
        min_requests=int(d["rollout_min_requests"]),
        max_error_rate=float(d["rollout_max_error_rate"]),
        max_p99_ms=float(d["rollout_max_p99_ms"]),
        max_prediction_shift=float(d["rollout_max_prediction_shift"]),
        max_accuracy_drop=float(d["rollout_max_accuracy_drop"]),
    )
