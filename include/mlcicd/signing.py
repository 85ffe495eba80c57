"""The installation's signature on what a run reads back from MLflow.

A model version's record (its model files' digest, its image, the digests of the artifacts a later
run trusts: the reference suite and the training sample) is signed with a key that lives in the
deployment's settings, never in MLflow: write access to MLflow or its artifact store is then not
enough to change what a run trusts. HMAC-SHA256 over the record's canonical JSON; the signature
names the key's fingerprint, so that a record signed by another installation (or an old key) says so.

The key: ``MLCICD_SIGNING_KEY`` (at least 32 characters; from a secret store in production), else a
random key generated once in the state folder (``keys/signing.key``, mode 0600), which the embedded
default and the Compose stack share between their processes and MLflow never sees.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from mlcicd.errors import ConfigError

KEY_ENV = "MLCICD_SIGNING_KEY"
MIN_KEY_CHARS = 32
SCHEME = "mlcicd-hmac-sha256-v1"


def key_file(state_dir: Path) -> Path:
    return state_dir / "keys" / "signing.key"


def installation_key(configured: str | None, state_dir: Path, create: bool = True) -> bytes:
    """The signing key: the configured one, else the state folder's (made on first use when ``create``).

    Raises:
        ConfigError: a configured key shorter than :data:`MIN_KEY_CHARS`; no key and ``create`` off.
    """
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ConfigError(
                f"{KEY_ENV} has {len(configured)} characters; use at least {MIN_KEY_CHARS} "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return configured.encode()
    path = key_file(state_dir)
    if not path.exists() and not create:
        raise ConfigError(
            f"no signing key here: {KEY_ENV} is unset and {path} does not exist. Run this where the "
            f"installation's state folder is (MLCICD_STATE_DIR), or set {KEY_ENV} to its key"
        )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".signing.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins: two tasks starting at once end with one key
        except FileExistsError:
            pass
        except (
            OSError
        ):  # a file system without hard links: the first to rename wins, the others keep theirs out
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def fingerprint(key: bytes) -> str:
    """A short, public name for the key (not the key): which key signed a record."""
    return hashlib.sha256(b"mlcicd-key-id\0" + key).hexdigest()[:12]


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: bytes, record: dict[str, Any]) -> str:
    mac = hmac.new(key, SCHEME.encode() + b"\0" + canonical(record), hashlib.sha256).hexdigest()
    return f"{SCHEME}:{fingerprint(key)}:{mac}"


def problem(key: bytes, record: dict[str, Any], signature: str | None) -> str | None:
    """Why ``signature`` does not vouch for ``record`` under ``key`` (None when it does)."""
    if not signature:
        return "has no signature"
    scheme, _, rest = signature.partition(":")
    signer, _, _ = rest.partition(":")
    if scheme != SCHEME:
        return f"has a signature of an unknown kind ({scheme[:40]!r})"
    if signer != fingerprint(key):
        return f"was signed with another key (id {signer[:12]!r}; this installation's key is {fingerprint(key)!r})"
    if not hmac.compare_digest(signature.encode(), sign(key, record).encode()):
        return "does not match its signature: it changed after it was signed"
    return None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
