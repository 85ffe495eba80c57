"""The traffic front's configuration, checked by the HAProxy that runs it (``haproxy -c``): its
connections and its container's memory are bounded together (issue 28, finding 6)."""

from __future__ import annotations

import shutil
import subprocess

from mlcicd import settings
from mlcicd.deploy import haproxy as front


def test_the_fronts_connections_are_bounded_and_fit_its_memory(tmp_path):
    text = front.render("127.0.0.1:18080", {"a": front.SlotConfig(("127.0.0.1", 18081), 100)}, None, "test")
    assert f"maxconn {front.MAXCONN}" in text
    assert (front.MAXCONN * 2 + front.SHADOW_TASKS * 3) * front.MAX_BODY <= (front.MEMORY_MB << 20)
    assert f"local MAX_INFLIGHT = {front.SHADOW_TASKS} " in front.LUA.read_text()  # the mirror's own bound
    (tmp_path / "haproxy.cfg").write_text(text)
    shutil.copy(front.LUA, tmp_path / "shadow.lua")
    haproxy = settings.load().haproxy_bin
    checked = subprocess.run(
        [haproxy, "-c", "-f", "haproxy.cfg"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
