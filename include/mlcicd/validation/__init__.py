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

The plausibility rule (contract), chosen so that every corruption docs/architecture.md lists is refused and
the synthetic source's drift up to its maximum (5) passes: a numeric value is implausible when it
lies more than one reference range (max - min) below the minimum or above the maximum, or is
negative in a column that was never negative; at most 0.1 % of a batch's values may be. Orders of
magnitude (cents for dollars, a unit change), sign errors and sentinel values such as -999 or
99999 fall outside; a shifted distribution does not.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcicd.suite_schema import check_suite
from mlcicd.validation.infer import contract_kwargs, infer_suite
from mlcicd.validation.rules import (
    CONTRACT,
    MAX_IMPLAUSIBLE,
    MAX_UNSEEN_CATEGORIES,
    PROFILE,
    PROFILE_SAMPLE_ROWS,
    SUITE_FORMAT,
    domain,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [  # the package's names, inferred (.infer) or shared bounds (.rules) included
    "CONTRACT", "MAX_IMPLAUSIBLE", "MAX_UNSEEN_CATEGORIES", "PROFILE", "SUITE_FORMAT", "Checked", "SuiteSource",
    "ValidationOutcome", "compose", "find_suite", "infer_suite", "is_current", "profile_name", "save_suite",
    "text_in_numbers", "validate", "contract_kwargs", "domain",
]  # fmt: skip


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


def compose(declared: dict[str, Any] | None, reference: dict[str, Any]) -> dict[str, Any]:
    """The suite a batch is held to: the declared expectations (hard unless marked) or the
    reference's contract, plus the reference's profile."""
    if declared is None:
        return reference
    # GX keeps one expectation per type and column in a suite: a declared warning wins over the profile's.
    taken = {domain(e) for e in declared["expectations"] if e.get("severity", CONTRACT) != CONTRACT}
    profile = [
        e for e in reference["expectations"] if e.get("severity") == PROFILE and domain(e) not in taken
    ]
    return {**declared, "expectations": [*declared["expectations"], *profile]}


def save_suite(suite: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(suite, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def validate(
    df: pd.DataFrame, suite: dict[str, Any], *, run_name: str, docs_dir: Path, declared: bool = False
) -> Checked:
    """Run ``suite`` on ``df`` and build its GX Data Docs pages.

    The suite is first held to :mod:`mlcicd.suite_schema` (``declared``: a suite of the repository,
    which may use row conditions): nothing outside the allow-list reaches GX.

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

    check_suite(
        suite, origin=repr(suite.get("name")) if isinstance(suite, dict) else "given", declared=declared
    )
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
    whole = [
        e
        for e in suite["expectations"]
        if e.get("severity", CONTRACT) == CONTRACT
        or (sample is not df and e["type"] == "expect_table_row_count_to_be_between")
    ]
    parts = {
        suite["name"]: (whole, df),
        profile_name(suite["name"]): ([e for e in suite["expectations"] if e not in whole], sample),
    }
    checked = []
    for name, (expectations, frame) in parts.items():
        gx_suite = gx.ExpectationSuite(name=name, meta=suite.get("meta", {}))
        for e in expectations:
            gx_suite.add_expectation_configuration(
                ExpectationConfiguration(
                    type=e["type"],
                    kwargs=e["kwargs"],
                    meta=e.get("meta", {}),
                    severity=e.get("severity", CONTRACT),
                )
            )
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
    return Checked(
        evaluated,
        failures,
        shift,
        _report_path(docs_dir, suite["name"], run_name),
        _report_path(docs_dir, profile_name(suite["name"]), run_name),
    )


def text_in_numbers(
    text_as_missing: dict[str, dict[str, Any]], suite: dict[str, Any], rows: int
) -> tuple[list[str], list[str]]:
    """Text a CSV held in numeric columns ('n/a', 'null', '-', ...), read as missing values: a contract
    failure in a column the contract allows no missing values in, shift in one that may have them.

    Returns:
        (failures, shift), one message per column.
    """
    required = {
        e["kwargs"].get("column")
        for e in suite.get("expectations", [])
        if e.get("severity", CONTRACT) == CONTRACT
        and e["type"] == "expect_column_values_to_not_be_null"
        and e["kwargs"].get("mostly", 1.0) >= 1.0
    }
    failures, shift = [], []
    for column, seen in sorted(text_as_missing.items()):
        what = ", ".join(repr(m) for m in seen.get("markers", []))
        if seen.get("other_text"):
            what = f"{what}, " if what else ""
            what += f"{seen['other_text']} other text value(s)"
        message = (
            f"column {column!r}: type violation, {seen['count']} value(s) ({100 * seen['count'] / max(rows, 1):.3g}%) "
            f"are text in a column of numbers ({what}) and were read as missing"
        )
        if column in required:
            failures.append(
                f"{message}; the reference never had a missing value here: fix the export, or "
                "declare the column's missing values in a suite in include/suites/"
            )
        else:
            shift.append(message)
    return failures, shift


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
