"""TCP ports on this machine: a fresh free one, and whether one is taken."""

from __future__ import annotations

import os
import socket

_HANDED_OUT: set[int] = set()
SHARD_ENV = "MLCICD_PORT_SHARD"


def shard() -> tuple[int, int]:
    """``MLCICD_PORT_SHARD=i/n``: this process (and what it starts) only takes ports ``p`` with
    ``(p // 2) % n == i``. Processes that pick ports independently on one machine (the test session's
    pytest workers) take different shards, so no two of them are ever handed the same port. Unset:
    ``0/1``. (``p // 2``, not ``p``: Linux gives ``bind(0)`` odd ports, and keeps even ones for
    outgoing connections.)"""
    raw = os.getenv(SHARD_ENV, "").strip()
    if not raw:
        return 0, 1
    try:
        index, count = (int(part) for part in raw.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ValueError(f"{SHARD_ENV}={raw!r}: give i/n with 0 <= i < n, for example 0/2")
    return index, count


def free_port(host: str) -> int:
    """A port that is free now, in this process's shard, and that this process has not handed out before.

    The kernel readily gives a just-released port to the next ``bind(0)``, so without the memory
    two callers (say, a fixed stable port chosen earlier and a later staging port) could get the
    same one, and the second would find it taken.
    """
    index, count = shard()
    for _ in range(100 * count):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if (port // 2) % count == index and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no fresh free port on {host} in shard {index}/{count} after {100 * count} tries")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0
