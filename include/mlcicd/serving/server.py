"""The model server: ``/invocations`` (MLflow scoring payloads), ``/health`` and ``/version``.

It serves one model version from a local directory (``<dir>/model`` is an MLflow model,
``<dir>/release.json`` says which version it is), so it never needs the registry at start-up and
the same directory can be baked into an image. Input is checked against the model's signature;
malformed requests get a 4xx with a message, never a 500.

Run it with ``python -m mlcicd.serving --model-dir DIR --port 5100``.

Native thread pools (OpenMP, BLAS) are limited to ``MLCICD_SERVER_THREADS`` (default 1): a
request's few rows gain nothing from threads, and OpenMP threads that spin-wait beside another busy
process (a retraining on the same machine) made a 7 ms prediction take up to 1.7 s.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.
import argparse
import json
import os
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PAYLOAD_HINT = (
    "send a JSON object with exactly one of 'dataframe_split', 'dataframe_records', 'instances' or "
    "'inputs', as for MLflow's scoring server"
)


VERSION_HEADER = "X-Model-Version"  # on every response: the version that answered
PROBE_HEADER = "x-mlcicd-probe"  # a smoke test sent straight to this server (the front strips it)
SHADOW_HEADER = "x-shadow"  # a copy mirrored by the front (which strips it from callers' requests)
SHADOW_DIR = "shadow"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def traffic_of(request: Any) -> str:
    if request.headers.get(PROBE_HEADER):
        return "probe"
    return "shadow" if request.headers.get(SHADOW_HEADER) else "live"


def read_release(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "release.json").read_text())


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def server_threads() -> int:
    return max(1, int(os.getenv("MLCICD_SERVER_THREADS", "1")))


def create_app(model_dir: Path, prediction_log: Path | None = None) -> FastAPI:
    """Load the model in ``model_dir`` and build the ASGI app.

    ``prediction_log``: folder for the prediction log (see :mod:`mlcicd.serving.predlog`); None disables it.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    release = read_release(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(str(model_dir / "model"))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=server_threads())  # the libraries the model loaded, in this thread
    input_schema = model.metadata.get_input_schema()
    app = FastAPI(title=f"mlcicd model server: {release.get('model_name')} v{release.get('version')}")
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from starlette.responses import Response

    from mlcicd.serving.predlog import PredictionLogger

    registry = CollectorRegistry()
    served = str(release.get("version"))
    # Labelled by version, and by traffic: live (through the front), shadow (a mirrored copy),
    # probe (a smoke test sent straight to this server).
    labels = ["status", "model_version", "traffic"]
    requests_total = Counter("mlcicd_requests", "Requests to /invocations", labels, registry=registry)
    latency = Histogram("mlcicd_request_seconds", "Latency of /invocations", labels, registry=registry,
                        buckets=LATENCY_BUCKETS)  # fmt: skip
    predictions_total = Counter(
        "mlcicd_predictions", "Predictions served", ["class_", "model_version", "traffic"], registry=registry
    )
    Gauge("mlcicd_model_info", "The served model", ["model_name", "model_version"], registry=registry).labels(
        str(release.get("model_name")), str(release.get("version"))
    ).set(1)
    predlog = PredictionLogger(prediction_log)
    # Answers to mirrored copies: beside the live log, never in it (the monitor reads only the live one).
    shadow_log = PredictionLogger(prediction_log / SHADOW_DIR if prediction_log else None)
    Gauge("mlcicd_prediction_log_dropped", "Prediction records dropped", registry=registry).set_function(
        lambda: predlog.dropped
    )
    app.state.prediction_log = predlog
    app.state.shadow_log = shadow_log

    @app.middleware("http")
    async def name_the_version(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers[VERSION_HEADER] = served
        return response

    app.state.model_dir = model_dir

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error_code": code, "message": message})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_name": release.get("model_name"),
            "model_version": release.get("version"),
        }

    @app.get("/version")
    def version() -> dict[str, Any]:
        return release

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/invocations")
    async def invocations(request: Request) -> Any:
        started = time.perf_counter()
        traffic = traffic_of(request)
        response = await score(request, traffic)
        status = str(response.status_code)
        requests_total.labels(status, served, traffic).inc()
        latency.labels(status, served, traffic).observe(time.perf_counter() - started)
        return response

    async def score(request: Request, traffic: str) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error(
                415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be application/json; {PAYLOAD_HINT}"
            )
        body = await request.body()
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error(400, "BAD_REQUEST", f"the body is not valid JSON ({exc}); {PAYLOAD_HINT}")
        if not isinstance(payload, dict):
            return error(400, "BAD_REQUEST", f"the body is a JSON {type(payload).__name__}; {PAYLOAD_HINT}")
        try:
            data = infer_and_parse_data(payload, input_schema)
            if hasattr(data, "__len__") and len(data) == 0:
                return error(400, "BAD_REQUEST", "the request holds no rows")
            predictions = model.predict(data)
        except MlflowException as exc:
            return error(400, "INVALID_INPUT", exc.message)
        except (ValueError, TypeError, KeyError) as exc:
            return error(400, "INVALID_INPUT", f"{type(exc).__name__}: {exc}")
        values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        for v in values:
            predictions_total.labels(str(v), served, traffic).inc()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        logger = {"live": predlog, "shadow": shadow_log}.get(traffic)
        if logger is not None and logger.enabled and hasattr(data, "to_dict"):
            header = {"request_id": request_id, "time": datetime.now(UTC).isoformat(),
                      "model_name": release.get("model_name"), "model_version": release.get("version")}  # fmt: skip
            logger.log_frame(header, data, values)
        return JSONResponse({"predictions": values}, headers={"X-Request-ID": request_id})

    return app


def check_health(port: int) -> int:
    """The image's HEALTHCHECK: 0 when ``/health`` on this container answers ok."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return 0 if json.load(r).get("status") == "ok" else 1
    except (OSError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlcicd.serving", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, default=os.getenv("MLCICD_MODEL_DIR") or None,
        help="folder with model/ and release.json (default: MLCICD_MODEL_DIR)",
    )  # fmt: skip
    parser.add_argument("--host", default=os.getenv("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.getenv("PORT", "5100")))
    parser.add_argument(
        "--prediction-log",
        type=Path,
        default=os.getenv("MLCICD_PREDICTION_LOG_DIR") or None,
        help="folder of the prediction log (default: MLCICD_PREDICTION_LOG_DIR; unset: off)",
    )
    parser.add_argument("--check-health", action="store_true", help="probe this server's /health and exit")
    args = parser.parse_args(argv)
    if args.check_health:
        raise SystemExit(check_health(args.port))
    if args.model_dir is None:
        parser.error("--model-dir (or MLCICD_MODEL_DIR) is required")
    for var in THREAD_VARS:  # before the native libraries start: every thread of the process
        os.environ[var] = str(server_threads())
    import uvicorn

    app = create_app(args.model_dir, args.prediction_log)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        app.state.prediction_log.close()
        app.state.shadow_log.close()


if __name__ == "__main__":
    main()
