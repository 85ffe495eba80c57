from __future__ import annotations

import socket

from mlcicd.ports import free_port


def test_free_port_never_hands_out_the_same_port_twice():
    # The kernel gives a just-released port to the next bind(0) readily; the allocator must not.
    ports = [free_port("127.0.0.1") for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # and each was free


def test_a_port_shard_only_hands_out_its_own_ports(monkeypatch):
    import pytest

    for index in range(3):  # each shard gets ports (seen in CI: by parity, one never did)
        monkeypatch.setenv("MLCICD_PORT_SHARD", f"{index}/3")
        assert {free_port("127.0.0.1") // 2 % 3 for _ in range(100)} == {index}
    for bad in ("3/3", "-1/2", "two", "1/0"):
        monkeypatch.setenv("MLCICD_PORT_SHARD", bad)
        with pytest.raises(ValueError, match="give i/n"):
            free_port("127.0.0.1")
