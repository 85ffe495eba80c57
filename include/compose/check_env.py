"""Refuse to start the Compose stack on weak settings: example values, short secrets, a malformed
Fernet key, an unset state folder. Runs first (service ``check-env``, plain Python, no packages);
every other service waits for it to succeed. Prints every problem with what to set, then exits 1.

    python include/compose/check_env.py            # checks the environment
    python include/compose/check_env.py --env-file .env
"""

from __future__ import annotations

import base64
import binascii
import os
import sys

PLACEHOLDER = "change-me"
# variable -> (minimum length, how to make one)
SECRETS = {
    "POSTGRES_PASSWORD": (16, 'python3 -c "import secrets; print(secrets.token_urlsafe(24))"'),
    "AIRFLOW_ADMIN_PASSWORD": (12, "a password of 12 characters or more"),
    "AIRFLOW_JWT_SECRET": (32, 'python3 -c "import secrets; print(secrets.token_urlsafe(48))"'),
    "AIRFLOW_API_SECRET_KEY": (32, 'python3 -c "import secrets; print(secrets.token_urlsafe(48))"'),
    "MLFLOW_ADMIN_PASSWORD": (12, "a password of 12 characters or more (MLflow refuses shorter)"),
    "MLFLOW_SECRET_KEY": (32, 'python3 -c "import secrets; print(secrets.token_urlsafe(48))"'),
}
# With docker-compose.celery.yaml (it sets CHECK_REDIS_PASSWORD): the broker shares the network the
# model servers join, so it is never open there; the password goes into the broker's URL as it is.
REDIS = ("REDIS_PASSWORD", 24, "python3 -c \"import secrets; print('r' + secrets.token_urlsafe(32))\"")
URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
FERNET = "AIRFLOW_FERNET_KEY"
FERNET_HOW = 'python3 -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
STATE = "MLCICD_HOST_STATE_DIR"


def problems(env: dict[str, str]) -> list[str]:
    found = []
    wanted = {**SECRETS, **({REDIS[0]: REDIS[1:]} if env.get("CHECK_REDIS_PASSWORD") else {})}
    for var, (minimum, how) in wanted.items():
        value = env.get(var, "")
        if not value or PLACEHOLDER in value.lower():
            found.append(f"{var} is {'unset' if not value else 'the example value'}: set it in .env ({how})")
        elif len(value) < minimum:
            found.append(f"{var} has {len(value)} characters; use at least {minimum} ({how})")
    distinct = [env[v] for v in (*wanted, FERNET) if env.get(v)]
    if len(set(distinct)) < len(distinct):
        found.append("two of the secrets have the same value: give each its own")
    redis = env.get("REDIS_PASSWORD", "") if env.get("CHECK_REDIS_PASSWORD") else ""
    if redis.startswith("-"):  # redis-server would read it as an option
        found.append(f"REDIS_PASSWORD starts with '-': redis-server takes it for an option ({REDIS[2]})")
    if set(redis) - URL_SAFE:  # it goes into the broker's URL unencoded
        found.append(
            f"REDIS_PASSWORD has characters a URL would need encoded; use letters, digits, - and _ ({REDIS[2]})"
        )
    key = env.get(FERNET, "")
    try:
        valid = len(base64.urlsafe_b64decode(key.encode())) == 32 and PLACEHOLDER not in key
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        found.append(f"{FERNET} is not a Fernet key (32 url-safe base64 bytes): {FERNET_HOW}")
    state = env.get(STATE, "")
    system = (
        "",
        "/tmp",
        "/var",
        "/home",
        "/root",
        "/etc",
        "/mnt",
        "/media",
        "/srv",
        "/opt",
        "/usr",
        "/var/tmp",
    )
    if not state.startswith("/") or state.rstrip("/") in system:
        found.append(
            f"{STATE} must be an absolute path to a folder of its own, e.g. /srv/mlcicd-state "
            "(created if missing; run records, reports and prediction logs go there)"
        )
    return found


def read_env_file(path: str) -> dict[str, str]:
    env = {}
    for line in open(path, encoding="utf-8").read().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("'\"")
    return env


def main(argv: list[str]) -> int:
    env = read_env_file(argv[argv.index("--env-file") + 1]) if "--env-file" in argv else dict(os.environ)
    found = problems(env)
    if not found:
        print("check-env: the settings are fit to start")
        return 0
    print("check-env: the stack will not start with these settings:", file=sys.stderr)
    for p in found:
        print(f"  - {p}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
