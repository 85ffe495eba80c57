from __future__ import annotations

import pandas as pd
import pytest

from mlcicd import data
from mlcicd.errors import DataError

MEMORY = ("memory:///mlcicd",)


def test_reads_csv_and_parquet_alike(tmp_path, churn_df):
    churn_df.to_csv(tmp_path / "b.csv", index=False)
    churn_df.to_parquet(tmp_path / "b.parquet", index=False)
    from_csv = data.read_batch(str(tmp_path / "b.csv"), roots=(str(tmp_path),))
    from_parquet = data.read_batch(f"file://{tmp_path / 'b.parquet'}", roots=(f"file://{tmp_path}",))
    pd.testing.assert_frame_equal(from_parquet, churn_df)
    assert list(from_csv.columns) == list(churn_df.columns) and len(from_csv) == len(churn_df)


def test_reads_through_object_storage_path(tmp_path, churn_df):
    # A scheme other than file:// goes through Airflow's ObjectStoragePath (fsspec): memory:// here.
    import fsspec
    from airflow.sdk.io import attach

    assert "cannot open nosuchfs:// here" in _error(
        lambda: data.read_batch("nosuchfs://bucket/x.csv", roots=("nosuchfs://bucket",))
    )
    attach("memory", fs=fsspec.filesystem("memory"))
    with fsspec.filesystem("memory").open("/mlcicd/batch.csv", "w") as fh:
        churn_df.to_csv(fh, index=False)
    df = data.read_batch("memory:///mlcicd/batch.csv", roots=MEMORY)
    assert len(df) == len(churn_df)
    with pytest.raises(DataError, match="no such object"):
        data.read_batch("memory:///mlcicd/absent.csv", roots=MEMORY)


def _error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    return str(info.value)


def test_synthetic_source(churn_df):
    df = data.read_batch("synthetic:", data.SyntheticOptions(rows=1200, seed=11), roots=())
    pd.testing.assert_frame_equal(df, churn_df)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("batch.csv", None, "no such file"),
        ("batch.csv", b"", "the file is empty"),
        ("batch.csv", b"a,b,churned\n", "header but no rows"),
        ("batch.parquet", b"PAR1 this is not parquet", "could not be read as parquet"),
        ("batch.csv", b'a,b\n"unterminated,1\n', "could not be read as csv"),
    ],
    ids=["missing", "zero-bytes", "header-only", "corrupt-parquet", "broken-csv"],
)
def test_unusable_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    error = _error(lambda: data.read_batch(str(path), roots=(str(tmp_path),)))
    assert message in error and name in error


def test_directory_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        data.read_batch(
            str(tmp_path / "d.csv") if (tmp_path / "d.csv").mkdir() is None else "", roots=(str(tmp_path),)
        )
    with pytest.raises(DataError, match="cannot tell the format"):
        data.read_batch(str(tmp_path / "batch.xlsx"), roots=(str(tmp_path),))
    with pytest.raises(DataError, match="dataset_uri is empty"):
        data.read_batch("   ", roots=(str(tmp_path),))


def test_target_checks(churn_df):
    data.check_target(churn_df, "churned")
    with pytest.raises(DataError, match="'label' is not in the batch; its columns are: customer_age"):
        data.check_target(churn_df, "label")
    with pytest.raises(DataError, match="single class"):
        data.check_target(churn_df.assign(churned=0), "churned")
    with pytest.raises(DataError, match="3 classes"):
        data.check_target(churn_df.assign(churned=churn_df.index % 3), "churned")


def test_store_batch_is_idempotent_and_digest_tracks_content(tmp_path, churn_df):
    a = data.store_batch(churn_df, tmp_path, source_uri="x", dataset_name="d", target="churned")
    b = data.store_batch(churn_df, tmp_path, source_uri="x", dataset_name="d", target="churned")
    assert a == b and a.rows == len(churn_df)
    pd.testing.assert_frame_equal(data.load_stored(a), churn_df)
    changed = churn_df.copy()
    changed.loc[0, "monthly_charges"] += 1
    assert data.content_digest(changed) != a.digest


@pytest.mark.parametrize(
    ("uri", "explicit", "name"),
    [
        ("synthetic:", None, "synthetic_churn"),
        ("/data/churn 2026.csv", None, "churn_2026"),
        ("s3://b/k/x.parquet", "mine", "mine"),
    ],
)
def test_dataset_names(uri, explicit, name):
    assert data.dataset_name_for(uri, explicit) == name


@pytest.mark.parametrize(
    "uri",
    [
        "{outside}/secret.csv",  # another folder
        "{root}/../secret.csv",  # climbing out of the root
        "file://{outside}/secret.csv",
        "{root}/link.csv",  # a symlink inside the root to a file outside
        "{root}-evil/x.csv",  # a folder whose name merely starts like the root
        "memory:///mlcicd-evil/x.csv",  # a bucket prefix at no "/" boundary
        "memory:///mlcicd/../other/x.csv",
        "memory:///mlcicd/%2e%2e/other/x.csv",  # percent-encoded: fsspec/yarl would decode it
        "memory:///mlcicd/%252E%252E/other/x.csv",  # and twice
        "memory:///mlcicd\\..\\other\\x.csv",
        "memory:///other/x.csv",
        "s3://bucket/x.csv",  # a scheme with no root at all
    ],
)
def test_a_batch_outside_the_data_roots_is_refused_before_it_is_opened(tmp_path, churn_df, uri):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret.csv").write_text("password,churned\nhunter2,1\n")
    (root / "link.csv").symlink_to(outside / "secret.csv")
    uri = uri.format(root=root, outside=outside)
    error = _error(lambda: data.read_batch(uri, roots=(str(root), *MEMORY)))
    assert "outside the folders and buckets batches may be read from" in error
    assert "MLCICD_DATA_ROOTS" in error
    assert "hunter2" not in error and "password" not in error  # nothing of the file is quoted


def test_inside_the_roots_relative_paths_and_file_uris_are_read(tmp_path, churn_df, monkeypatch):
    (tmp_path / "in").mkdir()
    churn_df.to_csv(tmp_path / "in" / "b.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert len(data.read_batch("in/b.csv", roots=(f"file://{tmp_path}/in/",))) == len(churn_df)


@pytest.mark.parametrize(("uri", "name"), [("/x/..csv", "dataset"), ("/x/.hidden.csv", "hidden"),
                                          ("/x/-a.csv", "a"), ("/x/b c.parquet", "b_c")])  # fmt: skip
def test_derived_dataset_names_are_never_dots_or_hidden(uri, name):
    assert data.dataset_name_for(uri) == name


def test_the_file_actually_opened_is_checked_too(tmp_path, monkeypatch):
    """A symlink swapped between read_batch's check of the path and its open is caught on the open file
    itself: the swap is made at that moment (while the file's size is estimated)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "inside.csv").write_text("a,churned\n1,0\n2,1\n")
    (outside / "secret.csv").write_text("a,churned\n1,1\n")
    link = root / "batch.csv"
    link.symlink_to(root / "inside.csv")
    estimate = data.memory.estimate_bytes

    def swapped_meanwhile(path, rows=None):
        link.unlink()
        link.symlink_to(outside / "secret.csv")
        return estimate(path, rows)

    assert len(data.read_batch(str(link), roots=(str(root),))) == 2  # untouched: read
    monkeypatch.setattr(data.memory, "estimate_bytes", swapped_meanwhile)
    with pytest.raises(DataError, match="MLCICD_DATA_ROOTS"):
        data.read_batch(str(link), roots=(str(root),))
