"""The search's spaces, candidates and choice (mlcicd.search), and its task-side budget and time-out."""

from __future__ import annotations

import json
import time

import pytest

from mlcicd import search
from mlcicd.errors import ConfigError, TrainingFailed


def test_presets_give_the_same_candidates_for_a_seed_and_others_for_another():
    name, quick = search.candidates("quick", 42, 40)
    assert name == "quick" and len(quick) == 6
    assert {c.estimator for c in quick} == set(search.HYPERPARAMETERS)
    assert [c.to_dict() for c in quick] == [c.to_dict() for c in search.candidates("quick", 42, 40)[1]]
    assert [c.params for c in quick] != [c.params for c in search.candidates("quick", 7, 40)[1]]
    _, wide = search.candidates("wide", 42, 40)
    assert len(wide) == 30 and [c.index for c in wide] == list(range(30))


@pytest.mark.parametrize("preset", ["quick", "wide"])
def test_every_drawn_value_is_within_its_hyperparameters_bounds(preset):
    for c in search.candidates(preset, 3, 40)[1]:
        assert set(c.params) <= set(search.HYPERPARAMETERS[c.estimator])
        for hp, value in c.params.items():
            kind, low, high = search.BOUNDS[hp]
            assert value is None and hp == "max_depth" or (isinstance(value, kind) and low <= value <= high)


def test_none_is_no_candidate_and_a_json_text_is_a_space():
    assert search.candidates("none", 1, 40) == ("none", [])
    text = json.dumps(
        {"logistic_regression": {"candidates": 3, "space": {"regularization_c": [0.1, 1.0, 10.0]}}}
    )
    name, found = search.candidates(text, 1, 40)
    assert name == "custom" and sorted(c.params["regularization_c"] for c in found) == [0.1, 1.0, 10.0]


def test_repeated_draws_are_dropped_and_a_space_with_no_hyperparameters_is_one_candidate():
    small = {"random_forest": {"candidates": 20, "space": {"max_depth": {"randint": [3, 4]}}}}
    found = search.candidates(small, 0, 40)[1]
    assert sorted(c.params["max_depth"] for c in found) == [3, 4]
    assert [c.params for c in search.candidates({"random_forest": {"candidates": 5}}, 0, 40)[1]] == [{}]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"gradient_descent": {"candidates": 2}}, "unknown estimator 'gradient_descent'"),
        (
            {"random_forest": {"candidates": 2, "space": {"learning_rate": [0.1]}}},
            "unknown hyperparameter 'learning_rate'",
        ),
        ({"random_forest": {"candidates": 0}}, "a space with no candidates"),
        ({"random_forest": {"candidates": 2, "space": {"max_depth": []}}}, "a space with no candidates"),
        ({"random_forest": {"candidates": 2, "space": {"n_estimators": [0, 10]}}}, "[0] not a valid value"),
        (
            {"random_forest": {"candidates": 2, "space": {"n_estimators": {"uniform": [1, 9]}}}},
            "does not fit",
        ),
        (
            {
                "hist_gradient_boosting": {
                    "candidates": 2,
                    "space": {"learning_rate": {"loguniform": [0.5, 0.1]}},
                }
            },
            "are empty",
        ),
        ({"logistic_regression": {"candidates": 2, "spaces": {}}}, "expected"),
        ({}, "at least one estimator family"),
        ("fastest", "neither a preset"),
        ("[1, 2]", "at least one estimator family"),
    ],
)
def test_bad_spaces_are_refused_naming_the_problem(spec, says):
    with pytest.raises(ConfigError, match="search") as err:
        search.candidates(spec, 1, 40)
    assert says in str(err.value)


def test_more_candidates_than_the_budget_is_refused():
    with pytest.raises(ConfigError, match="gives 30 candidates, above search_max_candidates=29"):
        search.candidates("wide", 1, 29)


def result(index, estimator, metric, fit=1.0, error=None):
    return {
        "index": index,
        "estimator": estimator,
        "params": {},
        "validation_metric": metric,
        "fit_seconds": fit,
        "error": error,
    }


def test_the_best_validation_metric_wins_and_ties_go_to_the_simpler_then_the_faster():
    assert (
        search.choose([result(0, "random_forest", 0.90), result(1, "logistic_regression", 0.80)])["index"]
        == 0
    )
    tie = [
        result(0, "random_forest", 0.85),
        result(1, "hist_gradient_boosting", 0.85001),
        result(2, "logistic_regression", 0.84999, fit=9.0),
        result(3, "logistic_regression", 0.85, fit=2.0),
    ]
    assert search.choose(tie)["index"] == 3
    failed = result(0, "random_forest", None, error="CandidateTimeout: too slow")
    assert search.choose([failed, result(1, "random_forest", 0.5)])["index"] == 1


