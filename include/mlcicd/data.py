"""Ingest: read the batch named by ``dataset_uri``, check it can be used, store it run-scoped."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd import memory
from mlcicd.choices import RETRAIN_DEFAULTS
from mlcicd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SYNTHETIC_SCHEME = "synthetic:"
# pandas' default NA markers. A CSV is read with only empty cells as missing: in a column of numbers
# these markers (and any other text) are a type violation the contract names, not silent nulls;
# in a column of text they are missing values, as pandas reads them.
NA_MARKERS = frozenset(
    {
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
TEXT_AS_MISSING = "mlcicd_text_as_missing"  # df.attrs key: {column: {"count", "markers"}}
READABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class SyntheticOptions:
    rows: int = RETRAIN_DEFAULTS["synthetic_rows"]
    seed: int = 0
    drift: float = 0.0
    corruption: str = "none"


@dataclass(frozen=True)
class BatchRef:
    """What later stages need to know about a stored batch (passed through XCom)."""

    path: str
    source_uri: str
    dataset_name: str
    target: str
    digest: str
    rows: int
    columns: list[str]
    # Numeric columns of a CSV whose text cells ('n/a', '-', ...) were read as missing: {column: count}
    text_as_missing: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRef:
        return cls(**data)


def dataset_name_for(uri: str, explicit: str | None = None) -> str:
    """The name under which the dataset's suite is found: explicit, else derived from the URI."""
    if explicit:
        name = explicit
    elif uri.strip().startswith(SYNTHETIC_SCHEME):
        name = "synthetic_churn"
    else:
        name = Path(uri.rstrip("/").split("/")[-1]).stem or "dataset"
    # Names the suite's file: never "." or "..", never hidden (as choices.NAME_PATTERN asks of explicit names).
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("._-") or "dataset"


ROOTS_SETTING = "MLCICD_DATA_ROOTS"


def check_within_roots(uri: str, roots: tuple[str, ...]) -> None:
    """Refuse, before anything is opened, a batch outside the data roots.

    A local root is a folder: the file, symlinks resolved, must be inside it (checked again on the
    file actually opened: a symlink swapped in between is caught). A URI root (``s3://bucket/prefix``)
    must be a prefix of the URI at a ``/`` boundary; a URI with ``.`` or ``..`` segments (also
    percent-encoded), a backslash or credentials is refused outright.

    Raises:
        DataError: naming the setting that lists the roots.
    """
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in ("", "file"):
        path = Path(uri.removeprefix("file://")).expanduser().resolve()
        local = [Path(r.removeprefix("file://")).expanduser().resolve() for r in roots if _is_local(r)]
        if any(path.is_relative_to(root) for root in local):
            return
    else:
        _, _, location = uri.partition("://")
        segments = _fully_unquoted(location).split("?")[0].split("/")
        plain = (
            not {".", ".."} & set(segments) and "\\" not in _fully_unquoted(uri) and "@" not in segments[0]
        )
        for root_scheme, _, root_location in (
            r.rstrip("/").partition("://") for r in roots if not _is_local(r)
        ):
            same_scheme = scheme.lower() == root_scheme.lower()
            if (
                plain
                and same_scheme
                and (location == root_location or location.startswith(root_location + "/"))
            ):
                return
    raise DataError(
        f"dataset_uri {uri!r} is outside the folders and buckets batches may be read from "
        f"({', '.join(roots) or 'none set'}); add its folder, bucket or prefix to {ROOTS_SETTING} "
        "(comma-separated, e.g. /data/batches,s3://my-bucket/batches)"
    )


def _fully_unquoted(uri: str) -> str:
    from urllib.parse import unquote

    while (decoded := unquote(uri)) != uri:
        uri = decoded
    return uri


def within_roots_opened(fh: Any, uri: str, roots: tuple[str, ...]) -> None:
    """Check the file actually opened (``/proc/self/fd``), in case a symlink changed since the check."""
    import os

    link = Path(f"/proc/self/fd/{fh.fileno()}")
    if link.exists():
        check_within_roots(os.readlink(link), roots)


def _is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def read_batch(
    uri: str, synthetic: SyntheticOptions | None = None, *, roots: tuple[str, ...], memory_limit_mb: int = 0
) -> pd.DataFrame:
    """Read a CSV or Parquet batch from a local path, an ObjectStoragePath URI, or ``synthetic:``;
    files only from inside ``roots`` (:func:`check_within_roots`). A batch whose run would not fit in
    memory (:mod:`mlcicd.memory`) is refused before it is read, or, when its size could not be told
    from the file, right after.

    Raises:
        DataError: outside the roots, or the file is missing, unreadable, of an unknown format, empty
            or too large for the memory there is.
    """
    df = _read_batch(uri, synthetic, roots=roots, memory_limit_mb=memory_limit_mb)
    memory.check_fits(int(df.memory_usage(deep=True).sum()), f"the batch {uri!r}", memory_limit_mb)
    return df


