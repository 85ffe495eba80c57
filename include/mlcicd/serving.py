"""The model server: ``/invocations`` (MLflow scoring payloads), ``/health`` and ``/version``.

It serves one model version from a local directory (``<dir>/model`` is an MLflow model,
``<dir>/release.json`` says which version it is), so it never needs the registry at start-up and
the same directory can be baked into an image. Input is checked against the model's signature;
malformed requests get a 4xx with a message, never a 500.

Run it with ``python -m mlcicd.serving --model-dir DIR --port 5100``.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.
import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PAYLOAD_HINT = (
    "send a JSON object with exactly one of 'dataframe_split', 'dataframe_records', 'instances' or "
    "'inputs', as for MLflow's scoring server"
)


def read_release(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "release.json").read_text())


def create_app(model_dir: Path) -> FastAPI:
    """Load the model in ``model_dir`` and build the ASGI app."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    release = read_release(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(str(model_dir / "model"))
    input_schema = model.metadata.get_input_schema()
    app = FastAPI(title=f"mlcicd model server: {release.get('model_name')} v{release.get('version')}")

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

    @app.post("/invocations")
    async def invocations(request: Request) -> Any:
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
        return {"predictions": values}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m mlcicd.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5100)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.model_dir), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
