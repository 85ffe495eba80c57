"""The model server's HTTP details: bounded body reading, error bodies, JSON that cannot fail."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from mlcicd.serving.inputs import BadInput

ERROR_CODES = {400: "BAD_REQUEST", 413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


class SafeJSON(JSONResponse):
    """JSON with non-ASCII escaped: a caller's lone surrogate (in an id, a column name) echoed back
    in an answer must not turn it into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadInput(f"the body has {int(declared)} bytes; at most {limit} are accepted "
                       "(MLCICD_SERVER_MAX_BODY_BYTES): split it into smaller requests", status=413)  # fmt: skip
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(f"the body exceeds {limit} bytes (MLCICD_SERVER_MAX_BODY_BYTES)", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(
    v2_model: str | None, status: int, code: str, message: str, retry: bool = False
) -> SafeJSON:
    """MLflow's error body on ``/invocations``, the protocol's ``{"error": ...}`` on ``/v2``."""
    body = {"error": message} if v2_model is not None else {"error_code": code, "message": message}
    return SafeJSON(body, status_code=status, headers={"Retry-After": "1"} if retry else None)


TOKEN_ENV, METRICS_TOKEN_ENV = "MLCICD_SERVER_TOKEN", "MLCICD_SERVER_METRICS_TOKEN"
# The same token in a header of its own, for callers whose Authorization header is taken (the
# Kubernetes API server's pod proxy authenticates the caller with it and does not pass it on).
TOKEN_HEADER = "X-Mlcicd-Token"
OPEN_PATHS = ("/health", "/v2/health/live", "/v2/health/ready")  # probes and the front's checks


def auth_headers(metrics: bool = False) -> dict[str, str]:
    """What a client of the servers (smoke tests, the rollout analysis) sends: the token the
    servers were given, from the same setting."""
    token = os.getenv(METRICS_TOKEN_ENV if metrics else TOKEN_ENV, "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_header(metrics: bool = False) -> dict[str, str]:
    """The token in :data:`TOKEN_HEADER`, for a caller whose Authorization header is taken."""
    sent = auth_headers(metrics).get("Authorization", "").removeprefix("Bearer ")
    return {TOKEN_HEADER: sent} if sent else {}


def refusal(path: str, authorization: str | None, token_header: str | None = None) -> str | None:
    """Why a request must be refused (401), or None. With ``MLCICD_SERVER_TOKEN`` set, every path
    but the health probes needs it; ``/metrics`` needs ``MLCICD_SERVER_METRICS_TOKEN`` when that is
    set (and is open otherwise, for a scraper)."""
    if path in OPEN_PATHS:
        return None
    setting = METRICS_TOKEN_ENV if path == "/metrics" else TOKEN_ENV
    token = os.getenv(setting, "")
    if not token:
        return None
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        sent = token_header or ""
    if hmac.compare_digest(sent.strip().encode(), token.encode()):
        return None
    return f"this endpoint needs 'Authorization: Bearer <token>' with the token set in {setting}"
