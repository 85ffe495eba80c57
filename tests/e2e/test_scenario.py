"""Days of a model's life under a real scheduler, faster than real time: the loop closes unattended.

A real Airflow (API server, scheduler, DAG processor; LocalExecutor) over its own state. Each
simulated window, the served model answers real requests (its predictions come from the endpoint),
which are logged with the window's simulated time, with labels; ``ml_monitor`` is triggered for that
window through the REST API. A drift episode makes the monitor emit its retrain request; the
scheduler starts ``ml_retrain`` from the Asset event; the drifted batch passes its contract with its
shift reported, the candidate is judged against the champion on the new data and promoted, and the
next windows are judged against the new reference. A corrupted batch is fed in along the way.

Short by default (in ``make test``); ``make soak`` plays a longer life (more days and episodes) and
prints its figures. Knobs: MLCICD_SCENARIO_DAYS, MLCICD_SCENARIO_WINDOWS_PER_DAY,
MLCICD_SCENARIO_EPISODES (start windows of the drift episodes, comma-separated).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import requests

from mlcicd import registry, synthetic
from mlcicd.dev import server as devserver
from tests.helpers import SERVER_ENV

pytestmark = pytest.mark.e2e
MODEL = "life_churn"
T0 = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = int(os.getenv("MLCICD_SCENARIO_DAYS", "2"))
WINDOWS_PER_DAY = int(os.getenv("MLCICD_SCENARIO_WINDOWS_PER_DAY", "4"))
EPISODES = [int(w) for w in os.getenv("MLCICD_SCENARIO_EPISODES", "4").split(",")]
EPISODE_DRIFT = 2.0  # the world shifts by this much at the first episode, back at the second, and so on
ROWS_PER_WINDOW = 1000
POLICY = {"consecutive_windows": 2, "cooldown_hours": 12.0, "min_predictions": 300}
WINDOW = timedelta(days=1) / WINDOWS_PER_DAY


@dataclass
class Life:
    server: devserver.AirflowServer
    state: os.PathLike
    endpoint: str
    token: str = ""
    checks: int = 0
    windows: list[dict] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self.token:  # one token for the whole life (valid for a day); SQLite is slow on a busy machine
            r = requests.post(
                f"{self.server.url}/auth/token",
                json={"username": "admin", "password": "life"},  # pragma: allowlist secret
                timeout=60,
            )
            self.token = r.json()["access_token"]
        r = requests.request(
            method,
            f"{self.server.url}/api/v2{path}",
            json=body,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code < 300, (method, path, r.status_code, r.text[:500])
        return r.json()

    def trigger(self, dag: str, conf: dict) -> str:
        return self.api("POST", f"/dags/{dag}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def wait(self, dag: str, run_id: str, timeout_s: float = 900) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag}/dagRuns/{quote(run_id, safe='')}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"{dag} {run_id} did not finish in {timeout_s} s")

    def tasks(self, dag: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag}/dagRuns/{quote(run_id, safe='')}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}

    def xcom(self, dag: str, run_id: str, task: str) -> dict:
        path = f"/dags/{dag}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}/xcomEntries/return_value"
        value = self.api("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def asset_runs(self) -> list[dict]:
        runs = self.api("GET", "/dags/ml_retrain/dagRuns?order_by=run_after")["dag_runs"]
        return [r for r in runs if r["run_type"] == "asset_triggered"]

    def check_served_is_champion(self) -> str:
        """@champion and what answers on the endpoint are one version (checked after every step)."""
        c = registry.client(f"sqlite:///{self.state}/mlflow/mlflow.db")
        champion = registry.champion(c, MODEL)
        served = requests.get(f"{self.endpoint}/version", timeout=10).json()["version"]
        assert champion is not None and served == champion.version, (served, champion)
        self.checks += 1
        return served

    def traffic(self, end: datetime, drift: float, seed: int) -> float:
        """Real requests to the served model; logged and labelled at the window's simulated time."""
        batch = synthetic.generate(ROWS_PER_WINDOW, seed, drift=drift)
        x, y = batch.drop(columns="churned"), batch["churned"].tolist()
        body = {"dataframe_split": json.loads(x.to_json(orient="split", index=False))}
        r = requests.post(f"{self.endpoint}/invocations", json=body, timeout=60)
        assert r.status_code == 200, r.text
        predictions, version = r.json()["predictions"], self.check_served_is_champion()
        logs = self.state / "deployments" / "local" / MODEL / "predictions"
        labels = self.state / "labels" / MODEL
        labels.mkdir(parents=True, exist_ok=True)
        logs.mkdir(
            parents=True, exist_ok=True
        )  # the server makes it at its first write, off the request path
        when = end - WINDOW / 2
        with (
            (logs / f"predictions-{when:%Y%m%dT%H}.jsonl").open("a") as fh,
            (labels / f"{when:%Y%m%dT%H}.jsonl").open("a") as lab,
        ):
            for i, (features, p, label) in enumerate(
                zip(x.to_dict(orient="records"), predictions, y, strict=True)
            ):
                rid = f"w{seed}-{i}"
                fh.write(
                    json.dumps(
                        {
                            "request_id": rid,
                            "row": 0,
                            "time": when.isoformat(),
                            "model_name": MODEL,
                            "model_version": version,
                            "features": features,
                            "prediction": p,
                        }
                    )
                    + "\n"
                )
                lab.write(json.dumps({"request_id": rid, "row": 0, "label": label}) + "\n")
        return sum(int(p == t) for p, t in zip(predictions, y, strict=True)) / len(y)


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    root = tmp_path_factory.mktemp("life")
    port = devserver.free_port()
    extra = {
        "MLCICD_STATE_DIR": str(root / "state"),
        "MLCICD_LOCAL_PORT": str(port),
        "MLCICD_RETRAIN_SCHEDULE": "none",
        "MLCICD_MONITOR_SCHEDULE": "none",
        **SERVER_ENV,
    }
    server = devserver.start(root / "home", password="life", extra_env=extra)
    life = Life(server, root / "state", f"http://127.0.0.1:{port}")
    try:
        for dag in ("ml_retrain", "ml_monitor"):
            life.api("PATCH", f"/dags/{dag}", {"is_paused": False})
        yield life
    finally:
        devserver.stop(server)
        subprocess.run([sys.executable, "-m", "mlcicd", "stop"], env=server.env, capture_output=True)


