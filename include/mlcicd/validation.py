"""Data checks: a Great Expectations 1.x suite in two parts, a contract and a distribution profile.

The **contract** (GX severity ``critical``) says what makes a batch unusable: the column set,
types, a valid target, nulls well beyond the reference's, implausible values, unseen categories
above a small share, duplicates beyond a bound. A contract failure stops the run. The **profile**
(severity ``warning``) records what the reference batch looked like: observed ranges, means,
category shares, null rates, volume. A profile failure is *shift*: reported (GX report, run
summary, MLflow run, UI), never stopping the run: the world changing is why models are retrained.

The reference is the batch that trained the serving champion: every run infers a suite from its
own batch and logs it with the model (``validation/reference_suite.json``), so the next batches
are judged against the champion's training data. A declared suite (``include/suites/<dataset>.json``)
replaces the inferred contract (hard unless marked ``"severity": "warning"``); the profile stays.

The plausibility rule (contract), chosen so that every corruption the README lists is refused and
the synthetic source's drift up to its maximum (5) passes: a numeric value is implausible when it
lies more than one reference range (max - min) below the minimum or above the maximum, or is
negative in a column that was never negative; at most 0.1 % of a batch's values may be. Orders of
magnitude (cents for dollars, a unit change), sign errors and sentinel values such as -999 or
99999 fall outside; a shifted distribution does not.
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
CONTRACT = "critical"  # GX FailureSeverity: a failure stops the run
PROFILE = "warning"  # a failure is shift: reported, the run goes on
SUITE_FORMAT = 2  # suites inferred before the contract/profile split have no format and are re-inferred

# Contract bounds.
MAX_CATEGORIES = 50  # categorical columns with more distinct values are free text (no set check)
PLAUSIBLE_RANGES = 1.0  # values beyond min - 1 x range or max + 1 x range are implausible...
MAX_IMPLAUSIBLE = 0.001  # ...and at most 0.1 % of a column's values may be
MAX_UNSEEN_CATEGORIES = 0.01  # share of values outside the reference's categories
NULL_SLACK = 0.05  # null share may exceed the reference's by 5 points (and at least double it)
MAX_DUPLICATE_FRACTION = 0.02
# Profile bounds: beyond them the batch has shifted.
ROW_COUNT_FACTOR = 10
RANGE_MARGIN = 0.1  # the observed range, widened by 10 %...
PROFILE_MOSTLY = 0.99  # ...holds 99 % of the values
MEAN_SHIFT_SD = 0.25  # a column's mean moved by more than a quarter standard deviation
MAX_SHARE_KL = 0.02  # KL divergence of category shares from the reference's, in nats
PROFILE_SAMPLE_ROWS = 1_000_000  # the profile of a larger batch is checked on a sample of this many rows


@dataclass(frozen=True)
class SuiteSource:
    path: str
    origin: str  # "declared", "inferred" (saved earlier) or "new" (inferred from this batch)


@dataclass
class Checked:
    """One validation: contract failures stop the run, shift is reported."""

    evaluated: int
    failures: list[str]
    shift: list[str]
    report_path: str | None  # the contract's page
    profile_report_path: str | None = None

    @property
    def success(self) -> bool:
        return not self.failures


@dataclass
class ValidationOutcome:
    success: bool
    suite_name: str
    suite_origin: str
    suite_path: str
    report_path: str | None
    evaluated: int
    failures: list[str] = field(default_factory=list)
    shift: list[str] = field(default_factory=list)
    reference: str = ""  # what the batch was judged against, in words
    reference_suite_path: str | None = None  # the suite inferred from this batch (logged with the model)
    profile_report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_suite(dataset_name: str, declared_dir: Path, inferred_dir: Path) -> SuiteSource | None:
    """The dataset's suite file: a declared one wins over an inferred one."""
    for origin, folder in (("declared", declared_dir), ("inferred", inferred_dir)):
        path = folder / f"{dataset_name}.json"
        if path.exists():
            return SuiteSource(str(path), origin)
    return None


def is_current(suite: dict[str, Any]) -> bool:
    """Whether an inferred suite has the contract/profile split (older ones are re-inferred)."""
    return suite.get("meta", {}).get("mlcicd", {}).get("format") == SUITE_FORMAT


