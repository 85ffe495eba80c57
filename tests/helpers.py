"""Small helpers the tests share: a model directory as the targets prepare it, waiting on a URL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests


def make_model_dir(root: Path, rows: int, seed: int, version: str = "7") -> tuple[Any, Any]:
    """Fit a small model and save it as deploy targets prepare it (MLflow model + release.json).

    Returns the fitted model and its features, to compare served predictions with offline ones.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlcicd import synthetic, training

    df = synthetic.generate(rows, seed)
    x, y = df.drop(columns="churned"), df.churned
    model = training.build_pipeline(x, training.TrainParams(estimator="logistic_regression")).fit(x, y)
    mlflow.sklearn.save_model(
        model, str(root / "model"), signature=infer_signature(x.head(), model.predict(x.head())),
        skops_trusted_types=training.trusted_types(model), pip_requirements=training.pip_requirements(),
    )  # fmt: skip
    (root / "release.json").write_text(json.dumps({"model_name": "m", "version": version}))
    return model, x


def wait_for(url: str, timeout_s: float = 60) -> None:
    """Wait until GET ``url`` answers 2xx; fail the test with the URL if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s:.0f} s")
