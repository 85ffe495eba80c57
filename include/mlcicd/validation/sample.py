"""Rows made from a contract: a batch that holds to a suite's columns, types, value sets and ranges.

``mlcicd check`` fits a project's estimator on such rows when the project's batches cannot be read
where it runs (a CI job without the bucket's credentials): they test the code's mechanics (columns,
types, categories it must handle), not the model's quality. The target takes its suite's classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FLOAT_TYPES = ("float", "Float")


def rows_from_suite(suite: dict[str, Any], rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows drawn from what ``suite`` expects of each column.

    Raises:
        ValueError: the suite names no columns (``expect_table_columns_to_match_set``).
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: list[str] = []
    sets: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    types: dict[str, list[str]] = {}
    for e in suite.get("expectations", []):
        kw, kind = e.get("kwargs", {}), e.get("type")
        if kind in ("expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list"):
            columns = list(kw.get("column_set") or kw.get("column_list") or [])
        elif kind == "expect_column_values_to_be_in_set":
            sets[kw["column"]] = list(kw["value_set"])
        elif kind == "expect_column_values_to_be_between" and kw.get("min_value") is not None:
            low, high = float(kw["min_value"]), float(kw.get("max_value") or kw["min_value"])
            known = ranges.get(kw["column"])  # the tighter range (the warning's, inside the critical one)
            if known is None or high - low < known[1] - known[0]:
                ranges[kw["column"]] = (low, high)
        elif kind == "expect_column_values_to_be_in_type_list":
            types[kw["column"]] = list(kw["type_list"])
    if not columns:
        raise ValueError(f"suite {suite.get('name')!r} names no columns (expect_table_columns_to_match_set)")
    out: dict[str, Any] = {}
    for column in columns:
        if column in sets:
            out[column] = rng.choice(np.array(sets[column], dtype=object), size=rows)
            continue
        low, high = ranges.get(column, (0.0, 1.0))
        floats = any(t.startswith(FLOAT_TYPES) for t in types.get(column, ["float64"]))
        values = rng.uniform(low, high, size=rows)
        out[column] = values if floats else np.round(values).astype("int64")
    df = pd.DataFrame(out, columns=columns)
    for column in sets:  # a value set of numbers (a label, a code) keeps its numbers' type
        if column in df and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in sets[column]
        ):
            df[column] = pd.to_numeric(df[column])
    return df
