"""ml_monitor through dag.test(): drift over windows, the guarded policy, the retrain-request Asset event.

Prediction logs are written in the documented record format (mlcicd.serving.predlog) with chosen times,
so that windows an hour apart can be tested now. The predictions are the champion's own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mlcicd import registry, synthetic
from mlcicd.cli.env import load_dag
from mlcicd.cli.run import run_pipeline
from mlcicd.settings import load
from tests.helpers import load_registered

pytestmark = pytest.mark.e2e
MODEL = "mon_churn"
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        from mlcicd.ports import free_port

        mp.setenv("MLCICD_LOCAL_PORT", str(free_port("127.0.0.1")))
        # Its own dataset name, hence its own inferred suite: test_pipeline expects to infer the default one.
        summary = run_pipeline({"model_name": MODEL, "synthetic_seed": 1, "dataset_name": "mon_churn_data"})
    assert summary["outcome"] == "promoted", summary
    s = load()
    registry.client(s.tracking_uri)
    model = load_registered(MODEL, "champion", s.tracking_uri)
    return {
        "model": model,
        "version": summary["champion_version"],
        "logs": s.predictions_for(MODEL),
        "endpoint": summary["deployment"]["endpoint"],
    }


def write_window(
    champion, hour: int, *, rows: int = 800, drift: float = 0.0, seed: int = 0, labels=None
) -> None:
    """Log `rows` predictions of the champion inside the hour starting at T0 + hour."""
    df = synthetic.generate(rows, seed=1000 + hour + seed, drift=drift)
    x = df.drop(columns="churned")
    preds = champion["model"].predict(x).tolist()
    when = T0 + timedelta(hours=hour, minutes=30)
    folder = champion["logs"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"predictions-{when:%Y%m%dT%H}.jsonl"
    with path.open("a") as fh:
        for i, (features, p) in enumerate(zip(x.to_dict(orient="records"), preds, strict=True)):
            rec = {
                "request_id": f"h{hour}-{i}",
                "row": 0,
                "time": when.isoformat(),
                "model_name": MODEL,
                "model_version": champion["version"],
                "features": features,
                "prediction": p,
            }
            fh.write(json.dumps(rec) + "\n")
    if labels is not None:
        lab_dir = load().labels_for(MODEL)
        lab_dir.mkdir(parents=True, exist_ok=True)
        with (lab_dir / f"labels-{hour}.jsonl").open("w") as fh:
            for i, y in enumerate(labels(df["churned"].tolist(), preds)):
                fh.write(json.dumps({"request_id": f"h{hour}-{i}", "row": 0, "label": y}) + "\n")


def monitor(hour: int, **params):
    states, events, run_record = monitor_run(hour, **params)
    return states, events, run_record.get("monitor")


def monitor_run(hour: int, **params):
    """One ml_monitor run: its task states, the retrain events it made, and its whole run record."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    dag = load_dag("ml_monitor")
    end = T0 + timedelta(hours=hour + 1)
    conf = {"model_name": MODEL, "window_end": end.isoformat(), "min_predictions": 300, **params}
    run = dag.test(run_conf=conf)
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    with create_session() as session:
        events = [e.extra for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id)]
    from mlcicd import record

    return states, events, record.read(load().runs_dir / record.run_key(run.run_id))


def test_no_drift_over_several_windows_no_retrain(champion):
    for hour in range(3):
        write_window(champion, hour)
        states, events, report = monitor(hour)
        assert states["evaluate_window"] == "success" and states["request_retrain"] == "skipped"
        assert events == [] and report["drift"]["dataset_drift"] is False
    assert report["report_path"] and "<img" in open(report["report_path"]).read()


def test_one_drifted_window_no_retrain_then_n_windows_exactly_one_then_cooldown(champion):
    write_window(champion, 3, drift=2.0)
    states, events, report = monitor(3)
    assert report["drift"]["dataset_drift"] and events == [] and not report["decision"]["retrain"]
    write_window(champion, 4, drift=2.0)
    assert monitor(4)[1] == []
    write_window(champion, 5, drift=2.0)
    states, events, report = monitor(5, retrain_conf={"synthetic_drift": 2.0})
    assert states["request_retrain"] == "success" and len(events) == 1
    assert events[0]["reason"] == "drift over 3 consecutive windows"
    assert events[0]["conf"] == {"synthetic_drift": 2.0, "model_name": MODEL}
    write_window(champion, 6, drift=2.0)
    states, events, report = monitor(6)
    assert events == [] and report["decision"]["reason"].startswith("cooldown")


def test_decay_with_labels_retrains(champion):
    def wrong(truth, preds):
        return [1 - p for p in preds]  # the world now disagrees with every prediction

    for hour in (40, 41):
        write_window(champion, hour, labels=wrong)
        states, events, report = monitor(hour, consecutive_windows=2, cooldown_hours=0)
    assert report["decay"]["decayed"] and report["decay"]["live_accuracy"] == 0
    assert len(events) == 1 and events[0]["reason"].startswith("decay")


