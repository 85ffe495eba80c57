"""Prediction log: every served prediction as one JSON line, written off the request path.

Records are queued and written by a background thread to hourly files
``predictions-YYYYmmddTHH.jsonl`` (a file is also rolled over past ``max_bytes``). A full queue or
a failing disk drops records and counts them; it never slows or fails a request.

Record: ``{"request_id", "row", "time" (ISO 8601 UTC), "model_name", "model_version",
"features": {...}, "prediction"}``. Ground-truth labels that arrive later are joined on
``(request_id, row)`` from JSON-lines files ``{"request_id", "row", "label"}``.
"""

from __future__ import annotations

import json
import queue
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PredictionLogger:
    def __init__(
        self, directory: Path | None, max_queue: int = 100_000, max_bytes: int = 100 * 2**20
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        if directory is not None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def log_frame(self, header: dict[str, Any], frame: Any, predictions: list[Any]) -> None:
        """Queue one request's rows as a single item: turning them into records happens off the request path."""
        if not self.enabled:
            return
        try:
            self._queue.put_nowait({"__frame__": (header, frame, predictions)})
        except queue.Full:
            self.dropped += len(predictions)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout_s)

    def _run(self) -> None:
        assert self.directory is not None
        while True:
            record = self._queue.get()
            if record is None:
                return
            batch = [record]
            while len(batch) < 1000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(batch)
                    return
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        batch = [r for item in batch for r in _expand(item)]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._path()
            with path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, default=str) + "\n" for r in batch)
            self.written += len(batch)
        except OSError:
            self.dropped += len(batch)

    def _path(self) -> Path:
        stem = f"predictions-{datetime.now(UTC):%Y%m%dT%H}"
        path = self.directory / f"{stem}.jsonl"
        n = 0
        while path.exists() and path.stat().st_size >= self.max_bytes:
            n += 1
            path = self.directory / f"{stem}.{n}.jsonl"
        return path


def read_window(directory: Path, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], int]:
    """Records with ``start <= time < end`` from every file; returns (records, malformed lines)."""
    records, malformed = [], 0
    for path in sorted(directory.glob("predictions-*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                r = json.loads(line)
                t = datetime.fromisoformat(r["time"])
                if not isinstance(r["features"], dict):
                    raise TypeError("features is not an object")
            except (ValueError, KeyError, TypeError):
                malformed += 1
                continue
            if start <= t < end:
                records.append(r)
    return records, malformed


def _expand(item: dict[str, Any]) -> list[dict[str, Any]]:
    if "__frame__" not in item:
        return [item]
    header, frame, predictions = item["__frame__"]
    rows = frame.to_dict(orient="records")
    return [
        {**header, "row": i, "features": f, "prediction": p}
        for i, (f, p) in enumerate(zip(rows, predictions, strict=True))
    ]
