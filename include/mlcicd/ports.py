"""TCP ports on this machine: a fresh free one, and whether one is taken."""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


def free_port(host: str) -> int:
    """A port that is free now and that this process has not handed out before.

    The kernel readily gives a just-released port to the next ``bind(0)``, so without the memory
    two callers (say, a fixed stable port chosen earlier and a later staging port) could get the
    same one, and the second would find it taken.
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no fresh free port on {host} after 100 tries")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0
