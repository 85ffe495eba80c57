"""Will a batch fit? An estimate of the memory a run needs for it, checked before it is read.

A run holds its batch several times over at its peak (the stored copy, the train/holdout split,
the fitted model's working arrays, Great Expectations' masks): ``PEAK_FACTOR`` times the batch's
in-memory size, measured (docs/performance.md, "Large batches"). A batch whose peak would not fit in the memory
this process may use is refused at ingest, with a message, rather than killed half-way by the kernel.
"""

from __future__ import annotations

from pathlib import Path

PEAK_FACTOR = 6.0  # a run's peak resident memory / the batch's in-memory size (measured at 2M and 10M rows)
SYNTHETIC_ROW_BYTES = 100  # the synthetic batch in memory: 98 bytes a row (9 columns, 3 of text)
CSV_EXPANSION = 2.0  # in memory / on disk: 98 / 52 bytes a row for the synthetic batch as CSV
PARQUET_CELL_BYTES = 16  # a cell in memory: 8 for a number, about 8 + its length for a short text
TEXT_OFFSET_BYTES = 8  # a text value in memory beyond its bytes (pandas' Arrow-backed strings: its offset)
TEXT_SAMPLE_GROUPS, TEXT_SAMPLE_ROWS = 5, 2000  # where a Parquet file's text lengths are measured


def estimate_bytes(path: Path | None, rows: int | None = None) -> int | None:
    """The batch's size in memory, from its file (CSV: its size; Parquet: its row and column counts)
    or, for the synthetic source, its rows; None when it cannot be told before reading."""
    if rows is not None:
        return rows * SYNTHETIC_ROW_BYTES
    if path is None or not path.is_file():
        return None
    if path.suffix.lower() == ".csv":
        return int(path.stat().st_size * CSV_EXPANSION)
    return _parquet_bytes(path)


def _parquet_bytes(path: Path) -> int | None:
    """A Parquet file's size in memory: text columns by the decoded length of their values, sampled in
    up to :data:`TEXT_SAMPLE_GROUPS` row groups (a dictionary-encoded column of long values is a few
    kilobytes on disk and gigabytes in memory), other columns at :data:`PARQUET_CELL_BYTES` a cell."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException):
        return None  # not Parquet after all: the reader says so
    text = [f.name for f in schema if _is_text(f.type)]
    # Text read as dictionaries: the lengths come from each dictionary value, taken by the indices,
    # so a long value repeated is measured without being decoded row by row.
    pf = pq.ParquetFile(path, read_dictionary=text)
    rows, fields = pf.metadata.num_rows, list(schema)
    total = rows * (len(fields) - len(text)) * PARQUET_CELL_BYTES
    if not text or not rows:
        return total + rows * len(text) * PARQUET_CELL_BYTES
    groups = pf.metadata.num_row_groups
    picked = sorted(
        {round(i * (groups - 1) / max(TEXT_SAMPLE_GROUPS - 1, 1)) for i in range(TEXT_SAMPLE_GROUPS)}
    )
    lengths: dict[str, list[float]] = {name: [] for name in text}
    for group in picked:
        batch = next(pf.iter_batches(batch_size=TEXT_SAMPLE_ROWS, row_groups=[group], columns=text), None)
        for name in text if batch is not None else ():
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                per_value = pc.binary_length(column.dictionary)
                column_lengths = pc.take(per_value, column.indices)
            else:
                column_lengths = pc.binary_length(column)
            lengths[name].append(pc.mean(column_lengths).as_py() or 0.0)
    for name in text:
        average = max(lengths[name], default=0.0)  # the longest group's mean: a sample errs low otherwise
        total += int(rows * (average + TEXT_OFFSET_BYTES))
    return total


def _is_text(kind: object) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return any(check(kind) for check in checks)


def available_bytes(limit_mb: int | None = None) -> int:
    """What this process may still use: ``limit_mb`` (MLCICD_MEMORY_LIMIT_MB) if set, else the
    machine's available memory, or the container's cgroup limit less its usage if that is lower."""
    if limit_mb:
        return limit_mb * 2**20
    import psutil

    free = psutil.virtual_memory().available
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free


def check_fits(batch_bytes: int | None, what: str, limit_mb: int | None = None) -> None:
    """Refuse a batch whose run would need more memory than there is.

    Raises:
        DataError: with the estimate, what is available and what to do.
    """
    from mlcicd.errors import DataError

    if batch_bytes is None:
        return
    need, have = int(batch_bytes * PEAK_FACTOR), available_bytes(limit_mb)
    if need > have:
        gb = 2**30
        raise DataError(
            f"{what} is about {batch_bytes / gb:.1f} GB in memory, and a run needs about {PEAK_FACTOR:g} times "
            f"its batch at its peak ({need / gb:.1f} GB); {have / gb:.1f} GB is available here"
            + (" (MLCICD_MEMORY_LIMIT_MB)" if limit_mb else "")
            + ". Split the batch, sample it before the run, or run on a worker with more memory"
        )
