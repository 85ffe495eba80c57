"""A deterministic generator of a realistic customer-churn batch (mixed types, binary target).

``synthetic:`` is the pipeline's built-in data source: it needs no download, the same seed gives
the same batch, and knobs inject covariate/concept drift or one of the corruptions that the
validation stage must catch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlcicd.choices import CORRUPTIONS, RETRAIN_DEFAULTS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TARGET = RETRAIN_DEFAULTS["target_column"]
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("card", "bank_transfer", "electronic_check", "mailed_check")
REGIONS = ("north", "south", "east", "west")


def generate(rows: int, seed: int, drift: float = 0.0, corruption: str = "none") -> pd.DataFrame:
    """Generate one batch.

    Args:
        rows: number of rows (at least 50).
        seed: random seed; the pipeline derives it from the run's date unless given.
        drift: 0 for the reference distribution; larger values shift feature distributions
            (customers get newer, pricier, more month-to-month) and the churn relationship.
        corruption: one of :data:`CORRUPTIONS`, applied after generation.
    """
    import numpy as np
    import pandas as pd

    if rows < 50:
        raise ValueError(f"synthetic rows must be at least 50, got {rows}")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}")
    rng = np.random.default_rng(seed)

    contract_p = np.array([0.5, 0.3, 0.2]) + drift * np.array([0.1, -0.05, -0.05])
    contract_p = np.clip(contract_p, 0.02, None)
    # Category codes, not strings: the same draws as choosing the strings (numpy draws the positions
    # either way), without 10 million-element arrays of fixed-width text.
    contract = rng.choice(len(CONTRACTS), size=rows, p=contract_p / contract_p.sum()).astype(np.int8)
    payment = rng.choice(len(PAYMENT_METHODS), size=rows, p=[0.35, 0.25, 0.25, 0.15]).astype(np.int8)
    region = rng.choice(len(REGIONS), size=rows).astype(np.int8)
    tenure = np.clip(rng.gamma(2.0, 14.0 / (1.0 + 0.3 * drift), size=rows), 1, 72).round().astype("int64")
    age = np.clip(rng.normal(45, 14, size=rows), 18, 90).round().astype("int64")
    monthly = np.clip(rng.normal(70 + 12 * drift, 22, size=rows), 15, 150 + 20 * drift).round(2)
    support_calls = rng.poisson(1.2 + 0.4 * drift, size=rows).astype("int64")
    total = (monthly * tenure * rng.uniform(0.9, 1.05, size=rows)).round(2)

    contract_effect = np.array([1.2, -0.3, -1.4])[contract]  # month-to-month, one-year, two-year
    payment_effect = np.where(payment == PAYMENT_METHODS.index("electronic_check"), 0.6, 0.0)
    logit = (
        -1.0
        + contract_effect
        + payment_effect
        - 0.045 * tenure
        + 0.028 * (monthly - 70)
        + (0.45 + 0.2 * drift) * support_calls
        - 0.01 * (age - 45)
        - 0.5 * drift * (region == REGIONS.index("west"))
    )
    churned = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-1.8 * logit))).astype("int64")

    df = pd.DataFrame(
        {
            "customer_age": age,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls,
            "contract": _text(contract, CONTRACTS),
            "payment_method": _text(payment, PAYMENT_METHODS),
            "region": _text(region, REGIONS),
            TARGET: churned,
        }
    )
    return _corrupt(df, corruption, rng)


def _text(codes: np.ndarray, categories: tuple[str, ...]) -> pd.api.extensions.ExtensionArray:
    import pandas as pd

    return pd.Categorical.from_codes(codes, categories=list(categories)).astype("str")


def _corrupt(df: pd.DataFrame, corruption: str, rng) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n = len(df)
    some = rng.choice(n, size=max(1, n // 10), replace=False)
    if corruption == "missing_column":
        return df.drop(columns=["support_calls"])
    if corruption == "wrong_dtype":
        df["monthly_charges"] = pd.array([f"${v:.2f}" for v in df["monthly_charges"]], dtype="str")
    elif corruption == "nulls":
        mask = rng.uniform(size=n) < 0.3
        df.loc[mask, "monthly_charges"] = np.nan
    elif corruption == "out_of_range":
        df.loc[some, "customer_age"] = rng.choice([-4, 190], size=len(some))
    elif corruption == "unseen_category":
        df.loc[some, "contract"] = "weekly"
    elif corruption == "duplicates":
        df = pd.concat([df, df.iloc[: n // 5]], ignore_index=True)
    return df
