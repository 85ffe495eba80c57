"""The traffic front of the local and docker targets: HAProxy, driven through its runtime API.

One HAProxy per (target, model) listens on the stable endpoint. Its backend has two server slots,
``a`` and ``b``: one holds the stable version, the other a candidate. Weights, addresses and states
change over the admin socket without a reload, so no connection is ever dropped (a reload would
close idle keep-alive connections). The configuration file is rewritten after each change only so
that a restarted HAProxy comes back as it was.

Shadow traffic: ``shadow.lua`` copies each ``POST /invocations`` (body and ``X-Request-ID``) to the
URL in ``proc.shadow`` from a Lua task, after the request has gone on to the stable slot: the
caller never waits for the shadow or sees its answer.

The front sets ``X-Request-ID`` when a caller did not, so the stable and the shadow server log the
same id, and removes the headers that only the project may send (``X-Mlcicd-Probe`` marks smoke
tests sent directly to a server, ``X-Shadow`` the mirrored copies): a caller cannot hide a request
from the prediction log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlcicd.errors import DeployError
from mlcicd.settings import PROJECT_ROOT

SLOTS = ("a", "b")
BACKEND = "models"
LUA = PROJECT_ROOT / "include" / "haproxy" / "shadow.lua"
MAX_BODY = 1 << 20  # tune.bufsize: a request body is mirrored only if it fits in one buffer
# Connections the front holds at once (beyond them the kernel queues them): each active one may take two
# buffers; in shadow mode each of the mirror's tasks (shadow.lua's MAX_INFLIGHT) holds a body copy and its
# http client's two buffers. The front's container is limited to that, and a base.
MAXCONN = 256
SHADOW_TASKS = 200  # shadow.lua's MAX_INFLIGHT
MEMORY_MB = ((MAXCONN * 2 + SHADOW_TASKS * 3) * MAX_BODY >> 20) + 128

CONFIG = """\
# Written by mlcicd ({what}); changed at run time through admin.sock. Do not edit.
global
    nbthread 2
    maxconn {maxconn}
    stats socket unix@admin.sock mode 600 level admin
    stats timeout 30s
    tune.bufsize {bufsize}
    lua-load shadow.lua
    set-var proc.shadow str({shadow})

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 30s
    timeout queue 5s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response

