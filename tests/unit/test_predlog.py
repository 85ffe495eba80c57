"""The prediction log's writer: nothing lost silently, no partial line, bounded by age and bytes."""

from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np

from mlcicd.serving.predlog import PredictionLogger, read_window

HEADER = {"request_id": "r", "time": "2026-11-24T05:00:00+00:00", "model_name": "m", "model_version": "1"}


def lines(folder: pathlib.Path) -> list[str]:
    return [line for f in sorted(folder.glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]


def test_a_bad_record_is_dropped_and_counted_and_the_others_are_written(tmp_path):
    drops = []
    log = PredictionLogger(tmp_path, on_drop=drops.append)
    good = {"a": np.array([1, 2, 3]), "b": np.array(["x", None, "z"], dtype=object)}
    log.log_frame(HEADER, good, [0, 1, 0])
    bad = {"a": np.array([object(), 5], dtype=object)}  # a value that is not JSON
    log.log_frame(HEADER, bad, [1, 1])
    log.log_frame(HEADER, {"a": np.array([1.5, np.nan])}, [0, 1])  # NaN: written as null
    log.close()
    written = [json.loads(line) for line in lines(tmp_path)]
    assert len(written) == 6 and log.written == 6
    assert log.dropped == 1 and sum(drops) == 1  # the one row holding the object; its neighbour was fine
    assert written[0]["features"] == {"a": 1, "b": "x"} and written[1]["features"]["b"] is None
    assert written[-1]["features"] == {"a": None}


def test_a_write_that_fails_midway_leaves_no_partial_line(tmp_path, monkeypatch):
    log = PredictionLogger(tmp_path)
    log.log_frame(HEADER, {"a": np.arange(3)}, [0, 0, 0])
    log.close()
    before = (tmp_path / next(p.name for p in tmp_path.glob("*.jsonl"))).read_bytes()
    real_open = pathlib.Path.open

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def tell(self):
            return self.fh.tell()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(28, "No space left on device")

    def open_(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return HalfWriter(fh) if mode == "ab" else fh

    monkeypatch.setattr(pathlib.Path, "open", open_)
    failing = PredictionLogger(tmp_path)
    failing.log_frame(HEADER, {"a": np.arange(10)}, [1] * 10)
    failing.close()
    monkeypatch.undo()
    assert failing.dropped == 10 and failing.written == 0
    after = b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))
    assert after == before  # cut back to the last whole line
    window = read_window(tmp_path, *_all_time())
    assert window.malformed == 0 and len(window.records) == 3


def test_old_files_go_after_the_retention_and_the_oldest_beyond_the_byte_bound(tmp_path):
    old = tmp_path / "predictions-20260101T00.1.jsonl"
    old.write_text('{"x": 1}\n')
    os.utime(old, (time.time() - 3 * 3600, time.time() - 3 * 3600))
    recent = []
    for i in range(3):
        f = tmp_path / f"predictions-20261124T0{i}.1.jsonl"
        f.write_text("x" * 1000 + "\n")
        os.utime(f, (time.time() - 600 + i, time.time() - 600 + i))
        recent.append(f)
    log = PredictionLogger(tmp_path, retention_hours=2, max_total_bytes=2500)
    log.log_frame(HEADER, {"a": np.arange(2)}, [0, 1])
    log.close()
    assert not old.exists()  # past the retention
    assert not recent[0].exists() and recent[1].exists() and recent[2].exists()  # oldest first, to the bound
    assert log.written == 2


def _all_time():
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def test_the_queue_is_bounded_by_bytes_not_only_by_requests(tmp_path, monkeypatch):
    """Issue 28, finding 6: 100,000 queued requests of 10,000 rows each had no bound in bytes. With the
    writer held up, requests beyond MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES are dropped and counted."""
    import threading

    release = threading.Event()
    original = PredictionLogger._write
    monkeypatch.setattr(
        PredictionLogger, "_write", lambda self, batch: (release.wait(30), original(self, batch))
    )
    drops = []
    log = PredictionLogger(tmp_path, on_drop=drops.append, max_queue_bytes=3 * 80_000 + 1_000)
    rows = {"a": np.arange(10_000, dtype="float64")}  # 80,000 bytes of features
    for _ in range(6):
        log.log_frame(HEADER, rows, [0] * 10_000)
    assert log.dropped >= 3 * 10_000 and sum(drops) == log.dropped  # at most 3 requests' bytes were held
    release.set()
    log.close(timeout_s=30)
    assert log.written == 6 * 10_000 - log.dropped and log._queued_bytes == 0


def test_with_a_container_limit_the_servers_concurrency_fits_its_memory():
    from mlcicd.serving.limits import BODY_EXPANSION, Limits

    asked = Limits()  # 64 requests of up to 8 MiB per worker
    fitted = asked.fitted(2**30, workers=1)  # a 1 GiB container
    assert (
        fitted.max_concurrency * asked.max_body_bytes * BODY_EXPANSION
        <= 2**30 / 2
        < ((fitted.max_concurrency + 1) * asked.max_body_bytes * BODY_EXPANSION)
    )
    assert asked.fitted(2**30, workers=4).max_concurrency == 2  # shared by the workers
    assert asked.fitted(None, workers=1) == asked  # no limit: as set
    assert Limits(max_body_bytes=2**20).fitted(64 * 2**30, workers=1).max_concurrency == 64  # never raised


def test_text_counts_by_its_length_in_the_queue():
    from mlcicd.serving.logrecords import nbytes

    text = np.array(["x" * 100_000] * 10, dtype=object)  # an object array's nbytes says 80
    assert nbytes({"note": text}) >= 1_000_000 and nbytes({"a": np.arange(10, dtype="float64")}) == 80
