"""A monitoring window's report: the HTML page (verdict, tests, a plot per column) and its MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlcicd.monitoring import OTHER, DriftResult, RetrainDecision, WindowReport

if TYPE_CHECKING:
    import pandas as pd


def render_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift: DriftResult,
    title: str,
    decision: RetrainDecision,
    hostile: dict[str, int] | None = None,
) -> str:
    """An HTML page: the verdict, a table of tests, and reference-vs-window plots per column."""
    import base64
    import html
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows, figures = [], []
    for f in drift.features:
        mark = "DRIFT" if f.drifted else "ok"
        rows.append(
            f"<tr class='{mark.lower()}'><td>{html.escape(f.feature)}</td><td>{f.kind}</td><td>{f.test}</td>"
            f"<td>{f.statistic:.4g}</td><td>{f.p_value:.3g}</td><td>{f.effect:.3f}</td><td>{mark}</td></tr>"
        )
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        ref, cur = reference[f.feature].dropna(), current[f.feature].dropna()
        if f.kind == "numeric":
            bins = 30
            ax.hist(ref.astype(float), bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(cur.astype(float), bins=bins, density=True, alpha=0.5, label="window")
        else:
            shares = pd.DataFrame(
                {
                    "reference": ref.astype(str).value_counts(normalize=True),
                    "window": cur.astype(str).value_counts(normalize=True),
                }
            ).fillna(0)
            shares.plot.bar(ax=ax, rot=30)
        ax.set_title(f"{f.feature} ({mark})", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        figures.append(
            f"<img alt='{html.escape(f.feature)}' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"
        )
    verdict = "RETRAIN" if decision.retrain else "no retrain"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:.2em .6em;border-bottom:1px solid #ddd}}
tr.drift{{background:#fde2e1}} img{{margin:.3em;border:1px solid #eee}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>{drift.rows}</b> predictions against <b>{drift.reference_rows}</b> reference rows;
{len(drift.drifted_features)} drifted column(s), drift share {drift.drift_share:.0%}
({"dataset drift" if drift.dataset_drift else "no dataset drift"}).</p>
<p>Decision: <b>{verdict}</b>: {html.escape(decision.reason)}</p>
<p>What clients sent that the model does not know (counted, pooled as "{OTHER}", never plotted raw):
{html.escape(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (hostile or {}).items()) or "nothing")}.</p>
<table><tr><th>column</th><th>type</th><th>test</th><th>statistic</th><th>p-value</th><th>effect</th><th></th></tr>
{"".join(rows)}</table><h2>Distributions</h2>{"".join(figures)}</body></html>"""


def log_window_to_mlflow(experiment_id: str, run_name: str, report: WindowReport, report_path: Path) -> str:
    """Log a drift-tested window (its figures, the HTML report, the JSON) as an MLflow run; return its id."""
    import mlflow

    tags = {"mlcicd.model_name": report.model_name, "mlcicd.champion_version": report.champion_version}
    drift = report.drift or {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_metrics(
            {
                "predictions": report.predictions,
                "drift_share": drift.get("drift_share", 0.0),
                "drifted_features": len(drift.get("drifted_features", [])),
                "retrain": int(report.decision["retrain"]),
            }
        )
        if report.decay:
            mlflow.log_metrics({"live_accuracy": report.decay["live_accuracy"]})
        mlflow.log_artifact(str(report_path), artifact_path="drift")
        mlflow.log_dict(report.to_dict(), "drift/window.json")
    return run.info.run_id
