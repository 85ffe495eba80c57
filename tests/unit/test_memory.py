"""A batch whose run would not fit in memory is refused at ingest, with a message, before it is read."""

from __future__ import annotations

import pandas as pd
import pytest

from mlcicd import data, memory, synthetic
from mlcicd.errors import DataError


def test_a_synthetic_batch_too_large_is_refused_before_it_is_generated(monkeypatch):
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(DataError) as err:
        data.read_batch("synthetic:", data.SyntheticOptions(rows=1_000_000), roots=(), memory_limit_mb=100)
    message = str(err.value)
    assert "a synthetic batch of 1,000,000 rows is about 0.1 GB in memory" in message
    assert "0.6 GB" in message and "0.1 GB is available here (MLCICD_MEMORY_LIMIT_MB)" in message
    assert "Split the batch" in message


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_too_large_is_refused_before_it_is_read(tmp_path, monkeypatch, suffix):
    df = synthetic.generate(20_000, 1)
    path = tmp_path / f"batch{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False)
    estimate = memory.estimate_bytes(path)
    actual = df.memory_usage(deep=True).sum()
    assert 0.5 * actual < estimate < 2.5 * actual  # the estimate is of the right size
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("read"))
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(DataError, match="is about .* GB in memory"):
        data.read_batch(str(path), roots=(str(tmp_path),), memory_limit_mb=1)


def test_a_batch_whose_size_cannot_be_told_is_refused_right_after_reading(tmp_path):
    import fsspec
    from airflow.sdk.io import attach

    attach("memory", fs=fsspec.filesystem("memory"))  # through Airflow's ObjectStoragePath, as in test_data
    df = synthetic.generate(20_000, 2)
    with fsspec.filesystem("memory").open("/mlcicd/big.csv", "w") as fh:
        df.to_csv(fh, index=False)
    uri = "memory:///mlcicd/big.csv"
    assert len(data.read_batch(uri, roots=("memory:///mlcicd",))) == 20_000  # fits: read
    with pytest.raises(DataError, match="is about .* GB in memory"):
        data.read_batch(uri, roots=("memory:///mlcicd",), memory_limit_mb=1)


def test_without_a_limit_the_available_memory_is_the_bound():
    have = memory.available_bytes()
    assert 0 < have < 2**50
    memory.check_fits(1_000, "a small batch")  # fits
    with pytest.raises(DataError, match="is available here. Split"):
        memory.check_fits(have, "a batch as large as the free memory")  # its run needs 6 times that


def test_a_small_parquet_file_of_dictionary_encoded_long_text_is_refused_before_it_is_read(
    tmp_path, monkeypatch
):
    """A few kilobytes on disk, gigabytes once decoded (issue 28, finding 6): the estimate measures the
    text's decoded length instead of counting cells."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 3_000_000
    text = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype="int32")), pa.array(["x" * 1000]))
    path = tmp_path / "small.parquet"
    pq.write_table(pa.table({"note": text, "amount": np.ones(rows)}), path)
    assert path.stat().st_size < 2_000_000  # on disk: small
    assert memory.estimate_bytes(path) > rows * 1000  # in memory: 3 GB of text
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(DataError, match="is about 2.9 GB in memory"):
        data.read_batch(str(path), roots=(str(tmp_path),), memory_limit_mb=2000)
