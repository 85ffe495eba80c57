"""The ``docker`` deploy target: each version runs as a container of its model-server image.

Deploy = start the new image as a staging container, wait for its health, smoke-test it, then stop
the old container and start the new image on the stable port. A failed health or smoke check
removes the new container and leaves the old one serving; if the new one fails on the stable port,
the old container is started again. Containers are found by their labels, so the state is the
engine's own. Talks to the engine through the Docker provider's hook (its ``docker.APIClient``).

Networking: ``MLCICD_DOCKER_NETWORK=host`` (default) runs the server on the host's network at
``MLCICD_DOCKER_PORT``; any other value is a Docker network to join, with the stable container's
port 8080 published on ``MLCICD_DOCKER_PORT`` and the checks made at ``http://<container>:8080``
(the Compose stack, where Airflow runs in a container on that network).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from mlcicd.deploy.base import Deployment, SmokeTest, smoke_test, wait_healthy
from mlcicd.errors import ConfigError, DeployError
from mlcicd.image.docker import docker_client
from mlcicd.ports import free_port, port_in_use
from mlcicd.release import Release
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("mlcicd")

CONTAINER_PORT = 8080
PREDICTIONS_IN_CONTAINER = "/var/log/mlcicd/predictions"
IMAGE_UID = 10001  # the image's USER


class DockerTarget:
    name = "docker"

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.settings = settings
        self.model_name = model_name
        self.host = settings.local_host
        self.port = settings.docker_port
        self.network = settings.docker_network
        self._client: APIClient | None = None

    @staticmethod
    def stop_all(settings: Settings) -> list[str]:
        return remove_all(settings)

    @property
    def client(self) -> APIClient:
        if self._client is None:
            self._client = docker_client(self.settings, None)
        return self._client

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def current(self) -> Deployment | None:
        c = self._stable(running_only=True)
        if c is None:
            return None
        labels = c["Labels"]
        return Deployment(self.name, self.endpoint, labels["io.mlcicd.model-version"],
                          {"container": c["Names"][0].lstrip("/"), "image": c["Image"]})  # fmt: skip

    def deploy(self, release: Release, smoke: SmokeTest) -> Deployment:
        if not release.image:
            raise ConfigError(
                "the docker target needs the model-server image, and build_image built none; "
                "set MLCICD_IMAGE_BUILDER=docker (or auto)"
            )
        previous = self._stable(running_only=True)
        if previous is None and self.network == "host" and port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is held by something that is not this model's container; "
                "free it or set MLCICD_DOCKER_PORT"
            )
        self._remove_leftovers(release)

        staging_port = free_port(self.host)
        staging = self._run(release, "staging", staging_port)
        try:
            endpoint = self._check_endpoint(staging, staging_port)
            wait_healthy(
                endpoint, release.version, self.settings.health_timeout_s, lambda: self._running(staging)
            )
            problems = smoke_test(endpoint, smoke)
        except DeployError as exc:
            problems = [str(exc)]
        logs = self._logs(staging)
        self._remove(staging)
        if problems:
            still = (
                f"v{previous['Labels']['io.mlcicd.model-version']} keeps serving at {self.endpoint}"
                if previous
                else "nothing was serving before, and nothing serves now"
            )
            raise DeployError(
                f"the image {release.image} failed its checks in a staging container, which was removed; "
                f"{still}. Problems: " + "; ".join(problems) + f". Container log (end):\n{logs}"
            )

        if previous and previous["Image"] == release.image:
            # A retried deploy of the image already serving: it passed its checks again, nothing to switch.
            log.info("v%s (%s) already serves at %s", release.version, release.image, self.endpoint)
            return self.current() or Deployment(self.name, self.endpoint, release.version, {})

        if previous:
            self.client.stop(previous["Id"], timeout=10)
        stable = None
        try:
            stable = self._run(release, "stable", self.port)
            wait_healthy(
                self._check_endpoint(stable, self.port),
                release.version, self.settings.health_timeout_s, lambda: self._running(stable),
            )  # fmt: skip
        except DeployError as exc:
            logs = self._logs(stable) if stable else "(it did not start)"
            if stable:
                self._remove(stable)
            if previous:
                self.client.start(previous["Id"])
            was = previous["Labels"]["io.mlcicd.model-version"] if previous else "(none)"
            raise DeployError(f"{exc}; rolled back to v{was}. Container log (end):\n{logs}") from exc
        if previous:
            self._remove(previous["Id"])
        log.info("container %s serves v%s at %s", stable, release.version, self.endpoint)
        return Deployment(self.name, self.endpoint, release.version,
                          {"container": stable, "image": release.image,
                           "previous_version": previous["Labels"]["io.mlcicd.model-version"] if previous else None})  # fmt: skip

    def stop(self) -> None:
        for c in self._containers():
            self._remove(c["Id"])

    # -- containers -------------------------------------------------------------------------

    def _labels(self, release: Release, role: str) -> dict[str, str]:
        return {"io.mlcicd.model": self.model_name, "io.mlcicd.model-version": str(release.version),
                "io.mlcicd.role": role, "io.mlcicd.airflow-run-id": release.airflow_run_id}  # fmt: skip

    def _containers(self, role: str | None = None, running_only: bool = False) -> list[dict[str, Any]]:
        filters = [f"io.mlcicd.model={self.model_name}"] + ([f"io.mlcicd.role={role}"] if role else [])
        return self.client.containers(all=not running_only, filters={"label": filters})

    def _stable(self, running_only: bool) -> dict[str, Any] | None:
        found = self._containers("stable", running_only)
        return found[0] if found else None

    def _remove_leftovers(self, release: Release) -> None:
        """Staging containers and stopped stable ones left by an interrupted deploy."""
        for c in self._containers():
            if c["Labels"].get("io.mlcicd.role") == "staging" or c["State"] != "running":
                self._remove(c["Id"])

    def _run(self, release: Release, role: str, port: int) -> str:
        """Create and start the container; return its name."""
        from docker.errors import APIError, ImageNotFound

        safe = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in self.model_name)
        # The image's tag ends in its context digest: two builds of one version get two names.
        digest = str(release.image).rsplit("-", 1)[-1][:12]
        name = f"mlcicd-{safe}-v{release.version}-{digest}" + ("-staging" if role == "staging" else "")
        binds: dict[str, dict[str, str]] = {}
        env = {"PORT": str(port if self.network == "host" else CONTAINER_PORT)}
        if self.network == "host":  # on the host's network, listen where the target says, not on 0.0.0.0
            env["HOST"] = self.host
        user = None
        if role == "stable":  # only live traffic is logged, not the staging smoke test
            log_dir = self.settings.predictions_for(self.model_name)
            log_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(log_dir, IMAGE_UID, IMAGE_UID)
            else:  # the container writes as this user, so the files stay ours
                user = f"{os.getuid()}:{os.getgid()}"
            binds[str(log_dir)] = {"bind": PREDICTIONS_IN_CONTAINER, "mode": "rw"}
            env["MLCICD_PREDICTION_LOG_DIR"] = PREDICTIONS_IN_CONTAINER
        host_config = self.client.create_host_config(
            network_mode=self.network, binds=binds, read_only=True, tmpfs={"/tmp": "size=64m"},
            restart_policy={"Name": "unless-stopped"} if role == "stable" else None,
            port_bindings={CONTAINER_PORT: (self.host, port)} if self.network != "host" else None,
            security_opt=["no-new-privileges"], cap_drop=["ALL"],
        )  # fmt: skip
        try:
            created = self.client.create_container(
                release.image, name=name, environment=env, labels=self._labels(release, role), user=user,
                host_config=host_config, ports=[CONTAINER_PORT] if self.network != "host" else None,
            )  # fmt: skip
            self.client.start(created["Id"])
        except ImageNotFound as exc:
            raise DeployError(
                f"the image {release.image} is not on the Docker engine at {self.settings.docker_url}: "
                "build it first (build_image), or pull it from the registry"
            ) from exc
        except APIError as exc:
            raise DeployError(f"the Docker engine could not start {name}: {exc.explanation or exc}") from exc
        return name  # the engine takes names wherever it takes ids

    def _check_endpoint(self, container: str, port: int) -> str:
        """Where Airflow checks the container: the host port, or its name on the shared network."""
        if self.network == "host":
            return f"http://{self.host}:{port}"
        return f"http://{container}:{CONTAINER_PORT}"

    def _running(self, container: str) -> bool:
        from docker.errors import NotFound

        try:
            return bool(self.client.inspect_container(container)["State"]["Running"])
        except NotFound:
            return False

    def _logs(self, container: str, lines: int = 20) -> str:
        from docker.errors import APIError

        try:
            return self.client.logs(container, tail=lines).decode(errors="replace").strip() or "(empty)"
        except APIError:
            return "(no log)"

    def _remove(self, container: str) -> None:
        from docker.errors import NotFound

        try:
            self.client.remove_container(container, force=True)
        except NotFound:
            pass


def remove_all(settings: Settings) -> list[str]:
    """Remove every mlcicd model container on the engine; return their names."""
    client = docker_client(settings, None)
    removed = []
    for c in client.containers(all=True, filters={"label": ["io.mlcicd.model"]}):
        client.remove_container(c["Id"], force=True)
        removed.append(c["Names"][0].lstrip("/"))
    return removed
