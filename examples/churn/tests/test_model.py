"""The team's own unit test: `python -m mlcicd check examples/churn` runs it."""

from types import SimpleNamespace

import pandas as pd

from churn_model.model import build


def test_the_pipeline_fits_numbers_and_categories():
    schema = SimpleNamespace(numeric=["tenure"], categorical=["plan"])
    x = pd.DataFrame({"tenure": [1, 5, 30, 48, 2, 60], "plan": ["a", "b", "a", "b", "a", "b"]})
    y = [1, 1, 0, 0, 1, 0]
    model = build({"n_estimators": 10, "max_depth": 2}, schema).fit(x, y)
    assert model.predict_proba(x).shape == (6, 2)
    assert set(model.predict(x)) <= {0, 1}
