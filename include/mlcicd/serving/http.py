"""The model server's HTTP details: bounded body reading, error bodies, JSON that cannot fail."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from mlcicd.serving.config import name_of
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
        raise BadInput(
            f"the body has {int(declared)} bytes; at most {limit} are accepted "
            f"({name_of('max_body_bytes')}): split it into smaller requests",
            status=413,
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(f"the body exceeds {limit} bytes ({name_of('max_body_bytes')})", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(
    v2_model: str | None, status: int, code: str, message: str, retry: bool = False
) -> SafeJSON:
    """MLflow's error body on ``/invocations``, the protocol's ``{"error": ...}`` on ``/v2``."""
    body = {"error": message} if v2_model is not None else {"error_code": code, "message": message}
    return SafeJSON(body, status_code=status, headers={"Retry-After": "1"} if retry else None)