def test_when_every_candidate_fails_the_error_lists_each_one():
    failures = [
        result(0, "random_forest", None, error="boom"),
        result(1, "logistic_regression", None, error="bang"),
    ]
    with pytest.raises(TrainingFailed, match="all 2 candidate") as err:
        search.choose(failures)
    assert "#0 random_forest {}: boom" in str(err.value) and "#1 logistic_regression {}: bang" in str(
        err.value
    )


def test_the_table_marks_the_chosen_one_and_the_plot_draws_each_varied_hyperparameter():
    rows = [
        {**result(0, "random_forest", 0.8), "params": {"n_estimators": 50, "max_depth": None}},
        {**result(1, "logistic_regression", 0.9), "params": {"regularization_c": 0.5}},
        {**result(2, "logistic_regression", None, error="x"), "params": {"regularization_c": 5.0}},
    ]
    table = search.table(rows, 1)
    assert [r["chosen"] for r in table] == [False, True, False] and table[2]["validation_metric"] is None
    fig = search.plot(rows, "roc_auc", 1)
    assert [ax.get_xlabel() for ax in fig.axes] == ["n_estimators", "regularization_c"]
    assert fig.axes[1].get_xscale() == "log"


def test_a_budget_above_the_installations_ceiling_is_refused_before_anything_is_read(monkeypatch):
    """Left empty, a budget is the ceiling: lowering the ceiling never breaks runs that do not ask."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlcicd.choices import RETRAIN_DEFAULTS
    from mlcicd.tasks import search as tasks

    monkeypatch.setenv("MLCICD_SEARCH_MAX_CANDIDATES", "10")
    with pytest.raises(AirflowFailException, match=r"search_max_candidates=11 is above .* ceiling of 10"):
        tasks.plan("budget-test", {}, {**RETRAIN_DEFAULTS, "search": "quick", "search_max_candidates": 11})
    monkeypatch.delenv("MLCICD_SEARCH_MAX_CANDIDATES")
    monkeypatch.setenv("MLCICD_SEARCH_TIMEOUT_S", "60")
    with pytest.raises(
        AirflowFailException, match=r"search_timeout_s=61 is above .* \(MLCICD_SEARCH_TIMEOUT_S\)"
    ):
        tasks.plan("budget-test", {}, {**RETRAIN_DEFAULTS, "search": "quick", "search_timeout_s": 61})


def test_the_time_limit_stops_a_python_loop_and_lets_a_quick_block_finish():
    from mlcicd.search.limits import CandidateTimeout, time_limit

    with time_limit(5):
        pass
    started = time.monotonic()
    with pytest.raises(CandidateTimeout, match="search_timeout_s=0.2"), time_limit(0.2):
        while time.monotonic() - started < 10:
            sum(range(1000))
    assert time.monotonic() - started < 5


def test_an_empty_budget_is_the_ceiling(monkeypatch):
    from mlcicd.search.limits import budget
    from mlcicd.settings import load

    monkeypatch.setenv("MLCICD_SEARCH_MAX_CANDIDATES", "7")
    assert budget({"search_max_candidates": None, "search_timeout_s": 30}, load()) == (7, 30)


def test_the_time_limit_fires_even_when_its_first_alarm_lands_in_a_garbage_collector_callback():
    """Python swallows an exception raised in a weakref callback: the alarm must come again.

    The first alarm is made to land in one (a callback that sleeps through it); a one-shot alarm
    then never fires, and the loop below would run its 10 s."""
    import weakref

    from mlcicd.search.limits import CandidateTimeout, time_limit

    class Node:
        pass

    started = time.monotonic()
    with pytest.raises(CandidateTimeout), time_limit(0.1):
        node = Node()
        ref = weakref.ref(node, lambda r: time.sleep(0.4))
        del node  # the callback runs here, and the first alarm with it
        while time.monotonic() - started < 10:
            sum(range(1000))
    assert ref() is None and time.monotonic() - started < 5
    time.sleep(0.5)  # the alarm is off once the block is left: nothing is raised here


def test_a_distribution_with_an_empty_bound_is_refused_by_name_not_a_type_error():
    from mlcicd import search
    from mlcicd.dag.params import check_retrain_conf

    spec = {"random_forest": {"space": {"max_depth": {"randint": [1, None]}}}}
    with pytest.raises(ConfigError, match=r"random_forest\.max_depth: randint needs \[low, high\]"):
        search.parse(spec)
    with pytest.raises(ConfigError, match="the ml_retrain conf is refused: .*randint needs"):
        check_retrain_conf({"search": spec})
