from __future__ import annotations

import pandas as pd
import pytest

from mlcicd import synthetic


def test_same_seed_same_batch_and_mixed_types():
    a, b = synthetic.generate(500, 3), synthetic.generate(500, 3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.generate(500, 4))
    kinds = {c: pd.api.types.is_numeric_dtype(a[c]) for c in a.columns}
    assert sum(kinds.values()) >= 4 and sum(not v for v in kinds.values()) >= 3
    assert set(a[synthetic.TARGET].unique()) == {0, 1}


def test_drift_moves_the_distribution():
    ref, drifted = synthetic.generate(4000, 1), synthetic.generate(4000, 1, drift=2.0)
    assert drifted["monthly_charges"].mean() > ref["monthly_charges"].mean() + 15
    assert (drifted["contract"] == "month-to-month").mean() > (ref["contract"] == "month-to-month").mean()


@pytest.mark.parametrize("corruption", [c for c in synthetic.CORRUPTIONS if c != "none"])
def test_each_corruption_changes_the_batch(corruption):
    clean, bad = synthetic.generate(500, 2), synthetic.generate(500, 2, corruption=corruption)
    assert not clean.equals(bad)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least 50"):
        synthetic.generate(10, 1)
    with pytest.raises(ValueError, match="unknown corruption 'typo'"):
        synthetic.generate(100, 1, corruption="typo")
