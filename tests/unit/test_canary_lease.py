"""A staged canary is its run's while the run's lease runs: renewed by each analysis poke, so a long
analysis or approval keeps it; a dead run's lapses and the next run may take the candidate out."""

from __future__ import annotations

import time

from mlcicd import deploy
from mlcicd.deploy.base import Deployment
from mlcicd.settings import load


def staged(by: str, ago_s: float) -> Deployment:
    return Deployment("local", "http://x", "7", {"staged_by": by, "staged_at": time.time() - ago_s})


def test_the_lease_the_run_renews_decides_not_the_staging_time(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCICD_STATE_DIR", str(tmp_path))
    settings = load()
    old = staged("run-a", ago_s=10 * 3600)  # staged 10 h ago: past the setting's 4 h
    assert deploy.held_by_another(old, "run-b", settings.rollout_lease_minutes * 60) is None
    deploy.take_lease(settings, "local", "m", "run-a", 600)  # run-a's analysis poked just now
    until = deploy.lease_until(settings, "local", "m", "run-a")
    assert until is not None and deploy.lease_until(settings, "local", "m", "run-b") is None
    held = deploy.held_by_another(old, "run-b", settings.rollout_lease_minutes * 60, until=until)
    assert held and "staged by run run-a" in held and "renewed while it analyses" in held
    assert deploy.held_by_another(old, "run-b", 0, now=until + 1, until=until) is None  # it stopped poking


def test_the_lease_covers_the_approval_and_the_gaps_between_pokes(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCICD_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MLCICD_APPROVAL_TIMEOUT_MINUTES", "600")
    assert deploy.lease_seconds(load(), interval_s=120) == 600 * 60 + 3 * 120 + 600
