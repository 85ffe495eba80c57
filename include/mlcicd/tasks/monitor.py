"""``ml_monitor``: test one window of served predictions for drift and decay, and decide on a retrain."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from mlcicd import record, trust
from mlcicd.boundary import mlflow_client, push_links, run_dir, stage
from mlcicd.conf import run as p
from mlcicd.names import Task, mlflow_run_url

log = logging.getLogger("mlcicd")


def monitor_window(run_id: str, params: dict[str, Any], window_end: datetime) -> dict[str, Any]:
    """Evaluate one window of logged predictions and decide, under the guarded policy, whether to retrain."""
    from mlcicd import monitoring, registry
    from mlcicd.monitoring import report as window_report
    from mlcicd.monitoring.window import apply_policy, observe

    with stage(run_id, Task.EVALUATE_WINDOW) as settings:
        name = str(params["model_name"])
        # A conf ml_retrain would refuse is a mistake to show now, not at the retrain.
        retrain_conf(params, name)
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


def retrain_conf(monitor_params: dict[str, Any], model_name: str) -> dict[str, Any]:
    """The conf a retrain request carries, checked against ``ml_retrain``'s Params (ConfigError if not)."""
    from mlcicd.dag.params import check_retrain_conf

    conf = {**dict(monitor_params.get("retrain_conf") or {}), "model_name": model_name}
    return check_retrain_conf(conf, p.project(monitor_params))


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