frontend stable
    bind {bind}
    unique-id-format %[uuid()]
    http-request del-header X-Mlcicd-Probe
    http-request del-header X-Shadow
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    # The shadow copy needs the whole body; a body still missing when this expires gets a 408, so the
    # wait is a client's time to send it (a slow network, or a sender starved of CPU), not a moment.
    http-request wait-for-body time 30s if METH_POST
    http-request lua.shadow if METH_POST {{ path /invocations }}
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    # Lenient on purpose: a server slowed by a busy machine (training beside it) must not be marked
    # down, or with both slots down every caller gets a 503. A dead one is still out within seconds
    # (and a refused connection is retried on the other slot meanwhile).
    timeout check 10s
    default-server check inter 1s fall 5 rise 1
{servers}
"""


@dataclass(frozen=True)
class SlotConfig:
    """What a slot points at and its weight (0-256); ``address`` None: the slot is empty."""

    address: tuple[str, int] | None
    weight: int


def render(bind: str, slots: dict[str, SlotConfig], shadow: str | None, what: str) -> str:
    lines = []
    for name in SLOTS:
        slot = slots.get(name, SlotConfig(None, 0))
        if slot.address is None:
            lines.append(f"    server {name} 127.0.0.1:9 weight 0 disabled")
        else:
            host, port = slot.address
            lines.append(f"    server {name} {host}:{port} weight {slot.weight}")
    return CONFIG.format(
        what=what,
        bind=bind,
        servers="\n".join(lines),
        backend=BACKEND,
        shadow=shadow or "off",
        bufsize=MAX_BODY,
        maxconn=MAXCONN,
    )


def socket_link(directory: Path) -> Path:
    """A short path to ``directory``: a Unix socket path may not exceed 107 bytes, a state folder may."""
    link_dir = Path(tempfile.gettempdir()) / f"mlcicd-{os.getuid()}"
    link_dir.mkdir(mode=0o700, exist_ok=True)
    link = link_dir / hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    if not (link.is_symlink() and os.readlink(link) == str(directory.resolve())):
        tmp = link.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(directory.resolve())
        tmp.replace(link)
    return link


class Front:
    """The runtime API of one front, whose folder holds ``haproxy.cfg``, ``shadow.lua`` and ``admin.sock``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def socket_path(self) -> Path:
        return socket_link(self.dir) / "admin.sock"

    def write(self, bind: str, slots: dict[str, SlotConfig], shadow: str | None, what: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "shadow.lua").write_bytes(LUA.read_bytes())
        tmp = self.dir / "haproxy.cfg.tmp"
        tmp.write_text(render(bind, slots, shadow, what))
        tmp.replace(self.dir / "haproxy.cfg")

    def answers(self) -> bool:
        try:
            self.command("show info")
            return True
        except DeployError:
            return False

    def command(self, cmd: str, timeout_s: float = 5.0) -> str:
        """Send one command on the admin socket; its reply (an error reply raises DeployError)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(str(self.socket_path))
                s.sendall(cmd.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise DeployError(
                f"the traffic front's admin socket {self.socket_path} did not answer: {exc}"
            ) from exc
        reply = b"".join(chunks).decode(errors="replace")
        lowered = reply.lower()
        if any(w in lowered for w in ("unknown command", "no such", "require", "invalid", "not found")):
            raise DeployError(f"the traffic front refused {cmd!r}: {reply.strip()[:300]}")
        return reply

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend, by slot name (and ``BACKEND`` for the backend's own row)."""
        text = self.command("show stat").lstrip("# ")
        return {r["svname"]: r for r in csv.DictReader(io.StringIO(text)) if r.get("pxname") == BACKEND}

    def point(self, slot: str, host: str, port: int, timeout_s: float = 30.0) -> None:
        """Point an idle slot at a server, at weight 0, and wait until its health check says UP.

        The order matters: a slot leaving maintenance counts as up before its first check, so it
        must carry no weight until a check has passed.
        """
        self.command(f"set server {BACKEND}/{slot} state maint")
        self.command(f"set server {BACKEND}/{slot} addr {host} port {port}")
        self.command(f"set server {BACKEND}/{slot} weight 0")
        self.command(f"set server {BACKEND}/{slot} state ready")
        deadline = time.monotonic() + timeout_s
        status = "?"
        while time.monotonic() < deadline:
            status = self.stats().get(slot, {}).get("status", "?")
            if status == "UP":
                return
            time.sleep(0.1)
        raise DeployError(f"the front's health check of slot {slot} ({host}:{port}) says {status}, not UP")

    def weigh(self, weights: dict[str, int]) -> None:
        """Set slot weights; the one gaining traffic first, so that both are never 0 at once."""
        for slot, weight in sorted(weights.items(), key=lambda kv: -kv[1]):
            self.command(f"set server {BACKEND}/{slot} weight {int(weight)}")

    def retire(self, slot: str, timeout_s: float = 30.0) -> None:
        """Drain a slot (no new requests), wait for its requests in flight, then put it in maintenance."""
        self.command(f"set server {BACKEND}/{slot} state drain")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.stats().get(slot, {}).get("scur", "0") not in ("0", ""):
            time.sleep(0.05)
        self.command(f"set server {BACKEND}/{slot} state maint")

    def mirror(self, url: str | None) -> None:
        """Copy live ``/invocations`` requests to ``url`` (None: stop)."""
        value = url or "off"
        if any(ch in value for ch in " ;()\n"):
            raise DeployError(f"not a mirror URL: {value!r}")
        self.command(f"experimental-mode on; set var proc.shadow str({value})")
