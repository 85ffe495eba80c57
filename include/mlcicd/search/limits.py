"""What bounds a search: the candidates and time-out a run may ask for, the threads of one fit, and
the fit's time-out."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from mlcicd.errors import ConfigError

log = logging.getLogger("mlcicd")


class CandidateTimeout(Exception):
    """The candidate's fit took longer than the run's ``search_timeout_s``."""


def budget(params: dict[str, Any], settings: Any) -> tuple[int, int]:
    """(max candidates, time-out per candidate in s): the run's, or the installation's ceilings.

    Raises:
        ConfigError: a param above its ceiling.
    """
    out = []
    for name, ceiling in (
        ("search_max_candidates", settings.search_max_candidates),
        ("search_timeout_s", settings.search_timeout_s),
    ):
        asked = params.get(name)
        if asked is not None and int(asked) > ceiling:
            raise ConfigError(
                f"{name}={asked} is above this installation's ceiling of {ceiling} "
                f"(MLCICD_{name.upper()}): ask for at most {ceiling}, or leave it empty"
            )
        out.append(ceiling if asked is None else int(asked))
    return out[0], out[1]


def native_threads(parallelism: int) -> int:
    """OpenMP/BLAS threads for one candidate's fit: the cores shared among the candidates at once.

    Gradient boosting takes every core by default; two such fits side by side (with libgomp's
    threads spinning while they wait) ran slower together than one after the other.
    """
    return max(1, len(os.sched_getaffinity(0)) // max(1, parallelism))


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CandidateTimeout in the block after ``seconds`` (SIGALRM: the task's main thread only).

    scikit-learn's fits return to Python between iterations, trees or solver steps, where the signal
    is handled. An exception raised from a handler that interrupts a garbage-collector callback is
    swallowed by Python, so the alarm repeats every 0.2 s until one lands; it never fires once the
    block is left. Elsewhere (a thread) the block runs without a limit and says so.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("not on the main thread: the candidate runs without its %s s time-out", seconds)
        yield
        return
    armed = [True]

    def expire(signum: int, frame: Any) -> None:
        if armed[0]:
            raise CandidateTimeout(f"the fit took longer than search_timeout_s={seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
