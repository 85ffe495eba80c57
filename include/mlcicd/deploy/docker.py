"""The ``docker`` deploy target: each version runs as a container of its model-server image, behind
a traffic front container (HAProxy, :mod:`mlcicd.image.haproxy`) on the stable port.

As on the local target (:class:`.slots.FrontedTarget`): the new version's container starts beside
the one serving, is health- and smoke-tested directly, then the front moves traffic to it (at once,
in canary steps, or as a mirrored copy), and the old container drains and is removed. A failure at
any point leaves the old container serving everything. The front and the servers are found by
their labels (``io.mlcicd.model``, ``io.mlcicd.role``); which server is in which slot is in
``front.json`` beside the front's configuration. Talks to the engine through the Docker provider's
hook (its ``docker.APIClient``).

Networking: ``MLCICD_DOCKER_NETWORK=host`` (default) runs the front on the host's network at
``MLCICD_DOCKER_PORT`` and each server on a free port; any other value is a Docker network to join:
the front's port 8080 is published on ``MLCICD_DOCKER_PORT``, the front reaches each server at its
address on that network, and the checks are made at ``http://<container>:8080`` (the Compose stack,
where Airflow runs in a container on that network). The front's folder is bind-mounted into its
container, so its admin socket is reached as on the local target.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from mlcicd.deploy import haproxy as front_config
from mlcicd.deploy.base import server_env
from mlcicd.deploy.slots import FrontedTarget
from mlcicd.errors import ConfigError, DeployError
from mlcicd.image import haproxy as front_image
from mlcicd.image.docker import docker_client
from mlcicd.ports import free_port, port_in_use
from mlcicd.release import Release
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("mlcicd")

CONTAINER_PORT = 8080
PREDICTIONS_IN_CONTAINER = "/var/log/mlcicd/predictions"
# The model server's own settings (limits, workers, batching), passed on from where Airflow runs.
FRONT_IN_CONTAINER = "/front"
IMAGE_UID = 10001  # the image's USER


class DockerTarget(FrontedTarget):
    name = "docker"

    def __init__(self, settings: Settings, model_name: str) -> None:
        super().__init__(settings, model_name)
        self.host = settings.local_host
        self.port = settings.docker_port
        self.network = settings.docker_network
        self._client: APIClient | None = None

    @classmethod
    def stop_all(cls, settings: Settings) -> list[str]:
        removed = remove_all(settings)
        for state_file in (settings.deployments_dir / cls.name).glob("*/front.json"):
            state_file.unlink(missing_ok=True)
        return removed

    @property
    def client(self) -> APIClient:
        if self._client is None:
            self._client = docker_client(self.settings, None)
        return self._client

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        super().stop()
        for c in self._containers():  # whatever else is labelled for this model (an older layout's)
            self._remove(c["Id"])

    # -- the front: a container of the front image ------------------------------------------------

    def _bind(self) -> str:
        return f"{self.host}:{self.port}" if self.network == "host" else f"0.0.0.0:{CONTAINER_PORT}"

    def _front_running(self, state: dict[str, Any]) -> bool:
        return bool(state.get("front")) and self._running(state["front"]["container"])

    def _front_listens(self, name: str) -> bool:
        """On the host's network: its port there. On a Docker network: the container's port 8080, by name
        (the published port is on the engine's host, which a container running Airflow does not see)."""
        if self.network == "host":
            return port_in_use(self.host, self.port)
        try:
            return port_in_use(name, CONTAINER_PORT)
        except OSError:  # not resolvable (yet)
            return False

    def _start_front(self, state: dict[str, Any]) -> dict[str, Any]:
        for c in self._containers("stable"):  # served on the stable port before the front existed
            log.warning(
                "removing %s, started on port %s before the traffic front existed: the front takes "
                "the port (a one-time gap)",
                c["Names"][0].lstrip("/"),
                self.port,
            )
            self._remove(c["Id"])
        name = f"mlcicd-{self._safe_name}-front"
        self._remove(name)
        if self.network == "host" and port_in_use(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is held by something that is not this model's front; "
                "free it or set MLCICD_DOCKER_PORT"
            )
        image = front_image.ensure(self.client, self.settings)
        user = self._own_files(self.front.dir)
        host_config = self.client.create_host_config(
            network_mode=self.network,
            read_only=True,
            tmpfs={"/tmp": "size=16m"},
            mem_limit=f"{front_config.MEMORY_MB}m",
            memswap_limit=f"{front_config.MEMORY_MB}m",
            pids_limit=256,
            binds={str(self.front.dir.resolve()): {"bind": FRONT_IN_CONTAINER, "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"},
            port_bindings={CONTAINER_PORT: (self.host, self.port)} if self.network != "host" else None,
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
        )
        labels = {"io.mlcicd.model": self.model_name, "io.mlcicd.role": "front"}
        self._create(image, name, labels, host_config, user=user, env={})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self._running(name):
            if self.front.answers() and self._front_listens(name):
                log.info("traffic front %s (%s) listens at %s", name, image, self.endpoint)
                return {"container": name, "image": image}
            time.sleep(0.1)
        logs = self._logs(name)
        self._remove(name)
        raise DeployError(f"the traffic front container {name} did not start on {self._bind()}:\n{logs}")

    def _stop_front(self, state: dict[str, Any]) -> None:
        if state.get("front"):
            self._remove(state["front"]["container"])

    # -- the model servers ------------------------------------------------------------------------

    def _start_server(self, release: Release) -> dict[str, Any]:
        if not release.image:
            raise ConfigError(
                "the docker target needs the model-server image, and build_image built none; "
                "set MLCICD_IMAGE_BUILDER=docker (or auto)"
            )
        # The image's tag ends in its context digest: two builds of one version get two names.
        digest = str(release.image).rsplit("-", 1)[-1][:12]
        name = f"mlcicd-{self._safe_name}-v{release.version}-{digest}"
        self._remove(name)  # left by an interrupted deploy
        port = free_port(self.host) if self.network == "host" else CONTAINER_PORT
        env = {
            **server_env(release, dict(os.environ)),
            "PORT": str(port),
            "MLCICD_PREDICTION_LOG_DIR": PREDICTIONS_IN_CONTAINER,
        }
        if self.network == "host":  # on the host's network, listen where the target says, not on 0.0.0.0
            env["HOST"] = self.host
        log_dir = self.prediction_log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        user = self._own_files(log_dir)
        host_config = self.client.create_host_config(
            network_mode=self.network,
            read_only=True,
            tmpfs={"/tmp": "size=64m"},
            binds={str(log_dir): {"bind": PREDICTIONS_IN_CONTAINER, "mode": "rw"}},
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],  # restarted by the engine once promoted
            mem_limit=f"{self.settings.docker_memory_mb}m",
            memswap_limit=f"{self.settings.docker_memory_mb}m",
            nano_cpus=int(self.settings.docker_cpus * 1e9),
            pids_limit=self.settings.docker_pids,
        )
        self._create(release.image, name, self._labels(release, "server"), host_config, user=user, env=env)
        if self.network == "host":
            host, url = self.host, f"http://{self.host}:{port}"
        else:  # the front reaches it by address; Airflow, on the same network, by name
            networks = self.client.inspect_container(name)["NetworkSettings"]["Networks"]
            host, url = networks[self.network]["IPAddress"], f"http://{name}:{CONTAINER_PORT}"
        return {
            "version": str(release.version),
            "container": name,
            "host": host,
            "port": port,
            "url": url,
            "image": release.image,
            "release": release.to_dict(),
        }

    def _server_alive(self, handle: dict[str, Any]) -> bool:
        return self._running(handle["container"])

    def _stop_server(self, handle: dict[str, Any]) -> None:
        self._remove(handle["container"])

    def _server_log(self, handle: dict[str, Any]) -> str:
        return self._logs(handle["container"])

    def _keep(self, handle: dict[str, Any]) -> None:
        self.client.update_container(handle["container"], restart_policy={"Name": "unless-stopped"})

    # -- containers -------------------------------------------------------------------------

    @property
    def _safe_name(self) -> str:
        return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in self.model_name)

    def _own_files(self, directory: Any) -> str | None:
        """The ``user`` a container writes ``directory`` as: the image's (the folder is given to it when
        we are root), or ours, so that the files stay ours."""
        if os.geteuid() == 0:
            os.chown(directory, IMAGE_UID, IMAGE_UID)
            return None
        return f"{os.getuid()}:{os.getgid()}"

    def _labels(self, release: Release, role: str) -> dict[str, str]:
        return {
            "io.mlcicd.model": self.model_name,
            "io.mlcicd.model-version": str(release.version),
            "io.mlcicd.role": role,
            "io.mlcicd.airflow-run-id": release.airflow_run_id,
        }

    def _containers(self, role: str | None = None, running_only: bool = False) -> list[dict[str, Any]]:
        filters = [f"io.mlcicd.model={self.model_name}"] + ([f"io.mlcicd.role={role}"] if role else [])
        return self.client.containers(all=not running_only, filters={"label": filters})

    def _create(
        self,
        image: str,
        name: str,
        labels: dict[str, str],
        host_config: dict[str, Any],
        *,
        user: str | None,
        env: dict[str, str],
    ) -> None:
        """Create and start a container (the engine takes its name wherever it takes an id)."""
        from docker.errors import APIError, ImageNotFound

        try:
            created = self.client.create_container(
                image,
                name=name,
                environment=env,
                labels=labels,
                user=user,
                host_config=host_config,
                ports=[CONTAINER_PORT] if self.network != "host" else None,
            )
            self.client.start(created["Id"])
        except ImageNotFound as exc:
            raise DeployError(
                f"the image {image} is not on the Docker engine at {self.settings.docker_url}: "
                "build it first (build_image), or pull it from the registry"
            ) from exc
        except APIError as exc:
            self._remove(name)
            raise DeployError(f"the Docker engine could not start {name}: {exc.explanation or exc}") from exc

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
