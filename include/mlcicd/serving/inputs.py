"""Request bodies into model input: bounded JSON parsing, the payload formats, typed columns.

Every way a body can be wrong ends in :class:`BadInput` (a 4xx with a message), never in a 500:
invalid JSON or UTF-8, ``NaN``/``Infinity`` literals, integer literals of thousands of digits,
nesting too deep to parse, an unknown format, ragged rows, missing columns, values of
the wrong type or beyond their type's range, more rows than allowed.

The input is checked against the model's signature here, once per request, and turned into one
typed numpy array per column (int64, float64, bool or object): requests are then concatenated per
column into a batch without pandas. MLflow's own parser and schema enforcement did the same at
about 1.2 ms a request, and cannot batch; their messages are kept where tests and users know them
("Model is missing inputs [...]").

Formats: MLflow's ``dataframe_split``, ``dataframe_records``, ``instances`` and ``inputs``
(records, columns, or rows in signature order), and the Open Inference Protocol's ``inputs``
(one input per column as MLServer's ``pd`` content type, or one ``[n, k]`` tensor).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcicd.serving.config import name_of

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PAYLOAD_HINT = (
    "send a JSON object with exactly one of 'dataframe_split', 'dataframe_records', 'instances' or "
    "'inputs', as for MLflow's scoring server, or an Open Inference Protocol request to /v2/models/NAME/infer"
)
INT_RANGE = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
FLOAT_MAX = {"double": np.finfo(np.float64).max, "float": float(np.finfo(np.float32).max)}
# The Open Inference Protocol's datatypes for the signature's types, and the reverse.
V2_TYPES = {"long": "INT64", "integer": "INT32", "double": "FP64", "float": "FP32", "boolean": "BOOL",
            "string": "BYTES"}  # fmt: skip


V2_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                "FP64", "BYTES")  # fmt: skip


class BadInput(ValueError):
    """A request the model cannot take; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # long | integer | double | float | boolean | string
    required: bool = True


Columns = dict[str, np.ndarray]  # one typed array per signature column, all of one length


def columns_of(specs: list[dict[str, Any]]) -> list[Column]:
    """The signature's input columns, from MLflow's column specs as ``MLmodel`` stores them
    (``{"type": "long", "name": "customer_age", "required": true}``)."""
    out = []
    for spec in specs:
        kind = str(spec.get("type"))
        if kind not in V2_TYPES:
            raise ValueError(
                f"the signature's column {spec.get('name')!r} has type {kind}, which this server cannot take"
            )
        out.append(Column(str(spec["name"]), kind, bool(spec.get("required", True))))
    return out


# -- JSON --------------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """The body as JSON, or BadInput: no NaN/Infinity, no integer beyond Python's digit limit, no
    nesting beyond the interpreter's recursion limit (values nested deeper than a column's are
    refused later, as values of the wrong type)."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise BadInput("the JSON is nested too deeply (thousands of levels)") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, and int() of a literal beyond the digit limit
        raise BadInput(f"the body is not valid JSON ({str(exc)[:200]})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: send null for a missing value")


# -- MLflow's formats ---------------------------------------------------------------------------


def table_from_mlflow(
    payload: Any, columns: list[Column], max_rows: int | None = None
) -> tuple[dict[str, list[Any]], int]:
    """Column name -> values, and the number of rows, from an MLflow scoring payload."""
    if not isinstance(payload, dict):
        raise BadInput(f"the body is a JSON {type(payload).__name__}; {PAYLOAD_HINT}")
    present = [k for k in MLFLOW_FORMATS if k in payload]
    if len(present) != 1:
        found = ", ".join(repr(k) for k in list(payload)[:5]) or "nothing"
        raise BadInput(f"found {found}; {PAYLOAD_HINT}")
    fmt = present[0]
    data = payload[fmt]
    rows = data.get("data") if fmt == "dataframe_split" and isinstance(data, dict) else data
    if max_rows is not None and isinstance(rows, list) and len(rows) > max_rows:  # before any per-row work
        _too_many(len(rows), max_rows)
    if fmt == "dataframe_split":
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("columns"), list)
            or not isinstance(data.get("data"), list)
        ):
            raise BadInput(
                "'dataframe_split' must be an object with a 'columns' list and a 'data' list of rows"
            )
        return _from_rows(data["columns"], data["data"], fmt)
    if isinstance(data, dict):  # columnar: {"col": [values]}
        return _from_columnar(data, fmt)
    if not isinstance(data, list):
        raise BadInput(f"{fmt!r} must be a list of records or rows, or an object of columns")
    if all(isinstance(r, dict) for r in data):
        return _from_records(data, fmt)
    if all(isinstance(r, list) for r in data):
        return _from_rows([c.name for c in columns], data, fmt)
    raise BadInput(
        f"{fmt!r} must be a list of records (objects) or of rows (lists), not of anything else or a mix"
    )


