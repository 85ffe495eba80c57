"""The model server: ``/invocations`` (MLflow scoring payloads), the Open Inference Protocol
(``/v2/...``), ``/health``, ``/version`` and ``/metrics``.

It serves one model version from a local directory (``<dir>/model`` is an MLflow model,
``<dir>/release.json`` says which version it is), so it never needs the registry at start-up and
the same directory can be baked into an image. Input is checked against the model's signature
(:mod:`.inputs`); malformed requests get a 4xx with a message, never a 500. Concurrent requests
are scored together (:mod:`.batching`), by the fast path where it was proven equal to the
pipeline (:mod:`.fastpath`), in ``MLCICD_SERVER_WORKERS`` processes (default: the cores the server
is given), each with the model loaded once.

Limits (settings, :mod:`.config`): ``MLCICD_SERVER_MAX_BODY_BYTES`` (413), ``MLCICD_SERVER_MAX_ROWS``
(413), ``MLCICD_SERVER_MAX_CONCURRENCY`` per worker (503 with ``Retry-After``, so that ``/health``
always answers), ``MLCICD_SERVER_TIMEOUT_S`` (503), ``MLCICD_SERVER_BATCH_ROWS`` and
``MLCICD_SERVER_BATCH_WAIT_MS`` (the batcher's bounds). The settings are read once, when the server
starts; a bad one stops it with a message naming it.

Run it with ``python -m mlcicd.serving --model-dir DIR --port 5100`` (:mod:`.start`).

Native thread pools (OpenMP, BLAS) are limited to ``MLCICD_SERVER_THREADS`` (default 1): a
request's few rows gain nothing from threads, and OpenMP threads that spin-wait beside another busy
process (a retraining on the same machine) made a 7 ms prediction take up to 1.7 s.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.
import json
import logging
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mlcicd.serving import config
from mlcicd.serving.auth import TOKEN_HEADER, refusal
from mlcicd.serving.config import ServerSettings, name_of
from mlcicd.serving.http import ERROR_CODES, SafeJSON, error_response, read_body
from mlcicd.serving.inputs import BadInput
from mlcicd.serving.limits import Limits

log = logging.getLogger("mlcicd.serving")
VERSION_HEADER = "X-Model-Version"  # on every response: the version that answered
PROBE_HEADER = "x-mlcicd-probe"  # a smoke test sent straight to this server (the front strips it)
SHADOW_HEADER = "x-shadow"  # a copy mirrored by the front (which strips it from callers' requests)
SHADOW_DIR = "shadow"


def traffic_of(request: Any) -> str:
    if request.headers.get(PROBE_HEADER):
        return "probe"
    return "shadow" if request.headers.get(SHADOW_HEADER) else "live"


def read_release(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "release.json").read_text())


def create_app(
    model_dir: Path,
    prediction_log: Path | None = None,
    limits: Limits | None = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Load the model in ``model_dir`` and build the ASGI app.

    ``prediction_log``: folder for the prediction log (see :mod:`mlcicd.serving.predlog`); None disables it.
    ``limits`` and ``settings``: the server's settings' (:mod:`.config`, read now) unless given.
    """
    import asyncio

    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlcicd.serving import inputs, modelfile, v2
    from mlcicd.serving.batching import Batcher
    from mlcicd.serving.fastpath import Scorer
    from mlcicd.serving.metrics import ServerMetrics
    from mlcicd.serving.predlog import PredictionLogger

    settings = settings or config.read()
    limits = limits or Limits.of(settings)
    release = read_release(model_dir)
    name, served = str(release.get("model_name")), str(release.get("version"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline, specs = modelfile.load_with_signature(
            model_dir / "model", modelfile.release_digest(release), f"{name} v{served}"
        )
    columns = inputs.columns_of(specs)
    threadpool_limits(limits=settings.threads)  # the libraries the model loaded, in this thread
    scorer = Scorer(pipeline, columns)
    output_type = v2.datatype_of(np.asarray(getattr(pipeline, "classes_", [0])))
    metrics = ServerMetrics(name, served, multiprocess=settings.prometheus_multiproc_dir is not None)
    batcher = Batcher(
        scorer.predict,
        limits.batch_rows,
        limits.batch_wait_ms / 1000,
        metrics.batch,
        initializer=lambda: threadpool_limits(limits=settings.threads),
    )
    bounds = {
        "retention_hours": settings.prediction_log_retention_hours,
        "max_total_bytes": settings.prediction_log_max_bytes,
        "max_queue_bytes": settings.prediction_log_max_queue_bytes,
    }
    predlog = PredictionLogger(prediction_log, on_drop=metrics.dropped.inc, **bounds)
    # Answers to mirrored copies: beside the live log, never in it (the monitor reads only the live one).
    shadow_log = PredictionLogger(
        prediction_log / SHADOW_DIR if prediction_log else None, on_drop=metrics.dropped.inc, **bounds
    )
    app = FastAPI(title=f"mlcicd model server: {name} v{served}")
    app.state.model_dir, app.state.prediction_log, app.state.shadow_log = model_dir, predlog, shadow_log
    app.state.scorer, app.state.batcher, app.state.limits = scorer, batcher, limits
    inflight = 0

    @app.middleware("http")
    async def guard_and_name_the_version(request: Request, call_next: Any) -> Any:
        denied = refusal(
            request.url.path,
            request.headers.get("authorization"),
            request.headers.get(TOKEN_HEADER),
            token=settings.token,
            metrics_token=settings.metrics_token,
        )
        if denied:
            v2_model = "" if request.url.path.startswith("/v2") else None
            response: Any = error_response(v2_model, 401, "UNAUTHENTICATED", denied)
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = await call_next(request)
        response.headers[VERSION_HEADER] = served
        return response

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
    def metrics_page() -> Any:
        return metrics.page()

    @app.post("/invocations")
    async def invocations(request: Request) -> Any:
        return await handle(request, v2_model=None)

    @app.get("/v2")
    def v2_server() -> dict[str, Any]:
        return v2.server_metadata(_package_version())

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    def v2_health() -> dict[str, Any]:
        return {"live": True, "ready": True}

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{model_version}")
    def v2_model(model: str, model_version: str | None = None) -> Any:
        return unknown(model, model_version) or v2.model_metadata(name, served, columns, output_type)

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{model_version}/ready")
    def v2_ready(model: str, model_version: str | None = None) -> Any:
        return unknown(model, model_version) or {"name": name, "ready": True}

    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{model_version}/infer")
    async def v2_infer(request: Request, model: str, model_version: str | None = None) -> Any:
        return unknown(model, model_version) or await handle(request, v2_model=model)

    def unknown(model: str, model_version: str | None) -> SafeJSON | None:
        if model != name or model_version not in (None, served):
            wanted = f"{model} v{model_version}" if model_version else model
            return SafeJSON(
                {"error": f"model {wanted} is not served here; this server serves {name} v{served}"},
                status_code=404,
            )
        return None

    async def handle(request: Request, v2_model: str | None) -> Any:
        nonlocal inflight
        started = time.perf_counter()
        traffic = traffic_of(request)
        if inflight >= limits.max_concurrency:
            response = error_response(
                v2_model,
                503,
                "OVERLOADED",
                f"{inflight} requests are in progress on this worker ({name_of('max_concurrency')}); retry shortly",
                retry=True,
            )
        else:
            inflight += 1
            try:
                response = await score(request, traffic, v2_model)
            except Exception as exc:  # a bug, not the caller's input: answered, counted and logged
                log.exception("scoring failed")
                response = error_response(
                    v2_model, 500, "INTERNAL_ERROR", f"the server failed: {type(exc).__name__}"
                )
            finally:
                inflight -= 1
        metrics.request(str(response.status_code), traffic, time.perf_counter() - started)
        return response

    async def score(request: Request, traffic: str, v2_model: str | None) -> Any:
        # Being read and parsed: worth a short wait for (bounded by the batch wait and the body timeout).
        batcher.arriving, arriving, reading = batcher.arriving + 1, True, True
        try:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json" and not (v2_model and content_type == ""):
                raise BadInput(f"Content-Type must be application/json; {inputs.PAYLOAD_HINT}", status=415)
            body = await asyncio.wait_for(read_body(request, limits.max_body_bytes), limits.timeout_s)
            reading = False
            payload = inputs.parse_json(body)
            if v2_model is None:
                table, rows = inputs.table_from_mlflow(payload, columns, limits.max_rows)
            else:
                table, rows = inputs.table_from_v2(payload, columns)
            cols = inputs.typed(table, rows, columns, limits.max_rows)
            batcher.arriving, arriving = batcher.arriving - 1, False
            predictions = await asyncio.wait_for(batcher.predict(cols, rows), limits.timeout_s)
        except BadInput as exc:
            return error_response(
                v2_model, exc.status, ERROR_CODES.get(exc.status, "BAD_REQUEST"), exc.message
            )
        except ClientDisconnect:
            return error_response(
                v2_model, 400, "CLIENT_DISCONNECTED", "the client left before its body arrived"
            )
        except TimeoutError:
            if not reading:
                return error_response(
                    v2_model,
                    503,
                    "TIMEOUT",
                    f"not scored within {limits.timeout_s:g} s ({name_of('timeout_s')}); retry shortly",
                    retry=True,
                )
            return error_response(
                v2_model, 408, "REQUEST_TIMEOUT", f"the body did not arrive within {limits.timeout_s:g} s"
            )
        except (
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
        ) as exc:  # the model refused what the signature allowed
            return error_response(v2_model, 400, "INVALID_INPUT", f"{type(exc).__name__}: {str(exc)[:500]}")
        finally:
            if arriving:
                batcher.arriving -= 1
        values = predictions.tolist()
        metrics.predictions(values, traffic)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        logger = {"live": predlog, "shadow": shadow_log}.get(traffic)
        if logger is not None and logger.enabled:
            header = {
                "request_id": request_id,
                "time": datetime.now(UTC).isoformat(),
                "model_name": release.get("model_name"),
                "model_version": release.get("version"),
            }
            logger.log_frame(header, cols, values)
        headers = {"X-Request-ID": request_id}
        if v2_model is None:
            return SafeJSON({"predictions": values}, headers=headers)
        return SafeJSON(v2.infer_response(name, served, payload.get("id"), predictions), headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def frameworkerror_response(request: Request, exc: StarletteHTTPException) -> Any:
        """Unknown paths and methods: the protocol's error body under /v2, FastAPI's elsewhere."""
        if request.url.path.startswith("/v2"):
            return SafeJSON({"error": str(exc.detail)}, status_code=exc.status_code)
        return SafeJSON({"detail": exc.detail}, status_code=exc.status_code)

    @app.on_event("shutdown")
    def close() -> None:
        batcher.close()
        predlog.close()
        shadow_log.close()

    return app


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcicd")
    except PackageNotFoundError:
        return "0"
