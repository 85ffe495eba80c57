"""The strict schema of a data-contract suite: what may reach Great Expectations.

A suite is data, but some of GX's kwargs are code: a ``row_condition`` parsed by ``pandas`` runs
through ``DataFrame.query``, which can call any function. So every suite is checked against an
allow-list before GX sees it. Suites read back from MLflow or the state folder (inferred by mlcicd)
may hold only what :func:`mlcicd.validation.infer_suite` writes; suites declared in the repository
(``include/suites/``) may also use the other types below and row conditions, since the repository's
code runs anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from mlcicd.errors import UntrustedArtifact

Check = Callable[[Any], bool]


def _number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return not math.isnan(v) if isinstance(v, float) else abs(v) <= 10**308  # a float's range


def _bound(v: Any) -> bool:  # a between's bound: a number, or None for an open side
    return v is None or _number(v)


def _share(v: Any) -> bool:
    return _number(v) and 0.0 <= v <= 1.0


def _text(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 1000


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(_text(x) for x in v)


def _scalars(v: Any) -> bool:
    return isinstance(v, list) and all(x is None or isinstance(x, bool) or _number(x) or _text(x) for x in v)


def _partition(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"values", "weights"}
        and _scalars(v["values"])
        and isinstance(v["weights"], list)
        and all(_share(w) for w in v["weights"])
    )


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


KWARGS: dict[str, Check] = {
    "column": _text, "column_set": _texts, "column_list": _texts, "exact_match": _flag, "mostly": _share,
    "min_value": _bound, "max_value": _bound, "strict_min": _flag, "strict_max": _flag,
    "value_set": _scalars, "type_": _text, "type_list": _texts, "threshold": _number,
    "partition_object": _partition, "regex": _text, "ignore_row_if": _text,
}  # fmt: skip
# What infer_suite writes: the only types a suite read back from MLflow or the state folder may hold.
INFERRED = {
    "expect_table_columns_to_match_set": {"column_set", "exact_match"},
    "expect_compound_columns_to_be_unique": {"column_list", "mostly"},
    "expect_table_row_count_to_be_between": {"min_value", "max_value"},
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_be_in_type_list": {"column", "type_list", "mostly"},
    "expect_column_values_to_be_of_type": {"column", "type_", "mostly"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max", "mostly"},
    "expect_column_mean_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_kl_divergence_to_be_less_than": {"column", "partition_object", "threshold"},
}  # fmt: skip
_STAT = {"column", "min_value", "max_value", "strict_min", "strict_max"}
DECLARED_ONLY = {
    "expect_table_column_count_to_equal": {"value"},
    "expect_column_to_exist": {"column"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
    "expect_column_values_to_be_null": {"column", "mostly"},
    "expect_column_values_to_not_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_match_regex": {"column", "regex", "mostly"},
    "expect_column_values_to_not_match_regex": {"column", "regex", "mostly"},
    "expect_column_value_lengths_to_be_between": {"column", "min_value", "max_value", "mostly"},
    "expect_column_min_to_be_between": _STAT,
    "expect_column_max_to_be_between": _STAT,
    "expect_column_median_to_be_between": _STAT,
    "expect_column_stdev_to_be_between": _STAT,
    "expect_column_unique_value_count_to_be_between": _STAT,
    "expect_column_proportion_of_unique_values_to_be_between": _STAT,
    "expect_column_pair_values_a_to_be_greater_than_b": {"column_A", "column_B", "or_equal", "mostly", "ignore_row_if"},
    "expect_table_row_count_to_equal": {"value"},
}  # fmt: skip
KWARGS.update({"value": _number, "column_A": _text, "column_B": _text, "or_equal": _flag})
CONDITIONS: dict[str, Check] = {
    "row_condition": _text,
    "condition_parser": lambda v: v in ("great_expectations", "pandas"),
}
SEVERITIES = ("critical", "warning", "info")
SUITE_KEYS = {"name", "expectations", "meta", "id", "notes"}
EXPECTATION_KEYS = {"type", "kwargs", "severity", "meta", "id", "notes", "description"}
MAX_EXPECTATIONS = 10_000


def check_suite(suite: Any, *, origin: str, declared: bool = False) -> dict[str, Any]:
    """Return ``suite`` when it holds only allowed expectation types and kwargs, else raise.

    Args:
        origin: where the suite comes from, for the message (a path or a ``runs:/`` URI).
        declared: a suite from the repository (more types, and row conditions).

    Raises:
        UntrustedArtifact: the first thing outside the schema, by its place in the suite.
    """
    where = f"the suite {origin}"
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise UntrustedArtifact(f"{where} is not a suite (an object with a list of 'expectations')")
    _only(suite, SUITE_KEYS, where)
    if not _text(suite.get("name")) or not suite["name"]:
        raise UntrustedArtifact(f"{where}: 'name' must be a non-empty text")
    if not isinstance(suite.get("meta", {}), dict):
        raise UntrustedArtifact(f"{where}: 'meta' must be an object")
    if len(suite["expectations"]) > MAX_EXPECTATIONS:
        raise UntrustedArtifact(f"{where} has more than {MAX_EXPECTATIONS} expectations")
    allowed = {**INFERRED, **DECLARED_ONLY} if declared else INFERRED
    for i, e in enumerate(suite["expectations"]):
        at = f"{where}, expectation {i}"
        if not isinstance(e, dict) or not isinstance(e.get("kwargs"), dict):
            raise UntrustedArtifact(f"{at}: an expectation is an object with 'type' and 'kwargs'")
        _only(e, EXPECTATION_KEYS, at)
        kind = e.get("type")
        if kind not in allowed:
            hint = " (allowed only in a suite declared in include/suites/)" if kind in DECLARED_ONLY else ""
            raise UntrustedArtifact(f"{at}: the expectation type {kind!r} is not allowed{hint}")
        if e.get("severity", "critical") not in SEVERITIES:
            raise UntrustedArtifact(f"{at}: severity must be one of {', '.join(SEVERITIES)}")
        if not isinstance(e.get("meta", {}), dict):
            raise UntrustedArtifact(f"{at}: 'meta' must be an object")
        for key, value in e["kwargs"].items():
            check = KWARGS.get(key) if key in allowed[kind] else CONDITIONS.get(key) if declared else None
            if check is None:
                why = (
                    "row conditions only in a suite declared in include/suites/"
                    if key in CONDITIONS
                    else (f"{kind} takes {', '.join(sorted(allowed[kind]))}")
                )
                raise UntrustedArtifact(f"{at}: the kwarg {key!r} is not allowed ({why})")
            if not check(value):
                raise UntrustedArtifact(f"{at}: the kwarg {key!r} has a value of the wrong kind")
    return suite


def _only(obj: dict[str, Any], keys: set[str], where: str) -> None:
    extra = sorted(str(k) for k in set(obj) - keys)
    if extra:
        raise UntrustedArtifact(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")
