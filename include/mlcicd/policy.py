"""The installation's rules that protect production, and how a run's params meet them.

Approval, the scan's severity, the first-model allowance, which models and targets may be deployed:
these are settings (``MLCICD_REQUIRE_APPROVAL``, ``MLCICD_SCAN_MAJOR``,
``MLCICD_SCAN_ALLOW_MAJOR_WITHOUT_CHAMPION``, ``MLCICD_ALLOWED_MODELS``, ``MLCICD_ALLOWED_TARGETS``),
and a run's params (from the trigger form, the REST API, an Asset event's retrain conf) may only make
them stricter, as with the gate's floors. Pure: the stages apply it to the params they are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlcicd.errors import ConfigError
from mlcicd.settings import Settings


@dataclass(frozen=True)
class Applied:
    params: dict[str, Any]
    overridden: list[str] = field(default_factory=list)  # what the installation changed, in words


def check_allowed(params: dict[str, Any], settings: Settings) -> None:
    """Raise ConfigError for a model or deploy target the installation does not allow."""
    model, target = str(params.get("model_name")), params.get("deploy_target") or settings.deploy_target
    if settings.allowed_models and model not in settings.allowed_models:
        raise ConfigError(
            f"model_name={model!r} is not one this installation deploys (MLCICD_ALLOWED_MODELS: "
            f"{', '.join(settings.allowed_models)})"
        )
    if settings.allowed_targets and target not in settings.allowed_targets:
        raise ConfigError(
            f"deploy_target={target!r} is not allowed here (MLCICD_ALLOWED_TARGETS: "
            f"{', '.join(settings.allowed_targets)})"
        )


def apply(params: dict[str, Any], settings: Settings) -> Applied:
    """The params a run works with: the asked ones, tightened to the installation's rules."""
    out, notes = dict(params), []
    if settings.require_approval and not params.get("approval"):
        out["approval"] = True
        notes.append("approval=false asked; MLCICD_REQUIRE_APPROVAL makes it true")
    if settings.scan_major == "reject" and params.get("scan_major") == "warn":
        out["scan_major"] = "reject"
        notes.append("scan_major=warn asked; MLCICD_SCAN_MAJOR=reject keeps it reject")
    if params.get("scan_allow_major_without_champion") and not settings.scan_allow_major_without_champion:
        out["scan_allow_major_without_champion"] = False
        notes.append(
            "scan_allow_major_without_champion=true asked; the installation does not allow it "
            "(MLCICD_SCAN_ALLOW_MAJOR_WITHOUT_CHAMPION)"
        )
    return Applied(out, notes)


def approvers(settings: Settings, triggered_by: str | None) -> list[str]:
    """Who may answer a run's approval (empty: whoever Airflow lets answer). With four eyes, the user
    who triggered the run is left out.

    Raises:
        ConfigError: four eyes leaves nobody.
    """
    allowed = [u for u in settings.approvers if not (settings.approval_four_eyes and u == triggered_by)]
    if settings.approvers and not allowed:
        raise ConfigError(
            f"nobody may approve this run: {triggered_by!r}, who triggered it, is the only approver "
            "and MLCICD_APPROVAL_FOUR_EYES asks for a second person; add approvers to MLCICD_APPROVERS"
        )
    return allowed
