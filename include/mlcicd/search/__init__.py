"""Candidate search: the ``search`` param's spaces, the candidates they give, and the choice among them.

A space names, per estimator family, the number of candidates and, per hyperparameter, a list of
values or a distribution (``{"uniform": [lo, hi]}``, ``{"loguniform": [lo, hi]}``, ``{"randint":
[lo, hi]}``, bounds included). Candidates are drawn with scikit-learn's ``ParameterSampler``
seeded by the run's ``random_seed``: a rerun gets the same candidates. Pure functions; scikit-learn,
scipy and matplotlib are imported inside them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlcicd.choices import DISTRIBUTIONS, ESTIMATORS, PROJECT_FAMILY, SEARCH_PRESETS
from mlcicd.errors import ConfigError, TrainingFailed

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from mlcicd.project import Project

# What each family's candidates may vary (the TrainParams fields its estimator reads).
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "logistic_regression": ("regularization_c",),
    "random_forest": ("n_estimators", "max_depth"),
    "hist_gradient_boosting": ("n_estimators", "max_depth", "learning_rate"),
}
# Each hyperparameter's type and bounds, as the trigger form's (max_depth also takes null: no limit).
BOUNDS: dict[str, tuple[type, float, float]] = {
    "n_estimators": (int, 1, 5000),
    "max_depth": (int, 1, 100),
    "learning_rate": (float, 0.0, 1.0),
    "regularization_c": (float, 0.0, 1e6),
}
LOG_SCALE = ("learning_rate", "regularization_c")  # plotted on a log axis
# Ties on the validation metric (to 4 decimals) go to the simpler family, then the faster fit.
SIMPLICITY = {"logistic_regression": 0, "hist_gradient_boosting": 1, "random_forest": 2}
VALIDATION_SHARE = 0.2  # of the training part: the candidates' validation split

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {  # 6 candidates, two per family
        "logistic_regression": {"candidates": 2, "space": {"regularization_c": {"loguniform": [0.01, 10]}}},
        "random_forest": {
            "candidates": 2,
            "space": {"n_estimators": {"randint": [50, 200]}, "max_depth": [6, 10, None]},
        },
        "hist_gradient_boosting": {
            "candidates": 2,
            "space": {
                "n_estimators": {"randint": [50, 200]},
                "max_depth": {"randint": [2, 5]},
                "learning_rate": {"loguniform": [0.03, 0.3]},
            },
        },
    },
    "wide": {  # 30 candidates
        "logistic_regression": {"candidates": 6, "space": {"regularization_c": {"loguniform": [0.001, 100]}}},
        "random_forest": {
            "candidates": 12,
            "space": {"n_estimators": {"randint": [50, 400]}, "max_depth": [4, 6, 8, 12, 16, None]},
        },
        "hist_gradient_boosting": {
            "candidates": 12,
            "space": {
                "n_estimators": {"randint": [50, 400]},
                "max_depth": {"randint": [2, 8]},
                "learning_rate": {"loguniform": [0.01, 0.5]},
            },
        },
    },
}


@dataclass(frozen=True)
class Candidate:
    index: int
    estimator: str
    params: dict[str, Any]  # the sampled hyperparameters; the rest are the run's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        return f"#{self.index} {self.estimator} " + " ".join(f"{k}={v}" for k, v in self.params.items())


def parse(spec: Any, project: Project | None = None) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the search's name, its space per family) from the ``search`` param; ``("none", {})`` for none.

    A model project's DAG searches one family, ``project`` (its entry point): ``search=project`` is the
    project file's ``[training.search]``, an object gives ``{"project": {...}}`` over the hyperparameters
    the project declares.

    Raises:
        ConfigError: an unknown preset, estimator or hyperparameter, a bad value or distribution,
            or a space that gives no candidate; the message names each problem.
    """
    if project is not None:
        from mlcicd.search.project import parse_project

        return parse_project(spec, project)
    if isinstance(spec, str):
        text = spec.strip()
        if text in SEARCH_PRESETS:
            return text, PRESETS.get(text, {})
        try:
            spec = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                f"search={text[:60]!r} is neither a preset ({', '.join(SEARCH_PRESETS)}) nor a JSON object "
                'of spaces, e.g. {"logistic_regression": {"candidates": 3, "space": {"regularization_c": '
                '{"loguniform": [0.01, 10]}}}}'
            ) from None
    if not isinstance(spec, dict) or not spec:
        raise ConfigError("search must name at least one estimator family: " + ", ".join(ESTIMATORS))
    problems: list[str] = []
    for family, entry in spec.items():
        problems += _family_problems(str(family), entry)
    if problems:
        raise ConfigError("the search space is refused: " + "; ".join(problems))
    return "custom", spec


