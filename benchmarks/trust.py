"""What verifying a model costs: the digest of its files, and the verified skops load against
MLflow's own loader (which the project used before), on the default pipeline."""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path


def section(runs: int = 15) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlcicd import synthetic, training
    from mlcicd.serving import modelfile

    df = synthetic.generate(5000, 1)
    x, y = df.drop(columns="churned"), df.churned
    pipeline = training.build_pipeline(x, training.TrainParams()).fit(x, y)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        mlflow.sklearn.save_model(
            pipeline,
            str(folder),
            signature=infer_signature(x.head(), pipeline.predict(x.head())),
            skops_trusted_types=training.trusted_types(pipeline),
        )
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        recorded = modelfile.digest(folder)
        timings: dict[str, list[float]] = {"digest": [], "verified": [], "mlflow": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(runs):  # interleaved, so that the machine's noise falls on all three alike
                for name, call in (
                    ("digest", lambda: modelfile.digest(folder)),
                    ("verified", lambda: modelfile.load(folder, recorded, "bench")),
                    ("mlflow", lambda: mlflow.sklearn.load_model(str(folder))),
                ):
                    t = time.perf_counter()
                    call()
                    timings[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    print(f"\nverified model loading (default pipeline, {size / 1e6:.1f} MB of files, median of {runs})")
    print(f"  digest of the files {med['digest']:.1f} ms")
    print(
        f"  verified load (digest + skops, fixed types) {med['verified']:.1f} ms; "
        f"MLflow's loader {med['mlflow']:.1f} ms: ratio {med['verified'] / med['mlflow']:.2f}"
    )
