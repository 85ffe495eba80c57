"""One name, one resource: names match in full, and a name whose deployed resources are another
registered model's is refused (issue 28, finding 4)."""

from __future__ import annotations

import pytest

from mlcicd import registry
from mlcicd.client import trigger
from mlcicd.conf import check_names
from mlcicd.errors import ConfigError, TriggerError
from mlcicd.kube import resource_name


@pytest.mark.parametrize("name", ["mlcicd_churn\n", "churn\nbackend evil", "a b", "", ".hidden", None, 7])
def test_a_name_that_is_not_one_in_full_is_refused(name):
    with pytest.raises(ConfigError, match="is not a name: it must match"):
        check_names({"model_name": name})


def test_the_params_schema_alone_lets_a_trailing_newline_by_and_the_trigger_client_does_not():
    import jsonschema

    from mlcicd.choices import NAME_PATTERN

    schema = {"type": "string", "pattern": NAME_PATTERN}
    jsonschema.validate("mlcicd_churn\n", schema)  # why the full match is needed
    with pytest.raises(TriggerError, match="must match .* in full") as refused:
        trigger.validate_conf({"model_name": {"schema": schema}}, {"model_name": "mlcicd_churn\n"})
    assert refused.value.exit_code == 2 and "the ml_retrain conf is refused" in str(refused.value)
    with pytest.raises(TriggerError, match="the team_dag conf is refused: unknown param"):
        trigger.validate_conf({"model_name": {"schema": schema}}, {"typo": 1}, "team_dag")


def test_good_names_pass():
    check_names({"model_name": "mlcicd_churn", "dataset_name": "churn.v2"})
    check_names({"model_name": "Fraud-Model.2", "dataset_name": None})


@pytest.fixture
def store(tmp_path):
    c = registry.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    c.create_registered_model("mlcicd_churn")
    return c


@pytest.mark.parametrize("name", ["MLCICD_CHURN", "mlcicd.churn", "mlcicd-churn", "Mlcicd__Churn"])
def test_a_name_that_folds_onto_a_registered_models_resources_is_refused(store, name):
    assert resource_name(name) == resource_name("mlcicd_churn")
    with pytest.raises(ConfigError) as refused:
        registry.check_distinct(store, name)
    assert "'mlcicd_churn'" in str(refused.value) and "mlcicd-mlcicd-churn" in str(refused.value)


def test_the_registered_name_itself_and_distinct_names_pass(store):
    registry.check_distinct(store, "mlcicd_churn")
    registry.check_distinct(store, "fraud")
