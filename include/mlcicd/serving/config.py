"""The model server's settings: every environment variable it reads, in one table, read by one policy.

The server runs in images and pods without the rest of the project (this package imports nothing else of
``mlcicd``), so it reads its own environment: here, and nowhere else in the package. :func:`read` gives
every setting at once; :func:`value` gives one (for a client of the servers that needs only a token).
Both follow the same policy:

- unset or empty (blanks around a value are ignored): the default of :data:`SERVER_SETTINGS`;
- anything else is of the setting's kind and within its bounds, or :class:`SettingError` names the
  variable, the value and what is allowed (every bad setting at once).

:data:`SERVER_SETTINGS` declares each variable once (name, default, meaning, what is allowed), so that
the documentation's table of settings can be generated from it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingError(ValueError):
    """Settings the server cannot run with: the message names each variable, its value and what is allowed."""


@dataclass(frozen=True)
class Kind:
    """What a setting's text may be: ``allowed`` says it (in errors and docs), ``convert`` turns the text
    into the value and raises ValueError for any other text."""

    allowed: str
    convert: Callable[[str], Any]


_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def integer(low: int, high: int) -> Kind:
    """A whole number from ``low`` to ``high``."""

    def convert(raw: str) -> int:
        if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
            raise ValueError(raw)
        return int(raw)

    return Kind(f"an integer from {low} to {high}", convert)


def number(low: float, high: float, *, above_low: bool = False) -> Kind:
    """A finite number from ``low`` (or above it, with ``above_low``) to ``high``."""

    def convert(raw: str) -> float:
        value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
        if not math.isfinite(value) or not (low < value if above_low else low <= value) or value > high:
            raise ValueError(raw)
        return value

    bounds = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
    return Kind(f"a number {bounds}", convert)


def _workers(raw: str) -> int | None:
    return None if raw == "auto" else WORKER_COUNT.convert(raw)


def _digest(raw: str) -> str:
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", raw):
        raise ValueError(raw)
    return raw


TEXT = Kind("any text", str)
PATH = Kind("a path", Path)
WORKER_COUNT = integer(1, 128)
WORKERS = Kind(f"auto or {WORKER_COUNT.allowed}", _workers)
DIGEST = Kind("a digest: 'sha256:' followed by 64 lowercase hexadecimal digits", _digest)


@dataclass(frozen=True)
class Setting:
    """One variable of the server's environment: its ``field`` of :class:`ServerSettings`, its default as
    it would be written (empty: unset, the value None) and what it means."""

    name: str
    field: str
    default: str
    kind: Kind
    meaning: str
    internal: bool = False  # set by the server for its own worker processes, never by a user

    def parse(self, raw: str | None) -> Any:
        """The value of ``raw`` (the variable's text; None: unset).

        Raises:
            SettingError: ``raw`` is not of the setting's kind or not within its bounds.
        """
        text = (raw or "").strip()
        if not text:
            return self.kind.convert(self.default) if self.default else None
        try:
            return self.kind.convert(text)
        except ValueError:
            unset = f" (unset: {self.default})" if self.default else ""
            raise SettingError(
                f"{self.name}={raw!r} is not allowed: give {self.kind.allowed}{unset}"
            ) from None


SERVER_SETTINGS: tuple[Setting, ...] = (
    Setting("MLCICD_MODEL_DIR", "model_dir", "", PATH, "the bundle to serve, model/ and release.json (the server's --model-dir)"),
    Setting("MLCICD_MODEL_DIGEST", "model_digest", "", DIGEST, "the digest the deploy target read from the registry: a bundle whose release.json names another is refused"),
    Setting("HOST", "host", "127.0.0.1", TEXT, "the address the server listens on (its --host)"),
    Setting("PORT", "port", "5100", integer(1, 65535), "the port the server listens on (its --port)"),
    Setting("MLCICD_SERVER_TOKEN", "token", "", TEXT, "when set, scoring, V2 and /version ask for 'Authorization: Bearer <token>' (401 otherwise; the health probes stay open); the smoke tests and the CLI send it"),
    Setting("MLCICD_SERVER_METRICS_TOKEN", "metrics_token", "", TEXT, "when set, /metrics asks for this token (the rollout analysis sends it); open otherwise, for a scraper"),
    Setting("MLCICD_SERVER_WORKERS", "workers", "auto", WORKERS, "server processes, each with the model loaded once: auto is the cores given (CPU affinity and cgroup quota), at most 8"),
    Setting("MLCICD_SERVER_THREADS", "threads", "1", integer(1, 256), "native threads (OpenMP, BLAS) per process: more made predictions stall beside a retraining"),
    Setting("MLCICD_SERVER_MAX_BODY_BYTES", "max_body_bytes", str(8 * 2**20), integer(1, 2**30), "a larger request body is refused with 413"),
    Setting("MLCICD_SERVER_MAX_ROWS", "max_rows", "10000", integer(1, 10_000_000), "a request of more rows is refused with 413"),
    Setting("MLCICD_SERVER_MAX_CONCURRENCY", "max_concurrency", "64", integer(1, 10_000), "requests in progress per worker, beyond which 503 with Retry-After (lowered to fit the container's memory)"),
    Setting("MLCICD_SERVER_TIMEOUT_S", "timeout_s", "30", number(0, 3600, above_low=True), "seconds for a body to arrive (else 408) and to be scored (else 503 with Retry-After)"),
    Setting("MLCICD_SERVER_BATCH_ROWS", "batch_rows", "256", integer(1, 100_000), "most rows scored together in one call"),
    Setting("MLCICD_SERVER_BATCH_WAIT_MS", "batch_wait_ms", "2", number(0, 1000), "longest wait for more rows to score together, only while other requests are arriving"),
    Setting("MLCICD_PREDICTION_LOG_DIR", "prediction_log_dir", "", PATH, "the folder of the prediction log (the server's --prediction-log); unset: no log"),
    Setting("MLCICD_PREDICTION_LOG_RETENTION_HOURS", "prediction_log_retention_hours", "720", number(0, 87_600, above_low=True), "prediction log files older than this go"),
    Setting("MLCICD_PREDICTION_LOG_MAX_BYTES", "prediction_log_max_bytes", str(10 * 2**30), integer(1, 2**50), "the prediction log folder's size, beyond which the oldest files go"),
    Setting("MLCICD_PREDICTION_LOG_MAX_QUEUE_BYTES", "prediction_log_max_queue_bytes", str(64 * 2**20), integer(1, 2**34), "records waiting to be written, in bytes, beyond which rows are dropped and counted"),
    Setting("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "", PATH, "where the worker processes write their metrics, merged by /metrics (prometheus_client's multiprocess mode)", internal=True),
)  # fmt: skip
_BY_FIELD = {s.field: s for s in SERVER_SETTINGS}


@dataclass(frozen=True)
class ServerSettings:
    """Every setting of the server, as :func:`read` gives them (None: unset; for ``workers``: auto)."""

    model_dir: Path | None
    model_digest: str | None
    host: str
    port: int
    token: str | None
    metrics_token: str | None
    workers: int | None
    threads: int
    max_body_bytes: int
    max_rows: int
    max_concurrency: int
    timeout_s: float
    batch_rows: int
    batch_wait_ms: float
    prediction_log_dir: Path | None
    prediction_log_retention_hours: float
    prediction_log_max_bytes: int
    prediction_log_max_queue_bytes: int
    prometheus_multiproc_dir: Path | None


def read(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Every setting, from ``environ`` (default: this process's environment).

    Raises:
        SettingError: naming every variable whose value is not allowed.
    """
    env = os.environ if environ is None else environ
    values, errors = {}, []
    for setting in SERVER_SETTINGS:
        try:
            values[setting.field] = setting.parse(env.get(setting.name))
        except SettingError as exc:
            errors.append(str(exc))
    if errors:
        raise SettingError("; ".join(errors))
    return ServerSettings(**values)


def value(field: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting (by its field of :class:`ServerSettings`), by the same policy as :func:`read`."""
    setting = _BY_FIELD[field]
    return setting.parse((os.environ if environ is None else environ).get(setting.name))


def name_of(field: str) -> str:
    """The environment variable of a field of :class:`ServerSettings`."""
    return _BY_FIELD[field].name


def as_environ(**values: Any) -> dict[str, str | None]:
    """The variables that give ``values`` (field of :class:`ServerSettings` -> value; None: unset) to
    another process of the server, such as its workers."""
    return {name_of(field): None if v is None else str(v) for field, v in values.items()}


DEFAULTS = read({})  # every setting unset