def _read_batch(
    uri: str, synthetic: SyntheticOptions | None, *, roots: tuple[str, ...], memory_limit_mb: int
) -> pd.DataFrame:
    import pandas as pd

    uri = uri.strip()
    if not uri:
        raise DataError("dataset_uri is empty: give a CSV/Parquet path or URI, or 'synthetic:'")
    if uri.startswith(SYNTHETIC_SCHEME):
        from mlcicd import synthetic as synth

        opts = synthetic or SyntheticOptions()
        memory.check_fits(
            memory.estimate_bytes(None, opts.rows),
            f"a synthetic batch of {opts.rows:,} rows",
            memory_limit_mb,
        )
        try:
            return synth.generate(opts.rows, opts.seed, opts.drift, opts.corruption)
        except ValueError as exc:
            raise DataError(str(exc)) from exc

    check_within_roots(uri, roots)
    suffix = Path(uri.split("?")[0]).suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise DataError(
            f"dataset_uri {uri!r}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
            f"use a file ending in {', '.join(READABLE_SUFFIXES)}"
        )
    reader = _read_csv if suffix == ".csv" else pd.read_parquet
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    try:
        if scheme in ("", "file"):
            path = Path(uri.removeprefix("file://")).expanduser()
            if not path.exists():
                raise DataError(
                    f"dataset_uri {uri!r}: no such file (resolved to {path.resolve()}). "
                    "Check the path; relative paths are resolved from the working directory."
                )
            if path.is_dir():
                raise DataError(f"dataset_uri {uri!r} is a directory; name a CSV or Parquet file")
            if path.stat().st_size == 0:
                raise DataError(f"dataset_uri {uri!r}: the file is empty (0 bytes)")
            memory.check_fits(memory.estimate_bytes(path), f"the batch {uri!r}", memory_limit_mb)
            with path.open("rb") as fh:
                within_roots_opened(fh, uri, roots)
                df = reader(fh)
        else:
            from airflow.sdk import ObjectStoragePath

            storage_path = ObjectStoragePath(uri)
            if not storage_path.exists():
                raise DataError(f"dataset_uri {uri!r}: no such object; check the URI and its connection")
            with storage_path.open("rb") as fh:
                df = reader(fh)
    except DataError:
        raise
    except PermissionError as exc:
        raise DataError(f"dataset_uri {uri!r}: permission denied ({exc}); make the file readable") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"dataset_uri {uri!r}: the file has no columns or rows") from exc
    except (OSError, ValueError, ImportError, pd.errors.ParserError) as exc:
        if isinstance(exc, ImportError) or "filesystem" in str(exc).lower():
            raise DataError(
                f"dataset_uri {uri!r}: cannot open {scheme}:// here ({exc}); install the Airflow "
                "provider that serves it (e.g. apache-airflow-providers-amazon for s3://) or use a local path"
            ) from exc
        raise DataError(f"dataset_uri {uri!r}: could not be read as {suffix[1:]}: {exc}") from exc
    if df.empty:
        raise DataError(f"dataset_uri {uri!r}: the file has a header but no rows")
    return df


def _read_csv(fh: Any) -> pd.DataFrame:
    import pandas as pd

    df = pd.read_csv(fh, keep_default_na=False, na_values=[""])
    df.attrs[TEXT_AS_MISSING] = _numbers_from_text(df)
    return df


def _numbers_from_text(df: pd.DataFrame, probe: int = 1000) -> dict[str, dict[str, Any]]:
    """Turn each text column that holds mostly numbers into numbers, in place; the text cells become
    missing values and are counted (with the NA markers among them: other text is not echoed, it is
    the batch's content). In columns of text, pandas' NA markers become missing values as usual."""
    import pandas as pd

    found: dict[str, dict[str, Any]] = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        present = s.dropna()
        head = pd.to_numeric(present.head(probe), errors="coerce")
        numbers = pd.to_numeric(present, errors="coerce") if head.notna().mean() >= 0.5 else None
        if numbers is None or numbers.notna().mean() < 0.5:  # a column of text
            df[col] = s.where(~s.isin(NA_MARKERS))
            continue
        text = present[numbers.isna()].astype(str)
        df[col] = pd.to_numeric(s, errors="coerce")
        if text.empty:
            continue
        markers = sorted(set(text.unique()) & NA_MARKERS)
        found[str(col)] = {
            "count": int(len(text)),
            "markers": markers,
            "other_text": int((~text.isin(NA_MARKERS)).sum()),
        }
    return found


def check_target(df: pd.DataFrame, target: str) -> None:
    """Check that ``target`` is a column with exactly two classes.

    Raises:
        DataError: the column is missing, or does not hold a binary target.
    """
    if target not in df.columns:
        raise DataError(
            f"target column {target!r} is not in the batch; its columns are: {', '.join(map(str, df.columns))}. "
            "Set the target_column param."
        )
    classes = df[target].dropna().unique()
    if len(classes) < 2:  # the value itself stays out of the message: it is the batch's content
        shown = "every row has the same value" if len(classes) else "every value is null"
        raise DataError(
            f"target column {target!r} has a single class ({shown}); a classifier needs both classes in the batch"
        )
    if len(classes) > 2:
        raise DataError(
            f"target column {target!r} has {len(classes)} classes; mlcicd trains binary classifiers only"
        )


def content_digest(df: pd.DataFrame) -> str:
    """A digest of the batch's content (values, column names and dtypes), stable across file formats."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def store_batch(
    df: pd.DataFrame, run_dir: Path, *, source_uri: str, dataset_name: str, target: str
) -> BatchRef:
    """Write the batch to ``run_dir/batch.parquet`` (overwriting: reruns are idempotent)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "batch.parquet"
    tmp = path.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return BatchRef(
        path=str(path),
        source_uri=source_uri,
        dataset_name=dataset_name,
        target=target,
        digest=content_digest(df),
        rows=len(df),
        columns=[str(c) for c in df.columns],
        text_as_missing=dict(df.attrs.get(TEXT_AS_MISSING) or {}),
    )


def load_stored(ref: BatchRef) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(ref.path)
