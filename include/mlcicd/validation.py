"""Data checks: run a Great Expectations 1.x suite on the batch and keep an HTML report.

Each dataset's suite is either declared (``include/suites/<dataset>.json``, versioned with the
code) or inferred from the dataset's first accepted batch and saved under the state folder, after
which later batches are held to it. Suites are stored in GX's own JSON form.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "Int64", "float32", "float64", "Float64"]
# Categorical columns with more distinct values than this are treated as free text (no set check).
MAX_CATEGORIES = 50
ROW_COUNT_FACTOR = 10
RANGE_MARGIN = 0.1
MAX_DUPLICATE_FRACTION = 0.02


@dataclass(frozen=True)
class SuiteSource:
    path: str
    origin: str  # "declared", "inferred" (saved earlier) or "new" (inferred from this batch)


@dataclass
class ValidationOutcome:
    success: bool
    suite_name: str
    suite_origin: str
    suite_path: str
    report_path: str | None
    evaluated: int
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_suite(dataset_name: str, declared_dir: Path, inferred_dir: Path) -> SuiteSource | None:
    """The dataset's suite file: a declared one wins over an inferred one."""
    for origin, folder in (("declared", declared_dir), ("inferred", inferred_dir)):
        path = folder / f"{dataset_name}.json"
        if path.exists():
            return SuiteSource(str(path), origin)
    return None


def infer_suite(df: pd.DataFrame, name: str, target: str) -> dict[str, Any]:
    """Infer a suite from an accepted batch (GX 1.x has no profiler).

    It pins the column set, each column's type, null rates (with slack), numeric ranges (with a
    margin), category sets, row-count bounds and the share of duplicated rows.
    """
    import pandas as pd

    n = len(df)
    exp: list[dict[str, Any]] = [
        _e("expect_table_columns_to_match_set", column_set=[str(c) for c in df.columns], exact_match=True),
        _e(
            "expect_table_row_count_to_be_between",
            min_value=max(1, n // ROW_COUNT_FACTOR),
            max_value=n * ROW_COUNT_FACTOR,
        ),
        _e(
            "expect_compound_columns_to_be_unique",
            column_list=[str(c) for c in df.columns],
            mostly=round(1 - MAX_DUPLICATE_FRACTION, 4),
        ),
    ]
    for col in df.columns:
        s = df[col]
        column = str(col)
        null_rate = float(s.isna().mean())
        mostly = max(0.0, round(1 - min(1.0, null_rate * 1.5 + 0.01), 4))
        exp.append(_e("expect_column_values_to_not_be_null", column=column, mostly=mostly))
        if pd.api.types.is_bool_dtype(s) or column == target:
            exp.append(_e("expect_column_values_to_be_in_set", column=column, value_set=_values(s)))
        elif pd.api.types.is_numeric_dtype(s):
            exp.append(_e("expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES))
            lo, hi = float(s.min()), float(s.max())
            margin = (hi - lo) * RANGE_MARGIN or abs(hi) * RANGE_MARGIN or 1.0
            low = lo - margin
            if lo >= 0:
                low = max(0.0, low)
            exp.append(
                _e(
                    "expect_column_values_to_be_between",
                    column=column,
                    min_value=_round(low),
                    max_value=_round(hi + margin),
                    mostly=0.99,
                )
            )
        else:
            exp.append(_e("expect_column_values_to_be_of_type", column=column, type_=str(s.dtype)))
            if s.nunique() <= MAX_CATEGORIES:
                exp.append(_e("expect_column_values_to_be_in_set", column=column, value_set=_values(s)))
    return {
        "name": name,
        "expectations": exp,
        "meta": {"mlcicd": {"inferred_from_rows": n, "target": target}},
    }


def save_suite(suite: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(suite, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def validate(
    df: pd.DataFrame, suite: dict[str, Any], *, run_name: str, docs_dir: Path
) -> tuple[bool, int, list[str], str | None]:
    """Run ``suite`` on ``df``; build the GX Data Docs page for this validation.

    Returns:
        (success, number of expectations evaluated, readable failure lines, report HTML path)
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site = "mlcicd"
    context.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    gx_suite = gx.ExpectationSuite(name=suite["name"], meta=suite.get("meta", {}))
    for e in suite["expectations"]:
        gx_suite.add_expectation_configuration(
            ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=e.get("meta", {}))
        )
    gx_suite = context.suites.add(gx_suite)
    batch_def = (
        context.data_sources.add_pandas("mlcicd")
        .add_dataframe_asset(suite["name"])
        .add_batch_definition_whole_dataframe("batch")
    )
    vdef = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite['name']}_check", data=batch_def, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite['name']}_checkpoint",
            validation_definitions=[vdef],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[site])],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=run_name))
    (vresult,) = result.run_results.values()
    failures = [_describe(r) for r in vresult.results if not r.success]
    report = _report_path(docs_dir, suite["name"], run_name)
    return bool(result.success), len(vresult.results), failures, report


def _report_path(docs_dir: Path, suite_name: str, run_name: str) -> str | None:
    folder = docs_dir / "validations" / suite_name / run_name
    pages = sorted(folder.rglob("*.html"), key=lambda p: p.stat().st_mtime)
    return str(pages[-1]) if pages else None


def _describe(r: Any) -> str:
    cfg = r.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    column = kwargs.pop("column", None)
    res = r.result or {}
    where = f"column {column!r}: " if column else "table: "
    observed = []
    if cfg.type == "expect_table_columns_to_match_set" and isinstance(res.get("observed_value"), list):
        want, got = set(kwargs.get("column_set", [])), set(res["observed_value"])
        kwargs = {}
        observed.append(f"missing columns {sorted(want - got)}, unexpected columns {sorted(got - want)}")
    elif "observed_value" in res:
        observed.append(f"observed {_short(res['observed_value'])}")
    if "unexpected_percent" in res and res["unexpected_percent"] is not None:
        observed.append(f"{res['unexpected_percent']:.1f}% unexpected")
    if res.get("partial_unexpected_list"):
        observed.append(f"e.g. {_short(sorted(set(map(str, res['partial_unexpected_list'])))[:5])}")
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed.append(f"could not be evaluated: {str(r.exception_info.get('exception_message'))[:160]}")
    expected = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
    return f"{where}{cfg.type} failed ({expected}); " + "; ".join(observed)


def _short(value: Any, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _e(expectation_type: str, /, **kwargs: Any) -> dict[str, Any]:
    return {"type": expectation_type, "kwargs": kwargs}


def _values(s: pd.Series) -> list[Any]:
    return sorted(v.item() if hasattr(v, "item") else v for v in s.dropna().unique())


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x
