"""The scan's time on a 5,000-row and a 100,000-row holdout (issue #12, `--only scan`).

One model (the default pipeline, trained on 20,000 synthetic rows), scanned once per holdout size;
above the scan's sample bound (20,000 rows) the slice detectors use a uniform sample, and say so.
Budgets: under 5 s and under 30 s on two cores.
"""

from __future__ import annotations

import time
import warnings

BUDGETS = {5_000: 5.0, 100_000: 30.0}


def section() -> None:
    from mlcicd import scan, synthetic, training

    warnings.simplefilter("ignore")
    train = synthetic.generate(20_000, 1)
    x, y = train.drop(columns="churned"), train.churned
    model = training.build_pipeline(x, training.TrainParams()).fit(x, y)
    print("\nmodel scan (weak slices, fragility, confidence, leakage and determinism, correlation)")
    for rows, budget in BUDGETS.items():
        holdout = synthetic.generate(rows, 2)
        started = time.perf_counter()
        result = scan.scan(model, holdout.drop(columns="churned"), holdout.churned.to_numpy())
        seconds = time.perf_counter() - started
        verdict = "within" if seconds <= budget else "OVER"
        print(
            f"  {rows:>7,} holdout rows: {seconds:5.2f} s (budget {budget:.0f} s: {verdict}); "
            f"{len(result.slices)} slice tests, {len(result.issues)} issue(s), {len(result.major)} MAJOR"
            + (f"; {result.notes[0]}" if result.notes else "")
        )
