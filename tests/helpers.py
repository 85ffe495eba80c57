"""Small helpers the tests share: a model directory as the targets prepare it, waiting on a URL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import requests

# For the Airflows the tests start: the model servers their tasks deploy run one process, as in the
# rest of the session (tests/conftest.py says why); devserver drops the caller's MLCICD_* settings.
SERVER_ENV = {"MLCICD_SERVER_WORKERS": "1"}
# The session's own Airflow database and MLflow store (conftest, and any in-process mlflow.set_tracking_uri()):
# a run in a state folder of its own must not inherit them, or which tests share a worker decides where
# it writes (a test's `airflow db migrate` once ran against the session's database, half made).
SESSION_POINTERS = (
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "MLFLOW_TRACKING_URI",
    "MLCICD_TRACKING_URI",
    "MLCICD_REGISTRY_URI",
)


def state_env(state: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a run whose Airflow and MLflow live in ``state``."""
    env = {k: v for k, v in os.environ.items() if k not in SESSION_POINTERS}
    return {**env, "MLCICD_STATE_DIR": str(state), **extra}


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
        model,
        str(root / "model"),
        signature=infer_signature(x.head(), model.predict(x.head())),
        skops_trusted_types=training.trusted_types(model),
        pip_requirements=training.pip_requirements(),
    )
    release = {"model_name": "m", "version": version, "model_digest": bundle_digest(root)}
    (root / "release.json").write_text(json.dumps(release))
    return model, x


def load_registered(name: str, version_or_alias: str, tracking_uri: str) -> Any:
    """A registered version's model, through the verified loader and the digest its version records."""
    from mlcicd import registry
    from mlcicd.serving.modelfile import DIGEST_TAG

    c = registry.client(tracking_uri)
    v = version_or_alias
    mv = c.get_model_version(name, v) if v.isdigit() else c.get_model_version_by_alias(name, v)
    what = f"{name} v{mv.version}"
    return registry.load_verified(f"models:/{name}/{mv.version}", mv.tags.get(DIGEST_TAG), tracking_uri, what)


def bundle_digest(root: Path) -> str:
    """The digest of the model in a bundle folder, as training records it."""
    from mlcicd.serving import modelfile

    return modelfile.digest(root / "model")


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


class Load:
    """Constant load on an endpoint from ``clients`` threads, each with its own keep-alive session.

    Every response is kept as (sent, received, status, model version header or error), so that a
    test can say what each phase of a rollout may answer. ``mark(allowed)`` opens a phase.
    """

    def __init__(
        self, endpoint: str, payload: dict[str, Any], clients: int = 4, pause_s: float = 0.005
    ) -> None:
        import threading

        self.endpoint, self.payload, self.pause_s = endpoint, payload, pause_s
        self.results: list[tuple[float, float, int, str]] = []
        self.phases: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        from mlcicd.serving.auth import auth_headers

        session = requests.Session()
        session.headers.update(auth_headers())  # the servers' token, when the test set one
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                r = session.post(f"{self.endpoint}/invocations", json=self.payload, timeout=30)
                outcome = (r.status_code, r.headers.get("X-Model-Version", "?"))
            except requests.RequestException as exc:
                outcome = (0, f"{type(exc).__name__}: {exc}")
            self.results.append((sent, time.monotonic(), *outcome))
            time.sleep(self.pause_s)

    def mark(self, *allowed: str) -> None:
        self.phases.append((time.monotonic(), frozenset(allowed)))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def failures(self) -> list[tuple[float, float, int, str]]:
        return [r for r in self.results if r[2] != 200]

    def misrouted(self) -> list[tuple[float, float, int, str]]:
        """Answers from a version that no phase open while the request was in flight allowed."""
        bad = []
        for sent, received, status, version in self.results:
            if status != 200:
                continue
            allowed: set[str] = set()
            for i, (start, versions) in enumerate(self.phases):
                # The first phase covers the load from its start: the clients begin before a test
                # can mark it, and a fast server answers within that moment.
                start = start if i else float("-inf")
                end = self.phases[i + 1][0] if i + 1 < len(self.phases) else float("inf")
                if start <= received and end >= sent:
                    allowed |= versions
            if version not in allowed:
                bad.append((sent, received, status, version))
        return bad

    def versions(self) -> dict[str, int]:
        from collections import Counter

        return dict(Counter(r[3] for r in self.results if r[2] == 200))