def infer_suite(
    df: pd.DataFrame, name: str, target: str, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Infer a contract and a profile from a reference batch (GX 1.x has no profiler).

    With ``previous`` (the suite this batch passed), the contract never loosens through what it
    tolerated: null bounds stay at least as strict, the known categories stay the previous ones
    (a new category is a contract change: declare it), and the plausible range is taken between
    the 0.2nd and 99.8th percentiles, past the 0.1 % of implausible values a batch may carry.
    """
    import pandas as pd

    before = _contract_kwargs(previous)

    n = len(df)
    columns = [str(c) for c in df.columns]
    exp: list[dict[str, Any]] = [
        _e(CONTRACT, "expect_table_columns_to_match_set", column_set=columns, exact_match=True),
        _e(CONTRACT, "expect_compound_columns_to_be_unique", column_list=columns,
           mostly=round(1 - MAX_DUPLICATE_FRACTION, 4)),
        _e(PROFILE, "expect_table_row_count_to_be_between",
           min_value=max(1, n // ROW_COUNT_FACTOR), max_value=n * ROW_COUNT_FACTOR),
    ]  # fmt: skip
    for col in df.columns:
        s, column = df[col], str(col)
        null_rate = float(s.isna().mean())
        hard_nulls = _mostly(min(1.0, max(2 * null_rate, null_rate + NULL_SLACK)))
        was = before.get(("expect_column_values_to_not_be_null", column), {}).get("mostly")
        exp.append(_e(CONTRACT, "expect_column_values_to_not_be_null", column=column,
                      mostly=max(hard_nulls, was) if was is not None else hard_nulls))  # fmt: skip
        exp.append(_e(PROFILE, "expect_column_values_to_not_be_null", column=column,
                      mostly=_mostly(min(1.0, null_rate * 1.5 + 0.01))))  # fmt: skip
        if pd.api.types.is_bool_dtype(s) or column == target:
            exp.append(_e(CONTRACT, "expect_column_values_to_be_in_set", column=column, value_set=_values(s)))
        elif pd.api.types.is_numeric_dtype(s):
            exp += _numeric(s.dropna().astype(float), column)
        else:
            exp.append(_e(CONTRACT, "expect_column_values_to_be_of_type", column=column, type_=str(s.dtype)))
            known = before.get(("expect_column_values_to_be_in_set", column), {}).get("value_set")
            if known is not None or s.nunique() <= MAX_CATEGORIES:
                exp += _categorical(s.dropna().astype(str), column, known)
    return {
        "name": name,
        "expectations": exp,
        "meta": {"mlcicd": {"format": SUITE_FORMAT, "inferred_from_rows": n, "target": target}},
    }


def _numeric(s: pd.Series, column: str) -> list[dict[str, Any]]:
    exp = [_e(CONTRACT, "expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES)]
    if s.empty:
        return exp
    lo, hi = float(s.quantile(0.002)), float(s.quantile(0.998))  # past what a batch may carry (0.1 %)
    span = (hi - lo) or abs(hi) or 1.0
    exp.append(_e(CONTRACT, "expect_column_values_to_be_between", column=column,
                  min_value=_round(0.0 if lo >= 0 else lo - PLAUSIBLE_RANGES * span),
                  max_value=_round(hi + PLAUSIBLE_RANGES * span), mostly=1 - MAX_IMPLAUSIBLE))  # fmt: skip
    lo, hi = float(s.min()), float(s.max())
    span = (hi - lo) or abs(hi) or 1.0
    margin = span * RANGE_MARGIN
    mean, sd = float(s.mean()), float(s.std(ddof=0)) or margin
    return [
        *exp,
        _e(PROFILE, "expect_column_values_to_be_between", column=column,
           min_value=_round(max(0.0, lo - margin) if lo >= 0 else lo - margin), max_value=_round(hi + margin),
           mostly=PROFILE_MOSTLY),
        _e(PROFILE, "expect_column_mean_to_be_between", column=column,
           min_value=_round(mean - MEAN_SHIFT_SD * sd), max_value=_round(mean + MEAN_SHIFT_SD * sd)),
    ]  # fmt: skip


def _categorical(s: pd.Series, column: str, known: list[str] | None = None) -> list[dict[str, Any]]:
    if known is not None:
        s = s[s.isin(known)]
    shares = s.value_counts(normalize=True).sort_index()
    values = sorted(known) if known is not None else [str(v) for v in shares.index]
    shares = shares.reindex(values, fill_value=0.0)
    return [
        _e(CONTRACT, "expect_column_values_to_be_in_set", column=column, value_set=values,
           mostly=1 - MAX_UNSEEN_CATEGORIES),
        _e(PROFILE, "expect_column_values_to_be_in_set", column=column, value_set=values),
        _e(PROFILE, "expect_column_kl_divergence_to_be_less_than", column=column,
           partition_object={"values": values, "weights": [round(float(w), 6) for w in shares.to_numpy()]},
           threshold=MAX_SHARE_KL),
    ]  # fmt: skip


def _contract_kwargs(suite: dict[str, Any] | None) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {
        _domain(e): e["kwargs"]
        for e in (suite or {}).get("expectations", [])
        if e.get("severity") == CONTRACT
    }


def compose(declared: dict[str, Any] | None, reference: dict[str, Any]) -> dict[str, Any]:
    """The suite a batch is held to: the declared expectations (hard unless marked) or the
    reference's contract, plus the reference's profile."""
    if declared is None:
        return reference
    # GX keeps one expectation per type and column in a suite: a declared warning wins over the profile's.
    taken = {_domain(e) for e in declared["expectations"] if e.get("severity", CONTRACT) != CONTRACT}
    profile = [
        e for e in reference["expectations"] if e.get("severity") == PROFILE and _domain(e) not in taken
    ]
    return {**declared, "expectations": [*declared["expectations"], *profile]}


def _domain(e: dict[str, Any]) -> tuple[str, str | None]:
    return e["type"], e["kwargs"].get("column")


def save_suite(suite: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(suite, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def validate(df: pd.DataFrame, suite: dict[str, Any], *, run_name: str, docs_dir: Path) -> Checked:
    """Run ``suite`` on ``df`` and build its GX Data Docs pages.

    The contract (severity ``critical``, GX's default) and the profile (any other severity) run as
    two GX suites, ``<name>`` and ``<name>.profile`` (GX keeps one expectation per type and column in
    a suite): two pages, ``report_path`` is the contract's. The contract sees every row (types, nulls,
    implausible values, unseen categories, duplicates); above ``PROFILE_SAMPLE_ROWS`` the profile's
    statistics (ranges, means, shares) are checked on a sample, its row count on the whole batch.
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
    batch_def = (
        context.data_sources.add_pandas("mlcicd")
        .add_dataframe_asset(suite["name"])
        .add_batch_definition_whole_dataframe("batch")
    )
    sample = df if len(df) <= PROFILE_SAMPLE_ROWS else df.sample(n=PROFILE_SAMPLE_ROWS, random_state=0)
    whole = [e for e in suite["expectations"] if e.get("severity", CONTRACT) == CONTRACT
             or (sample is not df and e["type"] == "expect_table_row_count_to_be_between")]  # fmt: skip
    parts = {suite["name"]: (whole, df),
             profile_name(suite["name"]): ([e for e in suite["expectations"] if e not in whole], sample)}  # fmt: skip
    checked = []
    for name, (expectations, frame) in parts.items():
        gx_suite = gx.ExpectationSuite(name=name, meta=suite.get("meta", {}))
        for e in expectations:
            gx_suite.add_expectation_configuration(
                ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=e.get("meta", {}),
                                         severity=e.get("severity", CONTRACT))
            )  # fmt: skip
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{name}_check", data=batch_def, suite=context.suites.add(gx_suite))
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_checkpoint",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[site])],
                result_format={"result_format": "SUMMARY"},
            )
        )
        result = checkpoint.run(
            batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name)
        )
        checked.extend(result.run_results.values())
    failures: list[str] = []
    shift: list[str] = []
    evaluated = 0
    for vresult in checked:
        evaluated += len(vresult.results)
        for r in vresult.results:
            severity = getattr(r.expectation_config.severity, "value", CONTRACT)
            if not r.success:
                (failures if severity == CONTRACT else shift).append(_describe(r))
            elif severity == CONTRACT and (r.result or {}).get("unexpected_count"):  # within its bound
                shift.append(_describe(r, within=True))
    return Checked(evaluated, failures, shift, _report_path(docs_dir, suite["name"], run_name),
                   _report_path(docs_dir, profile_name(suite["name"]), run_name))  # fmt: skip


