"""Which code trains: the project folder's commit, the digest of its content, and whether it is dirty.

The digest is of the files themselves (path and bytes, in path order), so that it names the code
that ran even where git does not (a copied folder, an image): two folders with the same digest hold
the same code. Caches and compiled files are left out; everything else counts, tracked or not.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

UNKNOWN = "unknown"
TAG_PREFIX = "mlcicd.code."  # project, commit, digest, dirty: on the MLflow run and the model version
IGNORED_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = (".pyc", ".pyo")


def digest(root: Path) -> str:
    """``sha256:<hex>`` of the folder's files (relative path and content)."""
    h = hashlib.sha256()
    for path in sorted(files(root)):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{h.hexdigest()}"


def files(root: Path) -> list[Path]:
    """The folder's files that count as its code.

    Raises:
        ProjectError: the folder holds a symbolic link (what it points to could change the code
            unseen by the digest, and would be copied and imported all the same).
    """
    from mlcicd.project import ProjectError

    out = []
    for path in root.rglob("*"):
        if counted(path.relative_to(root).as_posix()):
            if path.is_symlink():
                raise ProjectError(
                    f"{path} is a symbolic link: a project folder holds its code itself, so that its digest "
                    "names what is imported"
                )
            if path.is_file():
                out.append(path)
    return out


def counted(rel: str) -> bool:
    """Whether a path (relative to the project folder) is part of the code: caches and compiled files are not."""
    parts = rel.rstrip("/").split("/")
    return not any(part in IGNORED_DIRS for part in parts) and not rel.endswith(IGNORED_SUFFIXES)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=20, check=True
    ).stdout.strip()


def version(root: Path, name: str) -> dict[str, str]:
    """``{"project", "commit", "digest", "dirty"}``: ``commit`` and ``dirty`` are ``unknown`` outside
    a git checkout; ``dirty`` is ``true`` when the folder differs from its commit (untracked files too)."""
    out = {"project": name, "commit": UNKNOWN, "digest": digest(root), "dirty": UNKNOWN}
    try:
        out["commit"] = git(root, "rev-parse", "HEAD")
        # Ignored files too: they are in the folder, so in its digest, but in no commit.
        status = git(root, "status", "--porcelain", "--untracked-files=all", "--ignored=matching", "--", ".")
        prefix = git(root, "rev-parse", "--show-prefix")
        changed = [line[3:].removeprefix(prefix) for line in status.splitlines()]
        out["dirty"] = str(any(counted(rel) for rel in changed)).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def check_commit(code: dict[str, str], expected: str) -> str | None:
    """Why the code is not at the ``expected`` commit (a full or abbreviated SHA), or None when it is."""
    commit = code["commit"]
    if commit == UNKNOWN:
        return f"the project folder is not a git checkout, so it cannot be shown to be at {expected}"
    if not commit.startswith(expected.lower()) or len(expected) < 7:
        return f"the project's code is at {commit[:12]}, not at {expected[:12]}"
    if code["dirty"] != "false":
        return f"the project's code is at {commit[:12]} with uncommitted changes"
    return None