def _family_problems(family: str, entry: Any) -> list[str]:
    if family not in HYPERPARAMETERS:
        return [f"unknown estimator {family[:40]!r} (choose from {', '.join(ESTIMATORS)})"]
    if not isinstance(entry, dict) or set(entry) - {"candidates", "space"}:
        return [f'{family}: expected {{"candidates": N, "space": {{...}}}}, got {json.dumps(entry)[:80]}']
    n = entry.get("candidates")
    problems = []
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        problems.append(
            f"{family}: candidates must be a positive integer, got {n!r} (a space with no candidates)"
        )
    space = entry.get("space", {})
    if not isinstance(space, dict):
        return [*problems, f"{family}: space must be an object of hyperparameters"]
    for name, values in space.items():
        if name not in HYPERPARAMETERS[family]:
            problems.append(
                f"{family}: unknown hyperparameter {str(name)[:40]!r} "
                f"(it may vary {', '.join(HYPERPARAMETERS[family])})"
            )
            continue
        problems += [f"{family}.{name}: {p}" for p in _value_problems(name, values)]
    return problems


def _value_problems(name: str, values: Any) -> list[str]:
    kind, low, high = BOUNDS[name]

    def bad(v: Any) -> bool:
        if v is None:
            return name != "max_depth"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            return True
        return not (low <= v <= high and (kind is int or v > low))

    rule = f"{kind.__name__} in {'(' if kind is float else '['}{low:g}, {high:g}]"
    if isinstance(values, list):
        if not values:
            return ["an empty list of values (a space with no candidates)"]
        wrong = [v for v in values if bad(v)]
        return [f"{json.dumps(wrong)[:80]} not a valid value ({rule})"] if wrong else []
    if not isinstance(values, dict) or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
        return [f"expected a list of values or one of {{{', '.join(DISTRIBUTIONS)}: [low, high]}}"]
    ((dist, bounds),) = values.items()
    if dist == "randint" and kind is float or dist != "randint" and kind is int:
        return [f"{dist} does not fit a {kind.__name__} hyperparameter"]
    if not (isinstance(bounds, list) and len(bounds) == 2) or any(b is None or bad(b) for b in bounds):
        return [f"{dist} needs [low, high] with each {rule}"]
    if bounds[0] > bounds[1] or (dist != "randint" and bounds[0] == bounds[1]):
        return [f"{dist} bounds {bounds} are empty: low must be below high"]
    return []


def _distribution(name: str, values: Any) -> Any:
    from scipy import stats

    if isinstance(values, list):
        return values
    ((dist, (low, high)),) = values.items()
    if dist == "randint":
        return stats.randint(low, high + 1)
    if dist == "loguniform":
        return stats.loguniform(low, high)
    return stats.uniform(low, high - low)


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers; floats to 4 significant digits (readable, and still seeded)."""
    if value is None or isinstance(value, str):
        return value
    if float(value).is_integer() and not isinstance(value, float):
        return int(value)
    return float(f"{float(value):.4g}")


def candidates(
    spec: Any, seed: int, max_candidates: int, project: Project | None = None
) -> tuple[str, list[Candidate]]:
    """The search's name and its candidates, the same for the same ``spec`` and ``seed``.

    Duplicates (a draw of discrete values can repeat) are dropped.

    Raises:
        ConfigError: a bad spec (see :func:`parse`), or more candidates than ``max_candidates``.
    """
    import warnings

    from sklearn.model_selection import ParameterSampler

    name, spaces = parse(spec, project)
    out: list[Candidate] = []
    for k, family in enumerate(f for f in (*ESTIMATORS, PROJECT_FAMILY) if f in spaces):
        entry = spaces[family]
        dists = {hp: _distribution(hp, v) for hp, v in sorted(entry.get("space", {}).items())}
        seen: set[str] = set()
        with warnings.catch_warnings():  # a grid smaller than the count asked: the whole grid, said below
            warnings.simplefilter("ignore", UserWarning)
            draws = list(ParameterSampler(dists, n_iter=int(entry["candidates"]), random_state=seed + k))
        for draw in draws:
            params = {hp: _plain(v) for hp, v in sorted(draw.items())}
            key = json.dumps(params, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(Candidate(index=len(out), estimator=family, params=params))
    if len(out) > max_candidates:
        raise ConfigError(
            f"search {name!r} gives {len(out)} candidates, above search_max_candidates={max_candidates}: "
            "ask for fewer candidates, or raise search_max_candidates (up to MLCICD_SEARCH_MAX_CANDIDATES)"
        )
    return name, out


def choose(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best candidate by validation metric; ties (to 4 decimals) to the simpler family, then the
    faster fit, then the lower index.

    Raises:
        TrainingFailed: every candidate failed; the message lists each one's error.
    """
    ok = [r for r in results if r.get("error") is None]
    if not ok:
        errors = "\n".join(f"  - #{r['index']} {r['estimator']} {r['params']}: {r['error']}" for r in results)
        raise TrainingFailed(f"all {len(results)} candidate(s) of the search failed:\n{errors}")
    return min(
        ok,
        key=lambda r: (
            -round(r["validation_metric"], 4),
            SIMPLICITY.get(r["estimator"], 0),
            r["fit_seconds"],
            r["index"],
        ),
    )