def _from_rows(names: list[Any], rows: list[Any], fmt: str) -> tuple[dict[str, list[Any]], int]:
    if not all(isinstance(n, str) for n in names):
        raise BadInput(f"{fmt!r}: column names must be strings")
    if len(set(names)) != len(names):
        raise BadInput(f"{fmt!r}: a column is named twice")
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise BadInput(f"{fmt!r}: row {i} holds {got}, expected a list of {width} (one per column)")
    return {n: [row[j] for row in rows] for j, n in enumerate(names)}, len(rows)


def _from_records(records: list[dict[str, Any]], fmt: str) -> tuple[dict[str, list[Any]], int]:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r))
    for i, r in enumerate(records):  # linear: only the first ragged record is looked into
        if len(r) != len(names):
            n = next(n for n in names if n not in r)
            raise BadInput(
                f"{fmt!r}: record {i} has no {n!r}; every record needs every column (null when missing)"
            )
    return {n: [r[n] for r in records] for n in names}, len(records)


def _from_columnar(data: dict[str, Any], fmt: str) -> tuple[dict[str, list[Any]], int]:
    lengths = {n: len(v) if isinstance(v, list) else -1 for n, v in data.items()}
    if any(v < 0 for v in lengths.values()):
        raise BadInput(f"{fmt!r} as an object must map each column to a list of values")
    if len(set(lengths.values())) > 1:
        raise BadInput(f"{fmt!r}: the columns have different lengths {sorted(set(lengths.values()))}")
    return dict(data), next(iter(lengths.values()), 0)


# -- the Open Inference Protocol ----------------------------------------------------------------


