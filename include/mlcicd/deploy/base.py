"""What every deploy target shares: the interface, the smoke test, the health wait.

A target deploys a :class:`~mlcicd.release.Release` so that either the new version serves at the
stable endpoint after passing its smoke test, or :class:`~mlcicd.errors.DeployError` is raised and
the previous version still serves (rollback). This module knows no target.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from mlcicd.errors import ConfigError, DeployError, NotSupported
from mlcicd.release import Release
from mlcicd.settings import Settings


@dataclass(frozen=True)
class SmokeTest:
    """Sample rows (MLflow ``dataframe_split`` payload) and the predictions made offline for them."""

    payload: dict[str, Any]
    expected: list[Any]

    @classmethod
    def of(cls, rows: Any, expected: Any) -> SmokeTest:
        """From a frame of feature rows and their offline predictions."""
        import json

        return cls(
            payload={"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
            expected=[v.item() if hasattr(v, "item") else v for v in expected],
        )


@dataclass(frozen=True)
class Deployment:
    target: str
    endpoint: str
    version: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A staged candidate belongs to the run that staged it: its Deployment's detail names the run and when.
STAGED_BY, STAGED_AT = "staged_by", "staged_at"


def held_by_another(
    candidate: Deployment | None,
    run_id: str | None,
    lease_s: float,
    now: float | None = None,
    until: float | None = None,
) -> str | None:
    """Why ``run_id`` may not replace the staged ``candidate``: another run staged it and its lease runs
    (``until``, renewed by that run's analysis; else ``lease_s`` from the staging). None when there is no
    candidate, it is this run's, its run is unknown (staged before runs were recorded) or its lease ran
    out (the run died)."""
    if candidate is None:
        return None
    owner, since = candidate.detail.get(STAGED_BY), candidate.detail.get(STAGED_AT)
    if not owner or owner == run_id or since is None:
        return None
    now = time.time() if now is None else now
    ends = until if until is not None else float(since) + lease_s
    if now > ends:
        return None
    return (
        f"v{candidate.version} is staged by run {owner} ({(now - float(since)) / 60:.0f} min ago; its lease runs "
        f"{(ends - now) / 60:.0f} more min, renewed while it analyses, MLCICD_ROLLOUT_LEASE_MINUTES): that run "
        "analyses, promotes or takes it out. Start this run again when it has finished"
    )


def own_candidate(candidate: Deployment | None, run_id: str, version: str | None = None) -> Deployment:
    """The staged candidate, when this run staged it (of ``version``, when given).

    Raises:
        DeployError: none is staged, or another run's is: nothing was changed.
    """
    if candidate is None:
        raise DeployError(
            "the staged candidate is gone (stopped, or taken out by another run): nothing to act on"
        )
    owner = candidate.detail.get(STAGED_BY)
    if (owner and owner != run_id) or (version is not None and candidate.version != str(version)):
        raise DeployError(
            f"the staged candidate is v{candidate.version} of run {owner or '(unknown)'}, not this run's"
            f"{f' v{version}' if version else ''}: it was left as it is. Another run of the model replaced "
            "this run's candidate; this run does not judge or promote it"
        )
    return candidate


class DeployTarget(abc.ABC):
    """The interface of a deploy target; :func:`check_target_class` holds each target to it when loaded.

    Required: ``name``, ``endpoint``, :meth:`current`, :meth:`deploy`, :meth:`stop`. A target that
    offers staged rollouts (``rollouts`` beyond ``switch``, or approval) sets ``can_stage`` and
    implements the staging members; on one that does not, they raise :class:`NotSupported`, as
    MLflow's deployment clients do for what a plug-in cannot do. Every target instance is for one
    model (``model_name``) and serves it at one stable ``endpoint``.
    """

    name: ClassVar[str]
    rollouts: ClassVar[tuple[str, ...]] = ("switch",)  # what the rollout param may ask of it
    can_stage: ClassVar[bool] = False  # a candidate can serve beside the stable version
    stages_switch: ClassVar[bool] = False  # a switch, too, stages the candidate first (then promotes)
    settings: Settings
    model_name: str

    @classmethod
    def preflight(cls, settings: Settings) -> None:
        """Checks the target can make before any work is spent (its connection is defined, say)."""
        return None  # nothing to check by default

    @classmethod
    def stop_all(cls, settings: Settings) -> list[str]:
        """Stop what the target serves for every model; return the models' names."""
        raise NotSupported(f"the {cls.name} target cannot be stopped from here; see docs/targets.md")

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """The stable address the model is served at."""

    @abc.abstractmethod
    def current(self) -> Deployment | None:
        """What serves at the stable endpoint now, or None."""

    @abc.abstractmethod
    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Serve ``release`` at the stable endpoint, or raise DeployError leaving the old one serving."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving."""

    # -- staged rollouts (can_stage) ------------------------------------------------------------

    def candidate(self) -> Deployment | None:
        """The version staged beside the stable one, or None (always None where nothing can be staged)."""
        return None

    def stage(self, release: Release, smoke: SmokeTest, mode: str) -> Deployment:
        """Start ``release`` beside the stable version, smoke-tested, with no traffic yet."""
        raise self._cannot("stage a candidate beside the stable version")

    def shift(self, percent: int) -> float:
        """Give the candidate ``percent`` of live traffic; return the share it got."""
        raise self._cannot("split traffic")

    def mirror(self, on: bool) -> None:
        """Copy live traffic to the candidate (shadow), or stop copying."""
        raise self._cannot("mirror traffic")

    def promote(self, release: Release, smoke: SmokeTest) -> Deployment:
        """Give the staged candidate all traffic and stop the old version."""
        raise self._cannot("promote a staged candidate")

    def abort(self) -> None:
        """Take the staged candidate out; the stable version serves everything."""
        raise self._cannot("take a staged candidate out")

    def servers(self) -> dict[str, dict[str, Any]]:
        """Role (stable, candidate) -> what that server is (version, address)."""
        raise self._cannot("list its servers")

    def traffic(self) -> dict[str, Any]:
        """How traffic is split now (the candidate's weight)."""
        raise self._cannot("report its traffic split")

    def scrape(self) -> dict[str, dict[str, Any]]:
        """Role -> version and each source's ``/metrics`` text (and requests lost before it)."""
        raise self._cannot("report its servers' metrics")

    def _cannot(self, what: str) -> NotSupported:
        return NotSupported(f"the {self.name} target cannot {what}")


# What staging needs, and what each rollout needs beyond it (analysis reads servers, traffic and metrics).
STAGING = ("candidate", "stage", "promote", "abort")
ANALYSED = ("servers", "traffic", "scrape")
NEEDS = {"switch": (), "canary": (*ANALYSED, "shift"), "shadow": (*ANALYSED, "mirror")}


def check_target_class(cls: type) -> None:
    """Raise ConfigError unless ``cls`` implements the interface it claims: every required member, and
    the staging members when it offers rollouts beyond ``switch`` (or ``can_stage``)."""
    from mlcicd.choices import ROLLOUTS

    where = f"{cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, DeployTarget)):
        raise ConfigError(f"{where} is not a DeployTarget (mlcicd.deploy.base)")
    problems = [f"{m} is not implemented" for m in sorted(getattr(cls, "__abstractmethods__", ()))]
    if not isinstance(getattr(cls, "name", None), str):
        problems.append("it has no name")
    if unknown := [r for r in cls.rollouts if r not in ROLLOUTS]:
        problems.append(f"it offers unknown rollouts {unknown}")
    if cls.can_stage or set(cls.rollouts) - {"switch"}:
        needed = [*STAGING, *(m for r in cls.rollouts for m in NEEDS.get(r, ()))]
        missing = [m for m in dict.fromkeys(needed) if getattr(cls, m) is getattr(DeployTarget, m)]
        if missing or not cls.can_stage:
            offers = ", ".join(cls.rollouts)
            problems.append(f"it offers {offers} without {', '.join(missing) or 'can_stage'}")
    if problems:
        raise ConfigError(f"the deploy target {where} breaks the interface: {'; '.join(problems)}")


# What a model server is given of the environment: its own settings, nothing of Airflow's (the
# Fernet key, the database URI, cloud credentials stay with the task that starts it).
SERVER_PREFIXES = ("MLCICD_SERVER_", "MLCICD_PREDICTION_LOG_")  # serving.config reads these
PROCESS_BASICS = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "TZ")


