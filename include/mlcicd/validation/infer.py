"""Inferring a suite from a reference batch: its contract and its profile (GX 1.x has no profiler)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcicd.validation.rules import (
    CONTRACT,
    MAX_CATEGORIES,
    MAX_DUPLICATE_FRACTION,
    MAX_IMPLAUSIBLE,
    MAX_SHARE_KL,
    MAX_UNSEEN_CATEGORIES,
    MEAN_SHIFT_SD,
    NULL_SLACK,
    NUMERIC_TYPES,
    PLAUSIBLE_RANGES,
    PROFILE,
    PROFILE_MOSTLY,
    RANGE_MARGIN,
    ROW_COUNT_FACTOR,
    SUITE_FORMAT,
    domain,
    expectation,
    mostly_of,
    observed_values,
    rounded,
)

if TYPE_CHECKING:
    import pandas as pd


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

    before = contract_kwargs(previous)

    n = len(df)
    columns = [str(c) for c in df.columns]
    exp: list[dict[str, Any]] = [
        expectation(CONTRACT, "expect_table_columns_to_match_set", column_set=columns, exact_match=True),
        expectation(
            CONTRACT,
            "expect_compound_columns_to_be_unique",
            column_list=columns,
            mostly=round(1 - MAX_DUPLICATE_FRACTION, 4),
        ),
        expectation(
            PROFILE,
            "expect_table_row_count_to_be_between",
            min_value=max(1, n // ROW_COUNT_FACTOR),
            max_value=n * ROW_COUNT_FACTOR,
        ),
    ]
    for col in df.columns:
        s, column = df[col], str(col)
        null_rate = float(s.isna().mean())
        # A column never missing in the reference may not gain missing values (a declared suite may allow them).
        hard_nulls = (
            1.0 if null_rate == 0 else mostly_of(min(1.0, max(2 * null_rate, null_rate + NULL_SLACK)))
        )
        was = before.get(("expect_column_values_to_not_be_null", column), {}).get("mostly")
        exp.append(
            expectation(
                CONTRACT,
                "expect_column_values_to_not_be_null",
                column=column,
                mostly=max(hard_nulls, was) if was is not None else hard_nulls,
            )
        )
        exp.append(
            expectation(
                PROFILE,
                "expect_column_values_to_not_be_null",
                column=column,
                mostly=mostly_of(min(1.0, null_rate * 1.5 + 0.01)),
            )
        )
        if pd.api.types.is_bool_dtype(s) or column == target:
            exp.append(
                expectation(
                    CONTRACT, "expect_column_values_to_be_in_set", column=column, value_set=observed_values(s)
                )
            )
        elif pd.api.types.is_numeric_dtype(s):
            exp += _numeric(s.dropna().astype(float), column)
        else:
            exp.append(
                expectation(CONTRACT, "expect_column_values_to_be_of_type", column=column, type_=str(s.dtype))
            )
            known = before.get(("expect_column_values_to_be_in_set", column), {}).get("value_set")
            if known is not None or s.nunique() <= MAX_CATEGORIES:
                exp += _categorical(s.dropna().astype(str), column, known)
    return {
        "name": name,
        "expectations": exp,
        "meta": {"mlcicd": {"format": SUITE_FORMAT, "inferred_from_rows": n, "target": target}},
    }


def _numeric(s: pd.Series, column: str) -> list[dict[str, Any]]:
    exp = [
        expectation(
            CONTRACT, "expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES
        )
    ]
    if s.empty:
        return exp
    lo, hi = float(s.quantile(0.002)), float(s.quantile(0.998))  # past what a batch may carry (0.1 %)
    span = (hi - lo) or abs(hi) or 1.0
    exp.append(
        expectation(
            CONTRACT,
            "expect_column_values_to_be_between",
            column=column,
            min_value=rounded(0.0 if lo >= 0 else lo - PLAUSIBLE_RANGES * span),
            max_value=rounded(hi + PLAUSIBLE_RANGES * span),
            mostly=1 - MAX_IMPLAUSIBLE,
        )
    )
    lo, hi = float(s.min()), float(s.max())
    span = (hi - lo) or abs(hi) or 1.0
    margin = span * RANGE_MARGIN
    mean, sd = float(s.mean()), float(s.std(ddof=0)) or margin
    return [
        *exp,
        expectation(
            PROFILE,
            "expect_column_values_to_be_between",
            column=column,
            min_value=rounded(max(0.0, lo - margin) if lo >= 0 else lo - margin),
            max_value=rounded(hi + margin),
            mostly=PROFILE_MOSTLY,
        ),
        expectation(
            PROFILE,
            "expect_column_mean_to_be_between",
            column=column,
            min_value=rounded(mean - MEAN_SHIFT_SD * sd),
            max_value=rounded(mean + MEAN_SHIFT_SD * sd),
        ),
    ]


def _categorical(s: pd.Series, column: str, known: list[str] | None = None) -> list[dict[str, Any]]:
    if known is not None:
        s = s[s.isin(known)]
    shares = s.value_counts(normalize=True).sort_index()
    values = sorted(known) if known is not None else [str(v) for v in shares.index]
    shares = shares.reindex(values, fill_value=0.0)
    return [
        expectation(
            CONTRACT,
            "expect_column_values_to_be_in_set",
            column=column,
            value_set=values,
            mostly=1 - MAX_UNSEEN_CATEGORIES,
        ),
        expectation(PROFILE, "expect_column_values_to_be_in_set", column=column, value_set=values),
        expectation(
            PROFILE,
            "expect_column_kl_divergence_to_be_less_than",
            column=column,
            partition_object={"values": values, "weights": [round(float(w), 6) for w in shares.to_numpy()]},
            threshold=MAX_SHARE_KL,
        ),
    ]


def contract_kwargs(suite: dict[str, Any] | None) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {
        domain(e): e["kwargs"] for e in (suite or {}).get("expectations", []) if e.get("severity") == CONTRACT
    }
