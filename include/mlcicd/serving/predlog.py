"""Prediction log: every served prediction as one JSON line, written off the request path.

Records are queued and written by a background thread to hourly files, one per worker process,
``predictions-YYYYmmddTHH.<host>-<pid>.jsonl`` (a file is also rolled over past ``max_bytes``); old files
go after ``MLCICD_PREDICTION_LOG_RETENTION_HOURS`` (30 days) or when the folder passes
``MLCICD_PREDICTION_LOG_MAX_BYTES`` (10 GiB). A full queue, a bad record or a failing disk drops
records and counts them; it never slows or fails a request, and never leaves a partial line.

Record: ``{"request_id", "row", "time" (ISO 8601 UTC), "model_name", "model_version",
"features": {...}, "prediction"}``. Ground-truth labels that arrive later are joined on
``(request_id, row)`` from JSON-lines files ``{"request_id", "row", "label"}``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlcicd.serving import config
from mlcicd.serving.logrecords import expand, nbytes, plain


class PredictionLogger:
    """Writes records off the request path. Bounded three ways: the queue (``max_queue`` items and
    ``max_queue_bytes``, MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES: a request's rows are one item), each
    file (``max_bytes``, then the hour's next file), and the folder (``retention_hours`` and
    ``max_total_bytes``: the oldest files go first). Every record lost, whatever the reason (a full
    queue, a value that is not JSON, a failing disk), is counted in ``dropped`` and reported to
    ``on_drop``; a failed write is cut back, so no line is ever partial. Bounds not given are the
    server's settings (:mod:`.config`)."""

    def __init__(
        self,
        directory: Path | None,
        max_queue: int = 100_000,
        max_bytes: int = 100 * 2**20,
        on_drop: Callable[[int], Any] | None = None,
        retention_hours: float | None = None,
        max_total_bytes: int | None = None,
        max_queue_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

        # Each bound not given is read on its own: another setting's bad value is not this logger's concern.
        def bound(given: Any, field: str) -> Any:
            return given if given is not None else config.value(field)

        self.retention_hours = bound(retention_hours, "prediction_log_retention_hours")
        self.max_total_bytes = bound(max_total_bytes, "prediction_log_max_bytes")
        self.max_queue_bytes = bound(max_queue_bytes, "prediction_log_max_queue_bytes")
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self._current: Path | None = None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if directory is not None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def log_frame(self, header: dict[str, Any], frame: Any, predictions: list[Any]) -> None:
        """Queue one request's rows (a DataFrame, or column name -> array) as a single item: turning
        them into records happens off the request path."""
        if not self.enabled:
            return
        size = nbytes(frame) + 16 * len(predictions)
        with self._queued_lock:
            if self._queued_bytes + size > self.max_queue_bytes:
                self._drop(len(predictions))
                return
            self._queued_bytes += size
        try:
            self._queue.put_nowait({"__frame__": (header, frame, predictions), "__bytes__": size})
        except queue.Full:
            self._release(size)
            self._drop(len(predictions))

    def _release(self, size: int) -> None:
        with self._queued_lock:
            self._queued_bytes -= size

    def close(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout_s)

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.on_drop is not None and n:
            self.on_drop(n)

    def _run(self) -> None:
        assert self.directory is not None
        while True:
            record = self._queue.get()
            if record is None:
                return
            self._release(record.get("__bytes__", 0))
            batch = [record]
            while len(batch) < 1000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(batch)
                    return
                self._release(nxt.get("__bytes__", 0))
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        lines = []
        for item in batch:
            try:
                records = expand(item)
            except Exception:  # a frame that cannot be read: its rows are lost, counted
                self._drop(len(item["__frame__"][2]) if "__frame__" in item else 1)
                continue
            for r in records:
                try:
                    lines.append(json.dumps(r, default=plain, allow_nan=False) + "\n")
                except (TypeError, ValueError):
                    self._drop(1)
        if not lines:
            return
        data = "".join(lines).encode()
        path, size = None, None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._path()
            with path.open("ab") as fh:
                size = fh.tell()
                fh.write(data)
            self.written += len(lines)
        except OSError:
            self._drop(len(lines))
            if path is not None and size is not None:  # opened: cut back what this write added
                with contextlib.suppress(OSError), path.open("r+b") as fh:
                    fh.truncate(size)  # no partial line left behind

    def _path(self) -> Path:
        # A file per worker process: containers sharing the folder have their own PID numbering.
        stem = f"predictions-{datetime.now(UTC):%Y%m%dT%H}.{socket.gethostname()}-{os.getpid()}"
        path = self.directory / f"{stem}.jsonl"
        n = 0
        while path.exists() and path.stat().st_size >= self.max_bytes:
            n += 1
            path = self.directory / f"{stem}.{n}.jsonl"
        if path != self._current:
            self._current = path
            self._prune()
        return path

    def _prune(self) -> None:
        """Delete files past the retention, then the oldest while the folder exceeds its byte bound."""
        assert self.directory is not None
        cutoff = time.time() - self.retention_hours * 3600
        files = []
        for f in self.directory.glob("predictions-*.jsonl"):
            with contextlib.suppress(OSError):
                st = f.stat()
                files.append((st.st_mtime, st.st_size, f))
        files.sort()
        total = sum(size for _, size, _ in files)
        for mtime, size, f in files:
            if f == self._current:
                continue
            if mtime < cutoff or total > self.max_total_bytes:
                with contextlib.suppress(OSError):
                    f.unlink()
                    total -= size


# Reading a window is bounded whatever clients sent: lines longer than this are hostile and never
# parsed; at most SAMPLE_ROWS lines (a uniform sample) and PARSE_BUDGET_BYTES are parsed.
MAX_LINE_BYTES = 64 * 1024
SAMPLE_ROWS = 50_000
PARSE_BUDGET_BYTES = 32 * 2**20
_TIME = b'"time": "'


@dataclass
class LogWindow:
    """The prediction log of a window: every line counted, a bounded uniform sample parsed."""

    records: list[dict[str, Any]]  # parsed records (all of them, or a uniform sample)
    lines: int = 0  # lines in the window (their time said so)
    malformed: int = 0  # lines without a readable time, and sampled lines that are not a record
    oversized: int = 0  # lines longer than MAX_LINE_BYTES: never parsed
    parsed: int = 0  # lines parsed: fewer than ``lines`` when the window was sampled


def read_window(
    directory: Path,
    start: datetime,
    end: datetime,
    *,
    sample: int = SAMPLE_ROWS,
    budget_bytes: int = PARSE_BUDGET_BYTES,
    seed: int = 0,
) -> LogWindow:
    """Records with ``start <= time < end``, from the hourly files that overlap the window.

    Every line's time is read without parsing the line; a uniform sample (reservoir) of at most
    ``sample`` lines is parsed, in random order until ``budget_bytes`` have been parsed. So the cost
    is one pass over the window's files plus a bounded parse, whatever the clients sent.
    """
    import random

    rng = random.Random(seed)
    out = LogWindow(records=[])
    reservoir = _Reservoir(sample, rng)
    n = oversized = malformed = 0  # locals: this loop runs once per logged line
    files = _files(directory, start, end)
    for index, (path, whole) in enumerate(files):
        with path.open("rb") as fh:
            offset = 0
            while line := fh.readline(MAX_LINE_BYTES + 1):  # never more than that in memory
                at_line, offset = offset, offset + len(line)
                if len(line) > MAX_LINE_BYTES:
                    oversized += 1
                    while not line.endswith(b"\n") and (line := fh.readline(2**20)):  # skip its rest
                        offset += len(line)
                    continue
                at = line.find(_TIME)  # a quote inside a JSON string is escaped: this is the record's own
                if at < 0:
                    malformed += 1
                    continue
                if not whole:  # the window covers part of this file's hour: read each line's time
                    try:
                        t = datetime.fromisoformat(
                            line[at + len(_TIME) : line.find(b'"', at + len(_TIME))].decode()
                        )
                        if not start <= t < end:
                            continue
                    except (ValueError, TypeError, UnicodeDecodeError):
                        malformed += 1
                        continue
                n += 1
                if n <= sample or n == reservoir.next:
                    reservoir.offer(n, (index, at_line, len(line)))  # where it is, not the line itself
    out.lines, out.oversized, out.malformed = n, oversized, malformed
    reservoir = reservoir.items
    rng.shuffle(reservoir)  # any prefix of a shuffled uniform sample is a uniform sample
    chosen, parsed = [], 0
    for entry in reservoir:
        if parsed > budget_bytes:
            break
        parsed += entry[1][2]
        chosen.append(entry)
    out.parsed = len(chosen)
    for line in _read_back(files, sorted(chosen, key=lambda e: e[0])):  # in the log's order
        try:
            r = json.loads(line)
            if not isinstance(r.get("features"), dict) or not {"request_id", "row", "prediction"} <= r.keys():
                raise TypeError("not a prediction record")
            t = datetime.fromisoformat(r["time"])
            if not start <= t < end:
                raise ValueError("its time is outside the hour of its file")
        except (ValueError, TypeError, AttributeError):
            out.malformed += 1
            continue
        out.records.append(r)
    return out


def _read_back(files: list[tuple[Path, bool]], chosen: list[tuple[int, tuple[int, int, int]]]) -> Any:
    """The chosen lines, read again from where they are (file index, offset, length)."""
    handles: dict[int, Any] = {}
    try:
        for _, (index, offset, length) in chosen:
            fh = handles.get(index) or handles.setdefault(index, files[index][0].open("rb"))
            fh.seek(offset)
            yield fh.read(length)
    finally:
        for fh in handles.values():
            fh.close()


class _Reservoir:
    """A uniform sample of at most ``k`` items from a stream (Li's algorithm L: few random draws)."""

    def __init__(self, k: int, rng: Any) -> None:
        self.k, self.rng, self.items = k, rng, []
        self.w, self.next, self.seen = 1.0, 0, 0

    def offer(self, n: int, item: Any) -> None:
        """Offer the ``n``-th item of the stream; only the first ``k`` and the ``next`` one need offering."""
        self.seen = n
        if len(self.items) < self.k:
            self.items.append((n, item))
            if len(self.items) == self.k:
                self._advance()
        elif n == self.next:
            self.items[self.rng.randrange(self.k)] = (n, item)
            self._advance()

    def _advance(self) -> None:
        self.w *= math.exp(math.log(self._u()) / self.k)
        self.next = self.seen + math.floor(math.log(self._u()) / math.log1p(-self.w)) + 1

    def _u(self) -> float:
        return self.rng.random() or 1e-300


def _files(directory: Path, start: datetime, end: datetime) -> list[tuple[Path, bool]]:
    """The log files whose hour overlaps [start, end) (and any whose name tells no hour), each with
    whether the window covers its whole hour (then its lines' times need no reading)."""
    keep = []
    for path in sorted(directory.glob("predictions-*.jsonl")):
        stamp = path.name.removeprefix("predictions-").split(".")[0]
        try:
            hour = datetime.strptime(stamp, "%Y%m%dT%H").replace(tzinfo=UTC)
        except ValueError:
            keep.append((path, False))
            continue
        if hour < end and hour + timedelta(hours=1) > start:
            keep.append((path, start <= hour and hour + timedelta(hours=1) <= end))
    return keep
