"""Starting the model server (``python -m mlcicd.serving``): its settings read and checked once, the
bundle verified, then one process, or several worker processes that each load the model once.

The workers are started by uvicorn and read their settings from the environment: :func:`main` writes
there what it decided (the limits fitted to the container, the folders), by the names of :mod:`.config`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlcicd.serving import config
from mlcicd.serving.config import name_of
from mlcicd.serving.limits import fitted_limits, server_workers

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("mlcicd.serving")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def app_from_env() -> FastAPI:
    """The app of one worker process (``uvicorn --factory``): its settings, the model directory among
    them, from the environment that :func:`main` gave it."""
    from mlcicd.serving.server import create_app

    settings = config.read()
    if settings.model_dir is None:
        raise config.SettingError(f"{name_of('model_dir')} is not set: a worker serves the bundle it names")
    return create_app(settings.model_dir, settings.prediction_log_dir, settings=settings)


def check_health(port: int) -> int:
    """The image's HEALTHCHECK: 0 when ``/health`` on this container answers ok."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return 0 if json.load(r).get("status") == "ok" else 1
    except (OSError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> None:
    try:
        settings = config.read()  # a bad setting is refused here, once, not in every worker
    except config.SettingError as exc:
        raise SystemExit(f"mlcicd model server: not starting: {exc}") from None
    parser = argparse.ArgumentParser(prog="python -m mlcicd.serving", description="The model server.")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=settings.model_dir,
        help=f"folder with model/ and release.json (default: {name_of('model_dir')})",
    )
    parser.add_argument("--host", default=settings.host, help=f"(default: {name_of('host')}, else 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=settings.port, help=f"(default: {name_of('port')}, else 5100)"
    )
    parser.add_argument(
        "--prediction-log",
        type=Path,
        default=settings.prediction_log_dir,
        help=f"folder of the prediction log (default: {name_of('prediction_log_dir')}; unset: off)",
    )
    parser.add_argument("--check-health", action="store_true", help="probe this server's /health and exit")
    args = parser.parse_args(argv)
    if args.check_health:
        raise SystemExit(check_health(args.port))
    if args.model_dir is None:
        parser.error(f"--model-dir (or {name_of('model_dir')}) is required")
    from mlcicd.serving.modelfile import UntrustedModel, verified_release

    try:
        verified_release(args.model_dir)
    except (UntrustedModel, OSError, ValueError) as exc:
        raise SystemExit(f"mlcicd model server: not starting: {exc}") from None
    for var in THREAD_VARS:  # before the native libraries start: every thread of the process
        os.environ[var] = str(settings.threads)
    workers = server_workers(settings)
    limits, lowered = fitted_limits(settings, workers)
    if lowered:
        log.warning("%s", lowered)
    import uvicorn

    from mlcicd.serving.server import create_app

    if workers == 1:
        app = create_app(args.model_dir, args.prediction_log, limits, settings)
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        finally:
            app.state.prediction_log.close()
            app.state.shadow_log.close()
        return
    # Several processes, each with the model loaded once; their metrics are merged from files.
    import shutil
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="mlcicd-metrics-")
    workers_env = config.as_environ(
        model_dir=args.model_dir.resolve(),
        prediction_log_dir=args.prediction_log.resolve() if args.prediction_log is not None else None,
        prometheus_multiproc_dir=metrics_dir,
        max_concurrency=limits.max_concurrency,
    )
    for name, value in workers_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        uvicorn.run(
            "mlcicd.serving.start:app_from_env",
            factory=True,
            workers=workers,
            host=args.host,
            port=args.port,
            log_level="warning",
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
