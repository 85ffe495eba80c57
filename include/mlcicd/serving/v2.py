"""The Open Inference Protocol (V2, REST): what KServe, Seldon's MLServer and Triton clients speak.

Documents only: the server (``server.py``) routes ``/v2/...`` here for the bodies it answers with.
Requests are read by :func:`mlcicd.serving.inputs.table_from_v2`; errors are ``{"error": ...}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlcicd.serving.inputs import V2_TYPES, Column

PROTOCOL = "mlcicd"


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": PROTOCOL, "version": version, "extensions": []}


def model_metadata(name: str, version: str, columns: list[Column], output_type: str) -> dict[str, Any]:
    """Inputs from the signature (one per column, as MLServer's ``pd`` content type describes them)."""
    return {
        "name": name,
        "versions": [version],
        "platform": "mlflow-sklearn",
        "inputs": [{"name": c.name, "datatype": V2_TYPES[c.kind], "shape": [-1, 1]} for c in columns],
        "outputs": [{"name": "predict", "datatype": output_type, "shape": [-1, 1]}],
        "parameters": {"content_type": "pd"},
    }


def datatype_of(values: np.ndarray) -> str:
    kind = values.dtype.kind
    return {"i": "INT64", "u": "UINT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


def infer_response(name: str, version: str, request_id: Any, predictions: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "outputs": [
            {
                "name": "predict",
                "datatype": datatype_of(predictions),
                "shape": [len(predictions), 1],
                "data": predictions.tolist(),
            }
        ],
    }
    if request_id is not None:
        out["id"] = request_id
    return out
