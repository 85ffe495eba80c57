"""Command line: ``python -m mlcicd <command>``; one module per command family.

:mod:`.run` (``run``), :mod:`.project` (``check``, ``init``), :mod:`.rebuild` (``rebuild``), :mod:`.trigger` (``trigger``), :mod:`.local` (``stop``, ``traffic``,
``airflow``), :mod:`.status` (``status``), :mod:`.resign` (``resign``), :mod:`.k8s` (``k8s-rbac``), :mod:`.docs` (``docs``); :mod:`.env` sets up the embedded default, :mod:`.report` prints a run summary.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlcicd.cli import docs, k8s, local, project, rebuild, resign, run, status, trigger
from mlcicd.errors import ConfigError
from mlcicd.names import ExitCode, Outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlcicd", description="mlcicd: ML CI/CD on Airflow")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in (run, project, rebuild, trigger, local, status, resign, k8s, docs):
        family.register(sub)
    args = parser.parse_args(argv)
    try:
        sys.exit(args.func(args))
    except ConfigError as exc:  # a bad setting (MLCICD_*): nothing ran
        if getattr(args, "json", False):
            print(
                json.dumps(
                    {"state": "not_started", "outcome": Outcome.USAGE_ERROR, "error": {"message": str(exc)}}
                )
            )
        else:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
