"""The model server's limits and worker count: from its settings (:mod:`.config`), fitted to the
container it runs in."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from mlcicd.serving.config import DEFAULTS, ServerSettings, name_of

# A JSON body in memory while it is parsed: itself and about 6 times its size as Python lists (measured:
# a 9.3 MiB dataframe_split of 150,000 x 8 numbers peaked at 55.6 MiB in parse_json and table_from_mlflow).
BODY_EXPANSION = 7
REQUEST_MEMORY_SHARE = (
    0.5  # of the container's memory, for the bodies in flight; the model and batches have the rest
)


@dataclass(frozen=True)
class Limits:
    """The settings that bound a request (their defaults unless given)."""

    max_body_bytes: int = DEFAULTS.max_body_bytes
    max_rows: int = DEFAULTS.max_rows
    max_concurrency: int = DEFAULTS.max_concurrency
    timeout_s: float = DEFAULTS.timeout_s
    batch_rows: int = DEFAULTS.batch_rows
    batch_wait_ms: float = DEFAULTS.batch_wait_ms

    @classmethod
    def of(cls, settings: ServerSettings) -> Limits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def fitted(self, memory_bytes: int | None, workers: int) -> Limits:
        """These limits with ``max_concurrency`` lowered so that every worker's bodies in flight, at
        their largest, fit in their share of ``memory_bytes`` (the container's limit; None: no limit)."""
        if not memory_bytes:
            return self
        per_worker = memory_bytes * REQUEST_MEMORY_SHARE / max(workers, 1)
        most = max(1, int(per_worker // (self.max_body_bytes * BODY_EXPANSION)))
        return replace(self, max_concurrency=min(self.max_concurrency, most))


def fitted_limits(settings: ServerSettings, workers: int) -> tuple[Limits, str | None]:
    """The settings' limits fitted to this container's memory, and what was lowered (None: nothing)."""
    asked = Limits.of(settings)
    memory = memory_limit()
    limits = asked.fitted(memory, workers)
    if limits.max_concurrency == asked.max_concurrency:
        return limits, None
    return limits, (
        f"at most {limits.max_concurrency} requests in flight per worker, not {asked.max_concurrency} "
        f"({name_of('max_concurrency')}): with {workers} worker(s), bodies of up to {limits.max_body_bytes} "
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


def server_workers(settings: ServerSettings) -> int:
    """The server's processes: as set, or (``auto``) the cores it is given, at most 8."""
    return settings.workers or min(available_cores(), 8)
