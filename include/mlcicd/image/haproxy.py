"""The docker target's traffic front image: the project's HAProxy on the model servers' base image.

Nothing is downloaded during the build (an engine may have no way out): the context holds the
HAProxy binary the project runs (``tools/haproxy.sh``) and the shared libraries it loads, except the
C library's own, which the base image (Debian bookworm, like the host's HAProxy package) provides.
The tag ends in the context's digest, so the image is built once per HAProxy build and base image.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlcicd.errors import BuildError
from mlcicd.settings import Settings

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("mlcicd")

REPOSITORY = "mlcicd-front"
UID = 10001  # as the model-server image
GLIBC = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libpthread", "libdl.so", "librt.so", "libresolv")

DOCKERFILE = f"""\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
COPY haproxy /opt/haproxy
ENV LD_LIBRARY_PATH=/opt/haproxy/lib
USER {UID}:{UID}
WORKDIR /front
ENTRYPOINT ["/opt/haproxy/bin/haproxy", "-db", "-f", "haproxy.cfg"]
"""


def real_binary(haproxy_bin: str) -> tuple[Path, dict[str, str]]:
    """The ELF binary behind the project's ``haproxy`` (a wrapper that sets LD_LIBRARY_PATH, or a link)."""
    path = Path(shutil.which(haproxy_bin) or haproxy_bin).resolve()
    real = path.with_name("haproxy.real")
    if real.exists():
        return real, {"LD_LIBRARY_PATH": str(path.parent.parent / "lib")}
    return path, {}


def libraries(binary: Path, env: dict[str, str]) -> list[Path]:
    """The shared libraries ``binary`` loads, resolved as ``ldd`` does, without the C library's."""
    try:
        out = subprocess.run(["ldd", str(binary)], env=env, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot list the libraries of {binary} (ldd): {exc}") from exc
    found = []
    for line in out.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if "not found" in rest:
            raise BuildError(f"{binary} needs {name}, which is not on this machine: run `make install`")
        if rest and not name.startswith(GLIBC):
            found.append(Path(rest.split(" (")[0]))
    return found


def context(settings: Settings, dest: Path) -> str:
    """Write the build context into ``dest``; return its digest."""
    binary, env = real_binary(settings.haproxy_bin)
    if not binary.exists():
        raise BuildError(
            f"no HAProxy at {settings.haproxy_bin}: `make install` unpacks one (tools/haproxy.sh)"
        )
    (dest / "haproxy" / "bin").mkdir(parents=True)
    (dest / "haproxy" / "lib").mkdir()
    shutil.copy2(binary, dest / "haproxy" / "bin" / "haproxy")
    for lib in libraries(binary, env):
        shutil.copy2(lib, dest / "haproxy" / "lib" / lib.name)  # follows links: the file, under its soname
    (dest / "Dockerfile").write_text(DOCKERFILE)
    h = hashlib.sha256(settings.base_image.encode() + b"\0")
    for f in sorted(p for p in dest.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def ensure(client: APIClient, settings: Settings) -> str:
    """The front image's reference on the engine, built first if it is not there."""
    from docker.errors import APIError, ImageNotFound

    with tempfile.TemporaryDirectory(prefix="mlcicd-front-") as tmp:
        digest = context(settings, Path(tmp))
        reference = f"{REPOSITORY}:{digest[:12]}"
        try:
            client.inspect_image(reference)
            return reference
        except ImageNotFound:
            pass
        log.info("building the traffic front's image %s from %s", reference, settings.base_image)
        try:
            for chunk in client.build(
                path=tmp,
                tag=reference,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                buildargs={"BASE_IMAGE": settings.base_image},
                labels={"io.mlcicd.role": "front-image"},
            ):
                if "error" in chunk:
                    raise BuildError(
                        f"the front image {reference} did not build: {chunk['error'].strip()} (base image "
                        f"{settings.base_image}: on the engine? tools/docker-engine.sh base makes a local one)"
                    )
        except APIError as exc:
            raise BuildError(
                f"the Docker engine refused the build of {reference}: {exc.explanation or exc}"
            ) from exc
    return reference
