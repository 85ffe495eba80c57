"""A retrain request's conf is checked against ml_retrain's Params, on both ends of the hand-off."""

from __future__ import annotations

import pytest

from mlcicd.conf.run import params_from_events
from mlcicd.dag.params import check_retrain_conf, retrain_params
from mlcicd.errors import ConfigError
from mlcicd.tasks.monitor import retrain_conf


def test_a_valid_conf_passes_unchanged_and_leaves_the_params_untouched():
    conf = {"dataset_uri": "synthetic:", "synthetic_drift": 2.5, "model_name": "m"}
    assert check_retrain_conf(conf) == conf
    assert retrain_params()["synthetic_drift"].value == 0.0  # each call makes new Params: defaults stay


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"synthetic_drift": 9}, "synthetic_drift=9 is invalid"),
        ({"min_roc_auc": "high"}, 'min_roc_auc="high" is invalid'),
        ({"model_name": "../etc"}, 'model_name="../etc" is invalid'),
        ({"__class__": 1}, "unknown param(s) __class__"),
        ({"x" * 10_000: 1}, "unknown param(s) " + "x" * 57 + "..."),
        (["dataset_uri"], "must be a JSON object"),
    ],
)
def test_a_bad_conf_is_refused_naming_the_key(conf, message):
    with pytest.raises(ConfigError, match="refused|must be") as err:
        check_retrain_conf(conf)
    assert message in str(err.value) and len(str(err.value)) < 600


def test_the_monitor_checks_its_conf_before_it_emits_and_the_retrain_on_receipt():
    with pytest.raises(ConfigError, match="estimator"):
        retrain_conf({"retrain_conf": {"estimator": "xgboost"}}, "m")
    assert retrain_conf({"retrain_conf": {"synthetic_drift": 1}}, "m") == {
        "synthetic_drift": 1,
        "model_name": "m",
    }
    params = {k: p.value for k, p in retrain_params().items()}
    merged = params_from_events(params, [{"conf": {"synthetic_seed": 4}}, {"conf": {"synthetic_seed": 5}}])
    assert merged["synthetic_seed"] == 5  # the newest request wins
    with pytest.raises(ConfigError, match=r"unknown param\(s\) bash_command"):
        params_from_events(params, [{"conf": {"bash_command": "rm -rf /"}}])
