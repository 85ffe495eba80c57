"""What the local and docker targets share: two server slots behind the traffic front.

A deploy starts the new version beside the one serving (its own port or container), checks its
health and smoke test directly, points the front's idle slot at it at weight 0, and only then moves
traffic: all at once (``switch``), in steps (``canary``), or none while a copy of it goes to the
candidate (``shadow``). :meth:`promote` gives the candidate all traffic, drains the old slot and
stops the old server; :meth:`abort` takes the candidate out (weight 0, mirror off) and stops it.
Until ``promote`` returns, the stable version serves every request it served before; a failure
at any point leaves it serving everything.

A subclass says how a server and the front run (a process, a container): see the ``_`` methods.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mlcicd.deploy.base import (
    STAGED_AT,
    STAGED_BY,
    Deployment,
    DeployTarget,
    SmokeTest,
    smoke_test,
    wait_healthy,
)
from mlcicd.deploy.haproxy import SLOTS, Front, SlotConfig
from mlcicd.errors import DeployError
from mlcicd.release import Release
from mlcicd.serving.auth import auth_headers
from mlcicd.settings import Settings

log = logging.getLogger("mlcicd")

FULL = 100  # the weight of a slot that takes all traffic


class FrontedTarget(DeployTarget):
    rollouts = ("switch", "canary", "shadow")
    can_stage = True
    stages_switch = True  # a switch, too, stages the candidate beside the stable version first

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.settings = settings
        self.model_name = model_name
        self.root = settings.deployments_dir / self.name / model_name
        self.state_file = self.root / "front.json"
        self.front = Front(self.root / "front")

    # -- what a subclass provides -------------------------------------------------------------

    def _bind(self) -> str:
        """The front's ``bind`` line."""
        raise NotImplementedError

    def _front_running(self, state: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _start_front(self, state: dict[str, Any]) -> dict[str, Any]:
        """Start the front on the written configuration; return what finds it again."""
        raise NotImplementedError

    def _stop_front(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _start_server(self, release: Release) -> dict[str, Any]:
        """Start ``release``'s server; return its handle with ``host``/``port`` (for the front) and ``url``."""
        raise NotImplementedError

    def _server_alive(self, handle: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _stop_server(self, handle: dict[str, Any]) -> None:
        raise NotImplementedError

    def _server_log(self, handle: dict[str, Any]) -> str:
        return ""

    def _keep(self, handle: dict[str, Any]) -> None:
        """The server now serves all traffic: keep it running (e.g. across a host's restart)."""

    # -- state ----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)
        self._write_config(state)

    def _write_config(self, state: dict[str, Any]) -> None:
        slots = {}
        for role, weight in (
            ("stable", FULL - state.get("weight", 0)),
            ("candidate", state.get("weight", 0)),
        ):
            server = state.get(role)
            if server:
                slots[server["slot"]] = SlotConfig((server["host"], server["port"]), weight)
        shadow = (
            _seen_by_front(state["candidate"]) if state.get("mirror") and state.get("candidate") else None
        )
        self.front.write(self._bind(), slots, shadow, f"{self.name} target, model {self.model_name}")

    def _deployment(self, server: dict[str, Any], state: dict[str, Any]) -> Deployment:
        return Deployment(
            self.name,
            self.endpoint,
            str(server["version"]),
            {
                "slot": server["slot"],
                "server": server.get("url"),
                "image": server.get("image"),
                "release": server.get("release"),
                "rollout": state.get("mode"),
                STAGED_BY: server.get(STAGED_BY),
                STAGED_AT: server.get(STAGED_AT),
            },
        )

    # -- the interface ----------------------------------------------------------------------------

    def current(self) -> Deployment | None:
        """The stable version, if the front and its server are up."""
        state = self._state()
        stable = state.get("stable")
        if not stable or not self._front_running(state) or not self._server_alive(stable):
            return None
        return self._deployment(stable, state)

    def candidate(self) -> Deployment | None:
        state = self._state()
        cand = state.get("candidate")
        return self._deployment(cand, state) if cand and self._server_alive(cand) else None

    def servers(self) -> dict[str, dict[str, Any]]:
        """Role -> {version, url, slot} of the servers behind the front now."""
        state = self._state()
        return {
            r: {k: state[r][k] for k in ("version", "url", "slot")}
            for r in ("stable", "candidate")
            if state.get(r)
        }

    def scrape(self) -> dict[str, dict[str, Any]]:
        """Role -> {version, sources: {url: {text, lost}}}: each server's ``/metrics`` and the requests
        the front lost on its way to it (connection and response errors)."""
        import requests

        stats = self.front.stats()
        out = {}
        for role, server in self.servers().items():
            try:
                text = requests.get(
                    f"{server['url']}/metrics", headers=auth_headers(metrics=True), timeout=5
                ).text
            except requests.RequestException as exc:
                raise DeployError(
                    f"the {role} v{server['version']} did not answer at {server['url']}: {exc}"
                ) from exc
            slot = stats.get(server["slot"], {})
            lost = int(slot.get("eresp") or 0) + int(slot.get("econ") or 0)
            out[role] = {
                "version": str(server["version"]),
                "sources": {server["url"]: {"text": text, "lost": lost}},
            }
        return out

    def traffic(self) -> dict[str, Any]:
        state = self._state()
        return {
            "weight": state.get("weight", 0),
            "mirror": bool(state.get("mirror")),
            "mode": state.get("mode"),
        }

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Zero-downtime switch: stage the new version, then give it all traffic."""
        state = self._state()
        stable = state.get("stable")
        same = (
            stable and str(stable["version"]) == str(release.version) and stable.get("image") == release.image
        )
        if same and self._server_alive(stable):
            if self._front_running(state) and not state.get("candidate"):
                log.info("v%s already serves at %s", release.version, self.endpoint)
                return self._deployment(stable, state)
        self.stage(release, smoke, mode="switch")
        return self.promote(release, smoke)

    def stage(self, release: Release, smoke: SmokeTest, mode: str) -> Deployment:
        """Start ``release`` beside the stable version, health- and smoke-test it directly, and put it
        in the front's idle slot at weight 0. Raises DeployError (the candidate stopped) on failure."""
        state = self._state()
        if state.get("candidate"):
            log.warning(
                "an earlier candidate v%s is still staged: taking it out", state["candidate"]["version"]
            )
            self.abort()
            state = self._state()
        stable = state.get("stable")
        if stable and not self._server_alive(stable):
            log.warning(
                "the stable server of v%s is gone: the new version will take its place", stable["version"]
            )
        self._ensure_front(state)
        server = self._start_server(release)
        used = stable["slot"] if stable else None
        server["slot"] = next(s for s in SLOTS if s != used)
        check = "health check"
        try:
            wait_healthy(
                server["url"],
                release.version,
                self.settings.health_timeout_s,
                lambda: self._server_alive(server),
            )
            check = "smoke test"
            problems = smoke_test(server["url"], smoke)
            if problems:
                raise DeployError("; ".join(problems))
            check = "entry into the front"
            self.front.point(server["slot"], server["host"], server["port"])
        except DeployError as exc:
            server_log = self._server_log(server)
            self._stop_server(server)
            with_stable = (
                f"v{stable['version']} keeps serving at {self.endpoint}" if stable else "nothing serves"
            )
            raise DeployError(
                f"v{release.version} failed its {check} beside the serving version and was stopped; {with_stable}. "
                f"Problems: {exc}" + (f". Server log (end):\n{server_log}" if server_log else "")
            ) from exc
        server.update({STAGED_BY: release.airflow_run_id or None, STAGED_AT: time.time()})
        state = {**self._state(), "candidate": server, "weight": 0, "mirror": False, "mode": mode}
        self._save(state)
        log.info(
            "v%s staged in slot %s at %s (no traffic yet)", release.version, server["slot"], server["url"]
        )
        return self._deployment(server, state)

    def shift(self, percent: int) -> float:
        """Send ``percent`` of requests to the candidate (the rest to the stable version); return the share."""
        state = self._state()
        cand, stable = state.get("candidate"), state.get("stable")
        if not cand:
            raise DeployError("no candidate is staged: nothing to shift traffic to")
        percent = max(0, min(FULL, int(percent)))
        weights = {cand["slot"]: percent}
        if stable:
            weights[stable["slot"]] = FULL - percent
        self.front.weigh(weights)
        self._save({**state, "weight": percent})
        return float(percent)

    def mirror(self, on: bool) -> None:
        """Copy live traffic to the candidate (its answers are logged, never returned)."""
        state = self._state()
        cand = state.get("candidate")
        if on and not cand:
            raise DeployError("no candidate is staged: nothing to mirror traffic to")
        self.front.mirror(_seen_by_front(cand) if on else None)
        self._save({**state, "mirror": on})

    def promote(self, release: Release, smoke: SmokeTest) -> Deployment:
        """All traffic to the staged ``release``; the old version drains and stops; it becomes stable.

        ``smoke`` is not sent again: the candidate passed it when staged, and has not changed since.
        """
        state = self._state()
        cand, stable = state.get("candidate"), state.get("stable")
        if not cand:
            raise DeployError("no candidate is staged: nothing to promote")
        if str(cand["version"]) != str(release.version):
            raise DeployError(f"v{cand['version']} is staged, not v{release.version}: nothing was promoted")
        if not self._server_alive(cand):
            self.abort()
            raise DeployError(
                f"the candidate v{cand['version']} exited before it took all traffic; it was taken out"
            )
        try:  # the call that can fail (a Docker API error) before any traffic moves
            self._keep(cand)
        except Exception as exc:
            raise DeployError(
                f"the candidate v{cand['version']} could not be kept running ({exc}): no traffic moved"
            ) from exc
        if state.get("mirror"):
            self.front.mirror(None)
        weights = {cand["slot"]: FULL}
        if stable:
            weights[stable["slot"]] = 0
        new = {
            **state,
            "stable": cand,
            "candidate": None,
            "weight": 0,
            "mirror": False,
            "previous_version": stable["version"] if stable else None,
        }
        self.front.weigh(weights)
        self._save(new)  # at once: the state never names the old version while the front serves the new
        if stable:
            self.front.retire(stable["slot"])
            self._stop_server(stable)
        log.info("v%s takes all traffic at %s", cand["version"], self.endpoint)
        return self._deployment(cand, new)

    def abort(self) -> None:
        """Take the candidate out: weight 0, mirror off, slot in maintenance, server stopped."""
        state = self._state()
        cand, stable = state.get("candidate"), state.get("stable")
        if not cand:
            return
        if self._front_running(state):
            if stable:
                self.front.weigh({stable["slot"]: FULL, cand["slot"]: 0})
            self.front.mirror(None)
            self.front.retire(cand["slot"])
        self._stop_server(cand)
        self._save({**state, "candidate": None, "weight": 0, "mirror": False})
        log.warning(
            "the candidate v%s was taken out; %s serves everything",
            cand["version"],
            f"v{stable['version']}" if stable else "nothing",
        )

    def stop(self) -> None:
        state = self._state()
        for role in ("candidate", "stable"):
            if state.get(role):
                self._stop_server(state[role])
        self._stop_front(state)
        self.state_file.unlink(missing_ok=True)

    def _ensure_front(self, state: dict[str, Any]) -> None:
        if self._front_running(state) and self.front.answers():
            return
        self._write_config(state)
        handle = self._start_front(state)
        self._save({**state, "front": handle})

    @property
    def prediction_log_dir(self) -> Path:
        return self.settings.predictions_for(self.model_name)


def _seen_by_front(server: dict[str, Any]) -> str:
    """A server's URL from the front (on a Docker network, its address; ``url`` is Airflow's view)."""
    return f"http://{server['host']}:{server['port']}"
