"""The servers' bearer tokens: what a client sends and why a request is refused.

Plain Python with no web framework, so that the callers of the servers (the CLI's ``traffic``,
smoke tests, the rollout analysis) import it without FastAPI.
"""

from __future__ import annotations

import hmac

from mlcicd.serving import config

TOKEN_ENV, METRICS_TOKEN_ENV = config.name_of("token"), config.name_of("metrics_token")
# The same token in a header of its own, for callers whose Authorization header is taken (the
# Kubernetes API server's pod proxy authenticates the caller with it and does not pass it on).
TOKEN_HEADER = "X-Mlcicd-Token"
OPEN_PATHS = ("/health", "/v2/health/live", "/v2/health/ready")  # probes and the front's checks


def auth_headers(metrics: bool = False) -> dict[str, str]:
    """What a client of the servers (smoke tests, the rollout analysis) sends: the token the
    servers were given, from the same setting."""
    token = config.value("metrics_token" if metrics else "token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_header(metrics: bool = False) -> dict[str, str]:
    """The token in :data:`TOKEN_HEADER`, for a caller whose Authorization header is taken."""
    sent = auth_headers(metrics).get("Authorization", "").removeprefix("Bearer ")
    return {TOKEN_HEADER: sent} if sent else {}


def refusal(
    path: str,
    authorization: str | None,
    token_header: str | None = None,
    *,
    token: str | None,
    metrics_token: str | None,
) -> str | None:
    """Why a request must be refused (401), or None. With ``token`` set (the server's
    ``MLCICD_SERVER_TOKEN``), every path but the health probes needs it; ``/metrics`` needs
    ``metrics_token`` (``MLCICD_SERVER_METRICS_TOKEN``) when that is set, and is open otherwise, for a
    scraper."""
    if path in OPEN_PATHS:
        return None
    metrics = path == "/metrics"
    expected = metrics_token if metrics else token
    if not expected:
        return None
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        sent = token_header or ""
    if hmac.compare_digest(sent.strip().encode(), expected.encode()):
        return None
    setting = METRICS_TOKEN_ENV if metrics else TOKEN_ENV
    return f"this endpoint needs 'Authorization: Bearer <token>' with the token set in {setting}"
