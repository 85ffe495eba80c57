"""The model server's limits and worker count, from the environment (the server runs in images
and pods where the project's settings module is not configured)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
