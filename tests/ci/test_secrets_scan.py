"""make lint's secrets scan (detect-secrets, with the project's baseline) passes on the tracked files
and fails on a file that holds a credential."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def scan(*files: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HOOK), "--baseline", ".secrets.baseline", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tracked_files_pass():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    done = scan(*files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_committed_credential_fails_the_scan(tmp_path):
    leak = (
        ROOT / "tests" / f"leak_{tmp_path.name}.py"
    )  # inside the project: the baseline's paths are relative
    key = "AKIA" + "ZQ3DOLPXKQ7RNVHM"
    password = "S3cr3t-" + "pa55w0rd"  # pragma: allowlist secret
    leak.write_text(f'AWS_ACCESS_KEY_ID = "{key}"\ndb = "postgresql://app:{password}@db/app"\n')
    try:
        done = scan(str(leak.relative_to(ROOT)))
    finally:
        leak.unlink()
    assert done.returncode == 1
    assert "AWS Access Key" in done.stdout and "Basic Auth Credentials" in done.stdout
