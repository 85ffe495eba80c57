"""The team's own unit test: `python -m mlcicd check examples/cancer` runs it."""

import pandas as pd

from cancer_model.features import Ratios


def test_ratios_divide_worst_by_mean_and_survive_a_zero_mean():
    x = pd.DataFrame({"mean_area": [2.0, 0.0], "worst_area": [3.0, 1.0], "texture": [1.0, 2.0]})
    out = Ratios().fit(x).transform(x)
    assert out["ratio_area"].tolist() == [1.5, 0.0]
    assert "ratio_texture" not in out