def profile_name(suite_name: str) -> str:
    return f"{suite_name}.profile"


def _report_path(docs_dir: Path, suite_name: str, run_name: str) -> str | None:
    folder = docs_dir / "validations" / Path(*suite_name.split(".")) / run_name  # GX nests on dots
    pages = sorted(folder.rglob("*.html"), key=lambda p: p.stat().st_mtime)
    return str(pages[-1]) if pages else None


def _describe(r: Any, within: bool = False) -> str:
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
    elif res.get("observed_value") is not None:
        observed.append(f"observed {_bound(res['observed_value'])}")
    if res.get("unexpected_percent") is not None:
        observed.append(f"{res['unexpected_percent']:.3g}% unexpected")
    if res.get("partial_unexpected_list"):  # the values stay out of logs, XCom and CI
        observed.append("the values are in the Data Docs report")
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed.append(f"could not be evaluated: {str(r.exception_info.get('exception_message'))[:160]}")
    expected = ", ".join(f"{k}={_bound(v)}" for k, v in kwargs.items())
    verdict = "held, within its bound" if within else "failed"
    return f"{where}{cfg.type} {verdict} ({expected}); " + "; ".join(observed)


def _bound(value: Any, limit: int = 120) -> str:
    """A value for a message, shortened; a list only by its length (its values are a batch's content)."""
    if isinstance(value, (list, tuple, set)):
        return f"[{len(value)} values]"
    text = "{...}" if isinstance(value, dict) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _e(severity: str, expectation_type: str, /, **kwargs: Any) -> dict[str, Any]:
    return {"type": expectation_type, "kwargs": kwargs, "severity": severity}


def _mostly(bad_share: float) -> float:
    return max(0.0, round(1 - bad_share, 4))


def _values(s: pd.Series) -> list[Any]:
    return sorted(v.item() if hasattr(v, "item") else v for v in s.dropna().unique())


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x