def server_env(
    release: Release, environ: dict[str, str], *, process: bool = False, bundle: Path | None = None
) -> dict[str, str]:
    """The variables a server for ``release`` gets: ``MLCICD_SERVER_*``, ``MLCICD_PREDICTION_LOG_*``,
    the digest its bundle must have, and for a local process (``process``) what Python needs to run,
    with a model project's code from the ``bundle`` first on its path."""
    from mlcicd.release import CODE_DIR
    from mlcicd.serving.modelfile import DIGEST_ENV

    env = {k: v for k, v in environ.items() if k.startswith(SERVER_PREFIXES)}
    if process:
        env.update({k: environ[k] for k in PROCESS_BASICS if k in environ})
        if bundle is not None and (bundle / CODE_DIR).is_dir():
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bundle / CODE_DIR), env.get("PYTHONPATH")]))
    if release.model_digest:
        env[DIGEST_ENV] = release.model_digest
    return env


# Sent by the smoke test straight to a server: it answers, but does not log the rows as live
# traffic. The traffic front removes it from callers' requests.
PROBE_HEADER = "X-Mlcicd-Probe"


def smoke_test(endpoint: str, smoke: SmokeTest, timeout_s: float = 30.0) -> list[str]:
    """Send the sample rows and compare with the offline predictions; return the problems found."""
    import requests

    from mlcicd.serving.auth import auth_headers

    problems: list[str] = []
    probe = {PROBE_HEADER: "smoke", **auth_headers()}
    try:
        r = requests.post(f"{endpoint}/invocations", json=smoke.payload, timeout=timeout_s, headers=probe)
    except requests.RequestException as exc:
        return [f"POST {endpoint}/invocations failed: {exc}"]
    if r.status_code != 200:
        return [f"POST {endpoint}/invocations answered {r.status_code}: {r.text[:300]}"]
    got = r.json().get("predictions")
    if not isinstance(got, list) or len(got) != len(smoke.expected):
        return [f"expected {len(smoke.expected)} predictions, got {str(got)[:200]}"]
    mismatched = [i for i, (a, b) in enumerate(zip(got, smoke.expected, strict=True)) if a != b]
    if mismatched:
        problems.append(
            f"{len(mismatched)} of {len(got)} predictions differ from the offline ones "
            f"(rows {mismatched[:10]}; served {[got[i] for i in mismatched[:5]]}, "
            f"offline {[smoke.expected[i] for i in mismatched[:5]]})"
        )
    bad = requests.post(
        f"{endpoint}/invocations", json={"dataframe_split": {"columns": ["?"], "data": [[1]]}}, headers=probe
    )
    if not 400 <= bad.status_code < 500:
        problems.append(f"a request with wrong columns answered {bad.status_code}, expected a 4xx")
    return problems


def wait_healthy(
    endpoint: str, version: str, timeout_s: float, alive: Callable[[], bool] | None = None
) -> None:
    """Wait until ``/health`` reports ``version``; ``alive()`` returning False aborts early."""
    import requests

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise DeployError(f"the server for v{version} exited before it became healthy")
        try:
            r = requests.get(f"{endpoint}/health", timeout=2)
            if r.status_code == 200 and str(r.json().get("model_version")) == str(version):
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise DeployError(f"{endpoint}/health did not report v{version} within {timeout_s:.0f} s (last: {last})")
