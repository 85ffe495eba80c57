"""``ml_retrain``'s ``scan_model``: the candidate and the champion scanned on the same holdout.

The scan (:mod:`mlcicd.scan`) runs on the candidate, and on the champion that ``evaluate_candidate``
compared it with (loaded as the gate loads it: a champion that cannot be loaded fails the run);
the gate then rejects a candidate with a MAJOR issue the champion does not have. The report is
a page beside the data validation reports (an extra link on the task), and both the page and
the JSON record are logged with the candidate's MLflow run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlcicd import record, trust
from mlcicd.boundary import mlflow_client, push_links, run_dir, stage, working_on
from mlcicd.conf import run as p
from mlcicd.names import Task

log = logging.getLogger("mlcicd")


def scan_model(
    run_id: str,
    batch: dict[str, Any],
    trained: dict[str, Any],
    evaluated: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    import pandas as pd

    from mlcicd import champion as champions
    from mlcicd import data, registry, scan
    from mlcicd.scan.report import render

    with stage(run_id, Task.SCAN) as settings:
        p.project(params)  # the models hold the project's classes: its code is imported from its folder
        ref = data.BatchRef.from_dict(batch)
        holdout = pd.read_parquet(trained["holdout_path"])
        working_on(run_id, Task.SCAN, len(holdout))
        x, y = holdout.drop(columns=[ref.target]), holdout[ref.target].to_numpy()
        thresholds = p.scan_thresholds(params)
        seed = int(params["random_seed"])
        candidate = scan.scan(
            registry.load_verified(
                trained["model_uri"], trained["model_digest"], settings.tracking_uri, "the candidate"
            ),
            x,
            y,
            thresholds,
            seed,
        )
        c, _ = mlflow_client(settings)
        champion, version = None, evaluated.get("champion_version")
        if version:
            champ_ref = trust.trusted_champion(c, settings.signing_key(), str(params["model_name"]))
            if champ_ref is not None and champ_ref.version == version:
                model = champions.load(champ_ref, str(params["model_name"]), settings.tracking_uri)
                champion = scan.scan(model, x, y, thresholds, seed).to_dict()
        found = candidate.to_dict()
        new = scan.new_major(found, champion)
        page = render(found, champion, new, f"Scan of {params['model_name']}, run {run_id}", version)
        path = settings.data_docs_dir / "scans" / f"{record.run_key(run_id)}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
        c.log_text(trained["mlflow_run_id"], page, "scan/report.html")
        c.log_text(
            trained["mlflow_run_id"],
            json.dumps({"candidate": found, "champion": champion}, indent=1, default=str),
            "scan/scan.json",
        )
        url = settings.data_docs_url(str(path))
        out = {
            "issues": [
                {k: i[k] for k in ("key", "detector", "severity", "message")} for i in found["issues"]
            ],
            "notes": found["notes"],
            "seconds": found["seconds"],
            "rows": found["rows"],
            "new_major": [i["message"] for i in new],
            "champion_version": version if champion else None,
            "champion_issues": len(champion["issues"]) if champion else None,
            "report_path": str(path),
            "report_url": url,
        }
        record.update(run_dir(settings, run_id), scan=out)
        push_links(scan_report=url)
        majors = sum(i["severity"] == scan.MAJOR for i in found["issues"])
        log.info(
            "scan: %d MAJOR, %d minor issue(s), %d new against the champion, in %.1f s; report %s",
            majors,
            len(found["issues"]) - majors,
            len(new),
            found["seconds"],
            path,
        )
        for i in found["issues"]:
            log.info("  %s %s", i["severity"].upper(), i["message"])
        return out
