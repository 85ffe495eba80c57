"""The run record: one JSON file per Airflow run with each stage's state and summary.

It is what ``mlcicd run`` reads to print its summary and progress; the data itself travels between
tasks through XCom references.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any


def run_key(run_id: str) -> str:
    """A file-system-safe key for an Airflow run id (which holds ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def run_dir(runs_dir: Path, run_id: str) -> Path:
    path = runs_dir / run_key(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "record.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def update(path: Path, **sections: Any) -> dict[str, Any]:
    """Merge top-level sections into the record (atomic replace).

    Under a lock on the run's folder: a search's candidates run at once and each records its stage.
    """
    with open(path / "record.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read(path)
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        data["updated_at"] = time.time()
        tmp = path / f"record.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path / "record.json")
    return data