def table(results: Iterable[dict[str, Any]], chosen: int | None) -> list[dict[str, Any]]:
    """One row per candidate, in index order: what the summaries and the MLflow table show."""
    return [
        {
            "index": r["index"],
            "estimator": r["estimator"],
            "params": json.dumps(r["params"], sort_keys=True),
            "validation_metric": None if r.get("error") else round(r["validation_metric"], 4),
            "fit_seconds": r.get("fit_seconds"),
            "chosen": r["index"] == chosen,
            "error": r.get("error"),
            "mlflow_run_id": r.get("mlflow_run_id"),
        }
        for r in sorted(results, key=lambda r: r["index"])
    ]


def plot(results: Sequence[dict[str, Any]], metric: str, chosen: int | None) -> Any:
    """The validation metric against each hyperparameter the candidates varied, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    families = (*ESTIMATORS, PROJECT_FAMILY)
    colors = dict(zip(families, ("tab:blue", "tab:orange", "tab:green", "tab:purple"), strict=True))
    ok = [r for r in results if r.get("error") is None]
    names = [*BOUNDS, *sorted({hp for r in ok for hp in r["params"]} - set(BOUNDS))]  # a project's own too
    varied = [hp for hp in names if any(r["params"].get(hp) is not None for r in ok)] or ["(none)"]
    fig, axes = plt.subplots(1, len(varied), figsize=(3.6 * len(varied), 3.6), squeeze=False, sharey=True)
    for ax, hp in zip(axes[0], varied, strict=True):
        pts = [r for r in ok if r["params"].get(hp) is not None]
        ax.scatter(
            [r["params"][hp] for r in pts],
            [r["validation_metric"] for r in pts],
            alpha=0.8,
            c=[colors[r["estimator"]] for r in pts],
        )
        best = [r for r in pts if r["index"] == chosen]
        if best:
            ax.scatter(
                [best[0]["params"][hp]],
                [best[0]["validation_metric"]],
                marker="*",
                s=300,
                facecolors="none",
                edgecolors="black",
                linewidths=1.5,
            )
        values = [r["params"][hp] for r in pts]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        wide = (
            len(numbers) == len(values) and min(numbers, default=0) > 0 and max(numbers) >= 100 * min(numbers)
        )
        if hp in LOG_SCALE or wide:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(0.15)
        ax.set_xlabel(hp)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"validation {metric}")
    handles = [
        Line2D([], [], marker="o", ls="", color=colors[f], label=f)
        for f in families
        if any(r["estimator"] == f for r in ok)
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="*",
            ls="",
            markersize=14,
            markerfacecolor="none",
            markeredgecolor="black",
            label="chosen",
        )
    )
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=len(handles))
    fig.suptitle("Candidates: validation metric against each hyperparameter", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def chosen_candidate(selected: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the chosen candidate, the parent run to train it into), or (None, None) for search=none."""
    if not selected or not selected.get("chosen"):
        return None, None
    return selected["chosen"], selected["parent_run_id"]