def test_empty_and_small_windows_and_malformed_lines_never_retrain(champion):
    states, events, report = monitor(60, consecutive_windows=1, cooldown_hours=0)
    assert events == [] and report["note"] == "empty window: no prediction logged"
    write_window(champion, 61, rows=50, drift=3.0)
    with (champion["logs"] / f"predictions-{T0 + timedelta(hours=61):%Y%m%dT%H}.jsonl").open("a") as fh:
        fh.write("{not json\n")
    states, events, report = monitor(61, consecutive_windows=1, cooldown_hours=0)
    assert events == [] and "too few" in report["note"] and report["malformed_records"] == 1


def test_a_window_of_hostile_records_is_bounded_counted_and_never_plotted_raw(champion):
    write_window(champion, 65)
    when = T0 + timedelta(hours=65, minutes=40)
    x = synthetic.generate(50, seed=7).drop(columns="churned").to_dict(orient="records")[:40]
    hostile = [
        {**x[0], "contract": "Z" * 1_000_000},  # an oversized line: counted, never parsed
        *({**f, **{f"extra_{k}": k for k in range(2000)}} for f in x[1:11]),  # wide rows
        *({**f, "region": f"<script>alert({i})</script>\x00"} for i, f in enumerate(x[11:31])),
        *({**f, "monthly_charges": "NaN; DROP TABLE"} for f in x[31:40]),
    ]
    with (champion["logs"] / f"predictions-{when:%Y%m%dT%H}.jsonl").open("a") as fh:
        for i, features in enumerate(hostile):
            fh.write(
                json.dumps(
                    {
                        "request_id": f"x{i}",
                        "row": 0,
                        "time": when.isoformat(),
                        "model_name": MODEL,
                        "model_version": champion["version"],
                        "features": features,
                        "prediction": 0,
                    }
                )
                + "\n"
            )
    states, events, report = monitor(65, consecutive_windows=1, cooldown_hours=0)
    assert states["evaluate_window"] == "success", states
    assert report["predictions"] == 800 + 39 and report["hostile"] == {
        "oversized_lines": 1,
        "rows_with_unknown_columns": 10,
        "non_numeric_values": 9,
        "invalid_values": 0,
        "unseen_category_values": 20,
    }
    page = open(report["report_path"]).read()
    assert "<script>alert" not in page and "extra_1" not in page and "unseen category values 20" in page


def test_unknown_model_is_a_clear_no_op():
    states, events, report = monitor(70, model_name="never_trained")
    assert states["evaluate_window"] == "success" and events == []
    assert report["note"].startswith("no champion for never_trained")


def test_champion_without_reference_is_reported_not_retrained(champion):
    """A signed reference gone from the store stops the window (nothing judged against a guess, nothing
    retrained, the artifact and the command named); a champion from before references were logged
    (its signed record names none) is reported, not retrained."""
    import json as json_module
    from pathlib import Path
    from urllib.parse import urlparse

    from mlcicd import trust
    from mlcicd.training import REFERENCE_ARTIFACT

    s = load()
    c = registry.client(s.tracking_uri)
    mv = c.get_model_version_by_alias(MODEL, "champion")
    ref = Path(urlparse(c.get_run(mv.run_id).info.artifact_uri).path) / "reference" / "reference.parquet"
    ref.unlink()
    write_window(champion, 80, drift=3.0)
    states, events, run_record = monitor_run(80, consecutive_windows=1, cooldown_hours=0)
    assert states["evaluate_window"] == "failed" and events == []
    error = run_record.get("error") or {}
    assert "reference/reference.parquet" in error.get("message", "") and "mlcicd resign" in error["message"]
    signed = json_module.loads(mv.tags[trust.SIGNED_ARTIFACTS_TAG])
    trust.sign_version(
        c, s.signing_key(), MODEL, mv.version, {k: v for k, v in signed.items() if k != REFERENCE_ARTIFACT}
    )
    states, events, report = monitor(80, consecutive_windows=1, cooldown_hours=0)
    assert events == [] and "has no recorded reference" in report["note"]


def test_traffic_generator_feeds_the_prediction_log_and_labels(champion):
    import os
    import subprocess
    import sys
    import time

    from mlcicd.serving.predlog import read_window

    started = datetime.now(UTC)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcicd",
            "traffic",
            "--endpoint",
            champion["endpoint"],
            "--model",
            MODEL,
            "--rows",
            "120",
            "--batch",
            "40",
            "--drift",
            "2",
            "--labels",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "sent 120 rows in 3 requests" in out.stdout
    deadline = time.monotonic() + 30
    while True:  # the server writes its log off the request path
        records = read_window(champion["logs"], started, datetime.now(UTC) + timedelta(minutes=1)).records
        if len(records) == 120 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(records) == 120 and {r["model_version"] for r in records} == {champion["version"]}
    from mlcicd.monitoring import labels_for

    assert len(labels_for(records, load().labels_for(MODEL))) == 120