def test_days_of_life_each_drift_episode_leads_to_one_retrain_and_the_model_recovers(life):
    started = time.monotonic()
    first = life.trigger("ml_retrain", {"model_name": MODEL, "synthetic_seed": 1})
    assert life.wait("ml_retrain", first) == "success", life.tasks("ml_retrain", first)
    assert life.check_served_is_champion() == "1"

    # A corrupted batch on the way: refused at validation, never trained on, the champion untouched.
    bad = life.trigger(
        "ml_retrain", {"model_name": MODEL, "synthetic_seed": 2, "synthetic_corruption": "nulls"}
    )
    assert life.wait("ml_retrain", bad) == "failed"
    tasks = life.tasks("ml_retrain", bad)
    assert tasks["validate_data"] == "failed" and tasks["train_model"] != "success", tasks
    assert life.check_served_is_champion() == "1"

    drift = 0.0
    for w in range(DAYS * WINDOWS_PER_DAY):
        if w in EPISODES:
            drift = EPISODE_DRIFT if drift == 0 else 0.0
        end = T0 + (w + 1) * WINDOW
        accuracy = life.traffic(end, drift, seed=100 + w)
        conf = {
            "model_name": MODEL,
            "window_end": end.isoformat(),
            "window_minutes": int(WINDOW.total_seconds() // 60),
            **POLICY,
            "retrain_conf": {"synthetic_drift": drift, "synthetic_seed": 500 + w},
        }
        before = {r["dag_run_id"] for r in life.asset_runs()}
        run = life.trigger("ml_monitor", conf)
        assert life.wait("ml_monitor", run) == "success", life.tasks("ml_monitor", run)
        report = life.xcom("ml_monitor", run, "evaluate_window")
        window = {
            "w": w,
            "drift": drift,
            "accuracy": accuracy,
            "version": life.check_served_is_champion(),
            "dataset_drift": bool((report["drift"] or {}).get("dataset_drift")),
            "retrain": report["decision"]["retrain"],
        }
        life.windows.append(window)
        if report["decision"]["retrain"]:
            deadline = time.monotonic() + 120
            while not (new := [r for r in life.asset_runs() if r["dag_run_id"] not in before]):
                assert time.monotonic() < deadline, "the scheduler did not start ml_retrain from the request"
                time.sleep(1)
            (retrain,) = new
            state = life.wait("ml_retrain", retrain["dag_run_id"])
            validated = life.xcom("ml_retrain", retrain["dag_run_id"], "validate_data")
            life.retrains.append(
                {
                    "w": w,
                    "state": state,
                    "validation": validated,
                    "tasks": life.tasks("ml_retrain", retrain["dag_run_id"]),
                    "version": life.check_served_is_champion(),
                }
            )
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "days": DAYS,
                "windows": len(life.windows),
                "retrains": len(life.retrains),
                "seconds": round(seconds),
                "seconds_per_day": round(seconds / DAYS, 1),
                "checks": life.checks,
                "windows_detail": life.windows,
            }
        )
    )

    # Exactly one retrain per episode, within the windows the policy needs (no cooldown: first request).
    assert [r["w"] for r in life.retrains] == [e + POLICY["consecutive_windows"] - 1 for e in EPISODES]
    for r in life.retrains:
        assert r["state"] == "success", r["tasks"]
        assert r["tasks"]["promote_champion"] == "success", r["tasks"]
        # The drifted batch passed its contract (the champion's training data) with its shift reported.
        assert r["validation"]["success"] and r["validation"]["shift"], r["validation"]
        assert r["validation"]["reference"].startswith("champion v")
    # After each promotion the windows are judged against the new reference: no drift.
    for r in life.retrains:
        after = [
            w
            for w in life.windows
            if w["w"] > r["w"] and not any(e > r["w"] and w["w"] >= e for e in EPISODES)
        ]
        assert after and not any(w["dataset_drift"] for w in after), after
        assert all(w["version"] == r["version"] for w in after)
    # Live accuracy after each promotion recovers to within 2 points of its level before the drift.
    before_drift = [w["accuracy"] for w in life.windows if w["w"] < EPISODES[0]]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    for r in life.retrains:
        nxt = min([e for e in EPISODES if e > r["w"]], default=len(life.windows))
        recovered = [w["accuracy"] for w in life.windows if r["w"] < w["w"] < nxt]
        assert mean(recovered) >= mean(before_drift) - 0.02, (r["w"], before_drift, recovered)
    # And the drift did hurt before it: the loop had something to fix.
    hurt = [w["accuracy"] for w in life.windows if EPISODES[0] <= w["w"] <= life.retrains[0]["w"]]
    assert mean(hurt) < mean(before_drift) - 0.02, (before_drift, hurt)
