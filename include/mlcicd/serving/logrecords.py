"""A prediction-log record from a request's rows: what the logger writes, and its size in the queue."""

from __future__ import annotations

from typing import Any


def nbytes(frame: Any) -> int:
    """A request's rows in memory: a DataFrame's, or the arrays' of a column name -> array mapping (text
    by its length: an object array's ``nbytes`` counts 8 bytes a value, however long)."""
    if hasattr(frame, "memory_usage"):
        return int(frame.memory_usage(index=False, deep=True).sum())
    if isinstance(frame, dict):
        return sum(_array_bytes(v) for v in frame.values())
    return 0


def _array_bytes(values: Any) -> int:
    if getattr(values, "dtype", None) is not None and values.dtype != object:
        return int(values.nbytes)
    return sum(8 + (len(v) if isinstance(v, (str, bytes)) else 8) for v in values)


def plain(v: Any) -> Any:
    """numpy scalars as Python values; anything else is not a record value."""
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON")


def expand(item: dict[str, Any]) -> list[dict[str, Any]]:
    if "__frame__" not in item:
        return [item]
    header, frame, predictions = item["__frame__"]
    if isinstance(frame, dict):  # column name -> array
        names = list(frame)
        rows = [
            dict(zip(names, values, strict=True))
            for values in zip(*(frame[n].tolist() for n in names), strict=True)
        ]
    else:
        rows = frame.to_dict(orient="records")
    return [
        {**header, "row": i, "features": _finite(f), "prediction": p}
        for i, (f, p) in enumerate(zip(rows, predictions, strict=True))
    ]


def _finite(features: dict[str, Any]) -> dict[str, Any]:
    """Missing values as null (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in features.items()}
