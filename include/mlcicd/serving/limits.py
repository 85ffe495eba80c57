"""The model server's limits and worker count, from the environment (the server runs in images
and pods where the project's settings module is not configured)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

# A JSON body in memory while it is parsed: itself and about 6 times its size as Python lists (measured:
# a 9.3 MiB dataframe_split of 150,000 x 8 numbers peaked at 55.6 MiB in parse_json and table_from_mlflow).
BODY_EXPANSION = 7
REQUEST_MEMORY_SHARE = (
    0.5  # of the container's memory, for the bodies in flight; the model and batches have the rest
)


def _env(name: str, default: float) -> float:
    raw = os.getenv(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"{name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 2**20
    max_rows: int = 10_000
    max_concurrency: int = 64
    timeout_s: float = 30.0
    batch_rows: int = 256
    batch_wait_ms: float = 2.0

    @classmethod
    def from_env(cls) -> Limits:
        d = cls()
        return cls(
            int(_env("MLCICD_SERVER_MAX_BODY_BYTES", d.max_body_bytes)), int(_env("MLCICD_SERVER_MAX_ROWS", d.max_rows)),
            int(_env("MLCICD_SERVER_MAX_CONCURRENCY", d.max_concurrency)), _env("MLCICD_SERVER_TIMEOUT_S", d.timeout_s),
            int(_env("MLCICD_SERVER_BATCH_ROWS", d.batch_rows)), _env("MLCICD_SERVER_BATCH_WAIT_MS", d.batch_wait_ms),
        )  # fmt: skip

    def fitted(self, memory_bytes: int | None, workers: int) -> Limits:
        """These limits with ``max_concurrency`` lowered so that every worker's bodies in flight, at
        their largest, fit in their share of ``memory_bytes`` (the container's limit; None: no limit)."""
        if not memory_bytes:
            return self
        per_worker = memory_bytes * REQUEST_MEMORY_SHARE / max(workers, 1)
        most = max(1, int(per_worker // (self.max_body_bytes * BODY_EXPANSION)))
        return replace(self, max_concurrency=min(self.max_concurrency, most))


def fitted_limits(workers: int) -> tuple[Limits, str | None]:
    """The settings' limits fitted to this container's memory, and what was lowered (None: nothing)."""
    asked = Limits.from_env()
    memory = memory_limit()
    limits = asked.fitted(memory, workers)
    if limits.max_concurrency == asked.max_concurrency:
        return limits, None
    return limits, (
        f"at most {limits.max_concurrency} requests in flight per worker, not {asked.max_concurrency} "
        f"(MLCICD_SERVER_MAX_CONCURRENCY): with {workers} worker(s), bodies of up to {limits.max_body_bytes} "
        f"bytes must fit in half of the container's {memory} bytes"
    )


def memory_limit() -> int | None:
    """The container's memory limit (cgroup v2), or None when there is none."""
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return None if raw == "max" or not raw.isdigit() else int(raw)


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, bounded by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def server_workers() -> int:
    raw = os.getenv("MLCICD_SERVER_WORKERS", "auto").strip() or "auto"
    if raw == "auto":
        return min(available_cores(), 8)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"MLCICD_SERVER_WORKERS={raw!r}: give a number of processes (1 or more) or auto")
    return int(raw)
