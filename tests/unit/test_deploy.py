from __future__ import annotations

import socket

from mlcicd.ports import free_port


def test_free_port_never_hands_out_the_same_port_twice():
    # The kernel gives a just-released port to the next bind(0) readily; the allocator must not.
    ports = [free_port("127.0.0.1") for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # and each was free
