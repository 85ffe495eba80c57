"""``ml_monitor``: test one window of served predictions for drift and decay, and decide on a retrain."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd import record, trust
from mlcicd.boundary import mlflow_client, push_links, run_dir, stage
from mlcicd.names import Task, mlflow_run_url
from mlcicd.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from mlcicd.monitoring import DriftResult, RetrainDecision, RetrainPolicy
    from mlcicd.registry import ChampionRef

log = logging.getLogger("mlcicd")


@dataclass
class Window:
    """What was observed in a window, before the retrain policy is applied."""

    note: str
    predictions: int = 0
    malformed: int = 0
    hostile: dict[str, int] = field(default_factory=dict)
    tested_rows: int = 0
    counts: bool = True  # whether the window counts towards the policy's consecutive windows
    drift: DriftResult | None = None
    decay: dict[str, Any] | None = None
    reference: pd.DataFrame | None = None
    current: pd.DataFrame | None = None


def monitor_window(run_id: str, params: dict[str, Any], window_end: datetime) -> dict[str, Any]:
    """Evaluate one window of logged predictions and decide, under the guarded policy, whether to retrain."""
    from mlcicd import monitoring, registry
    from mlcicd.monitoring import report as window_report

    with stage(run_id, Task.EVALUATE_WINDOW) as settings:
        name = str(params["model_name"])
        retrain_conf(
            params, name
        )  # a conf ml_retrain would refuse is a mistake to show now, not at the retrain
        start = window_end - timedelta(minutes=int(params["window_minutes"]))
        policy = monitoring.RetrainPolicy(
            consecutive_windows=int(params["consecutive_windows"]),
            cooldown=timedelta(hours=float(params["cooldown_hours"])),
            min_predictions=int(params["min_predictions"]),
        )
        c, _ = mlflow_client(settings)
        champ = trust.trusted_champion(c, settings.signing_key(), name)
        window = observe(settings, c, champ, name, start, window_end, policy.min_predictions)
        decision = apply_policy(settings.monitor_dir(name) / "history.json", window_end, window, policy)
        log.info(
            "window %s .. %s: %s; retrain: %s (%s)",
            start,
            window_end,
            window.note,
            decision.retrain,
            decision.reason,
        )
        report_path = None
        if window.drift is not None and champ is not None:
            report_path = settings.monitor_dir(name) / "reports" / f"{record.run_key(run_id)}.html"
            report_path.parent.mkdir(parents=True, exist_ok=True)
            title = f"{name} v{champ.version}: {start:%Y-%m-%d %H:%M} - {window_end:%H:%M} UTC"
            report_path.write_text(
                window_report.render_report(
                    window.reference, window.current, window.drift, title, decision, window.hostile
                )
            )
        report = monitoring.WindowReport(
            model_name=name,
            champion_version=champ.version if champ else None,
            window_start=start.isoformat(),
            window_end=window_end.isoformat(),
            predictions=window.predictions,
            malformed_records=window.malformed,
            hostile=window.hostile,
            tested_rows=window.tested_rows,
            drift=window.drift.to_dict() if window.drift else None,
            decay=window.decay,
            decision={"retrain": decision.retrain, "reason": decision.reason, "evidence": decision.evidence},
            note=window.note,
            report_path=str(report_path) if report_path else None,
        )
        if report_path is not None:
            experiment = registry.ensure_experiment(
                c, f"{settings.experiment_name}_monitor", settings.artifact_root
            )
            mlflow_run = window_report.log_window_to_mlflow(
                experiment, f"{name}-{record.run_key(run_id)}", report, report_path
            )
            push_links(mlflow_run=mlflow_run_url(settings.mlflow_ui_url, experiment, mlflow_run))
        out = report.to_dict()
        record.update(run_dir(settings, run_id), monitor=out)
        return out


def observe(
    settings: Settings,
    c: Any,
    champ: ChampionRef | None,
    name: str,
    start: datetime,
    end: datetime,
    min_predictions: int,
) -> Window:
    """Read the window's prediction log and test it against the champion's training reference."""
    from mlcicd import monitoring
    from mlcicd.errors import UntrustedArtifact
    from mlcicd.serving import predlog
    from mlcicd.training import load_reference

    if champ is None:
        return Window(f"no champion for {name}: nothing is served, nothing to monitor", counts=False)
    logged = predlog.read_window(settings.predictions_for(name), start, end, seed=int(end.timestamp()))
    malformed = logged.malformed
    if malformed or logged.oversized:
        log.warning(
            "prediction log: %s malformed and %s oversized lines skipped", malformed, logged.oversized
        )
    if not logged.lines:
        return Window(
            "empty window: no prediction logged",
            malformed=malformed,
            hostile={"oversized_lines": logged.oversized},
        )
    n, records = logged.lines, logged.records
    try:
        reference = load_reference(c, settings.signing_key(), name, champ.version)
    except UntrustedArtifact:
        raise  # the window is not judged against a reference the installation did not sign
    except Exception as exc:  # an older champion may lack it: say so, do not guess
        log.warning("champion v%s has no recorded training reference (%s)", champ.version, exc)
        return Window(
            f"champion v{champ.version} has no recorded reference; retrain it with this version of mlcicd",
            n,
            malformed,
            counts=False,
        )
    if n < min_predictions:
        return Window(f"{n} predictions: too few to test for drift", n, malformed)
    if not records:  # every line parsed was malformed
        return Window(f"{n} lines in the window, none of those read is a prediction record", n, malformed)
    current, hostile = monitoring.window_frame(records, reference)
    hostile = {"oversized_lines": logged.oversized, **hostile}
    if logged.parsed < n:
        log.info("%s predictions in the window: tested on a uniform sample of %s", n, len(records))
    drift = monitoring.detect_drift(reference, current)
    promoted = c.get_run(champ.run_id).data.metrics.get("holdout_accuracy")
    decay = monitoring.live_decay(
        records, monitoring.labels_for(records, settings.labels_for(name)), promoted
    )
    note = f"drifted: {', '.join(drift.drifted_features) or 'none'}"
    return Window(
        note,
        n,
        malformed,
        hostile,
        len(records),
        drift=drift,
        decay=decay,
        reference=reference,
        current=current,
    )


def apply_policy(history_path: Path, end: datetime, window: Window, policy: RetrainPolicy) -> RetrainDecision:
    """Add the window to the model's history (if it counts) and apply the guarded retrain policy."""
    from mlcicd import monitoring

    if not window.counts:
        return monitoring.RetrainDecision(False, window.note)
    history, last_retrain = monitoring.load_history(history_path)
    drifted = bool(window.drift and window.drift.dataset_drift)
    decayed = bool(window.decay and window.decay["decayed"])
    history = monitoring.upsert(
        history, monitoring.WindowOutcome(end, window.predictions, drifted, decayed, window.note)
    )
    decision = monitoring.decide_retrain(history, end, last_retrain, policy)
    monitoring.save_history(history_path, history, end if decision.retrain else last_retrain)
    return decision


def retrain_conf(monitor_params: dict[str, Any], model_name: str) -> dict[str, Any]:
    """The conf a retrain request carries, checked against ``ml_retrain``'s Params (ConfigError if not)."""
    from mlcicd.dag.params import check_retrain_conf

    return check_retrain_conf({**dict(monitor_params.get("retrain_conf") or {}), "model_name": model_name})


def retrain_request(report: dict[str, Any], monitor_params: dict[str, Any]) -> dict[str, Any]:
    """The extra of the retrain-request Asset event (JSON): why, for which model, with what conf."""
    conf = retrain_conf(monitor_params, report["model_name"])
    return {
        "reason": report["decision"]["reason"],
        "evidence": report["decision"]["evidence"],
        "model_name": report["model_name"],
        "window_end": report["window_end"],
        "conf": conf,
    }
