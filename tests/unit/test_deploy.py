from __future__ import annotations

import socket

import pytest

from mlcicd.errors import ConfigError
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


# -- the deploy-target interface (deploy/base.py) ----------------------------------------------------


def test_every_target_is_held_to_the_interface_when_loaded():
    from mlcicd import deploy
    from mlcicd.deploy.base import DeployTarget

    for name in deploy.TARGETS:
        cls = deploy._target_class(name)
        assert issubclass(cls, DeployTarget) and cls.name == name and not cls.__abstractmethods__


def _switch_only():
    from mlcicd.deploy.base import DeployTarget

    class SwitchOnly(DeployTarget):
        name = "switch_only"
        endpoint = "http://127.0.0.1:1"

        def __init__(self, settings, model_name):
            self.settings, self.model_name = settings, model_name

        def current(self):
            return None

        def deploy(self, release, smoke):
            raise AssertionError("not called")

        def stop(self):
            return None

    return SwitchOnly


def test_a_switch_only_target_passes_and_its_staging_members_raise_a_typed_error(tmp_path):
    from mlcicd.deploy.base import check_target_class
    from mlcicd.errors import NotSupported
    from mlcicd.promotion.analysis import Plan
    from mlcicd.promotion.staging import will_stage

    cls = _switch_only()
    check_target_class(cls)
    target = cls(None, "m")
    assert target.candidate() is None  # nothing can be staged, so nothing is
    for call in (lambda: target.shift(10), lambda: target.mirror(True), target.abort, target.scrape):
        with pytest.raises(NotSupported, match="the switch_only target cannot"):
            call()
    with pytest.raises(NotSupported, match="cannot be stopped from here"):
        cls.stop_all(None)
    assert will_stage(target, Plan(mode="switch"), approval=False) is False
    with pytest.raises(ConfigError, match="rollout=canary is not available on the switch_only target"):
        will_stage(target, Plan(mode="canary"), approval=False)
    with pytest.raises(ConfigError, match="approval needs a target that can stage"):
        will_stage(target, Plan(mode="switch"), approval=True)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"current": None}, "current is not implemented"),
        (
            {"rollouts": ("switch", "canary")},
            "offers switch, canary without candidate, stage, promote, abort",
        ),
        ({"rollouts": ("switch", "blue_green")}, "unknown rollouts ['blue_green']"),
        ({"can_stage": True}, "without candidate, stage, promote, abort"),
    ],
)
def test_a_target_that_breaks_the_interface_is_refused_when_loaded(change, says):
    from mlcicd.deploy.base import check_target_class

    base = _switch_only()
    if change == {"current": None}:  # a required member left out: it stays abstract
        members = {k: v for k, v in vars(base).items() if k != "current"}
        broken = type("Broken", base.__bases__, members)
    else:
        broken = type("Broken", (base,), change)
    with pytest.raises(ConfigError, match="breaks the interface") as err:
        check_target_class(broken)
    assert says in str(err.value)
    with pytest.raises(ConfigError, match="is not a DeployTarget"):
        check_target_class(object)