def table_from_v2(payload: Any, columns: list[Column]) -> tuple[dict[str, list[Any]], int]:
    """Column name -> values from an OIP request: one input per column, or one ``[n, k]`` tensor."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise BadInput("an inference request is an object with a non-empty 'inputs' list")
    if "id" in payload and payload["id"] is not None and not isinstance(payload["id"], str):
        raise BadInput("'id' must be a string")
    asked = payload.get("outputs")
    if asked is not None and (
        not isinstance(asked, list)
        or any(not isinstance(o, dict) or o.get("name") != "predict" for o in asked)
    ):
        raise BadInput("this model has one output, 'predict'; leave 'outputs' out or ask for it by name")
    inputs = payload["inputs"]
    for x in inputs:
        if not isinstance(x, dict) or not isinstance(x.get("name"), str) or "data" not in x:
            raise BadInput("each input needs a 'name', a 'shape', a 'datatype' and 'data'")
        shape = x.get("shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadInput(f"input {x['name']!r}: 'shape' must be a list of non-negative integers")
        if x.get("datatype") not in V2_DATATYPES:
            raise BadInput(f"input {x['name']!r}: 'datatype' must be one of {', '.join(V2_DATATYPES)}")
    if (
        len(inputs) == 1
        and len(inputs[0]["shape"]) == 2
        and inputs[0]["name"] not in {c.name for c in columns}
    ):
        x = inputs[0]
        n, k = x["shape"]
        if k != len(columns):
            raise BadInput(
                f"input {x['name']!r} has {k} columns; the model takes {len(columns)}: {[c.name for c in columns]}"
            )
        flat = _flat(x, n * k)
        return {c.name: flat[j::k] for j, c in enumerate(columns)}, n
    table, rows = {}, None
    for x in inputs:
        shape = x["shape"]
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise BadInput(f"input {x['name']!r} has shape {shape}; one column is [n] or [n, 1]")
        if rows is not None and shape[0] != rows:
            raise BadInput(f"the inputs have different numbers of rows ({rows} and {shape[0]})")
        rows = shape[0]
        if x["name"] in table:
            raise BadInput(f"input {x['name']!r} is given twice")
        table[x["name"]] = _flat(x, rows)
    return table, rows or 0


def _flat(x: dict[str, Any], size: int) -> list[Any]:
    data = x["data"]
    if isinstance(data, list) and any(isinstance(v, list) for v in data):
        data = [v for row in data for v in (row if isinstance(row, list) else [row])]
    if not isinstance(data, list) or len(data) != size:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise BadInput(f"input {x['name']!r}: its shape {x['shape']} needs {size} values, 'data' holds {got}")
    return data


# -- typed columns ------------------------------------------------------------------------------


def typed(table: dict[str, list[Any]], rows: int, columns: list[Column], max_rows: int) -> Columns:
    """One typed array per signature column (extra columns are ignored), or BadInput."""
    if rows == 0:
        raise BadInput("the request holds no rows")
    if rows > max_rows:
        _too_many(rows, max_rows)
    present = {c.name: _array(c, table[c.name]) for c in columns if c.name in table}  # type errors first
    missing = [c.name for c in columns if c.name not in table and c.required]
    if missing:
        extra = sorted(set(table) - {c.name for c in columns})[:10]
        raise BadInput(
            f"Model is missing inputs {missing}."
            + (f" Note that there were extra inputs: {extra}" if extra else "")
        )
    for c in columns:  # optional columns may be left out, as MLflow allows: all missing
        if c.name not in present:
            present[c.name] = _array(c, [None] * rows)
    return present


def _too_many(rows: int, max_rows: int) -> None:
    raise BadInput(
        f"the request holds {rows} rows; at most {max_rows} are accepted ({name_of('max_rows')}): "
        "split it into smaller requests",
        status=413,
    )


def _array(column: Column, values: list[Any]) -> np.ndarray:
    kind = column.kind
    bad = None
    if kind in INT_RANGE:
        lo, hi = INT_RANGE[kind]
        if any(v is None for v in values):
            bad = next(
                (
                    (i, v)
                    for i, v in enumerate(values)
                    if v is not None and (not _is_int(v) or not lo <= v <= hi)
                ),
                None,
            )
            if bad is None:
                # Missing values make an integer column float, as pandas does; the pipeline imputes them.
                return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        else:
            bad = next(((i, v) for i, v in enumerate(values) if not _is_int(v) or not lo <= v <= hi), None)
            if bad is None:
                return np.array([int(v) for v in values], dtype=np.int64)
        expected = f"integers between {lo} and {hi}"
    elif kind in FLOAT_MAX:
        limit = FLOAT_MAX[kind]
        bad = next(((i, v) for i, v in enumerate(values) if v is not None and not _is_number(v, limit)), None)
        if bad is None:
            return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        expected = f"numbers within +/-{limit:.3g}"
    elif kind == "boolean":
        bad = next(((i, v) for i, v in enumerate(values) if not isinstance(v, bool)), None)
        if bad is None:
            return np.array(values, dtype=bool)
        expected = "true or false"
    else:
        bad = next(((i, v) for i, v in enumerate(values) if v is not None and not isinstance(v, str)), None)
        if bad is None:
            return np.array(values, dtype=object)
        expected = "strings (or null)"
    i, v = bad
    shown = repr(v) if not isinstance(v, (list, dict, str)) else f"a {type(v).__name__}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 10**30:
        shown = f"an integer of {len(str(abs(v)))} digits"
    raise BadInput(f"column {column.name!r} ({kind}) expects {expected}; row {i} holds {shown}")


def _is_int(v: Any) -> bool:
    """An integer, or a float with an integral value (pandas writes 62.0 for an int column with a null)."""
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any, limit: float) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return abs(float(v)) <= limit
    except OverflowError:  # an int beyond any float
        return False
