"""``mlcicd check DIR`` and ``mlcicd init DIR``: a model project's CI step one, and a project to start from.

Exit status of ``check``: 0 every step passed; 2 the project file; 3 the unit tests; 4 the fit on a
sample; 5 the serving round trip (the first step that failed). ``init``: 0 written, 2 nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from mlcicd.names import ExitCode


def register(sub: Any) -> None:
    check = sub.add_parser(
        "check", help="check a model project: its file, unit tests, a fit, the serving round trip"
    )
    check.add_argument("folder", metavar="DIR", help="the project's folder (holding mlcicd.toml)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=check_command)
    init = sub.add_parser("init", help="scaffold a model project that passes check and trains as it is")
    init.add_argument("folder", metavar="DIR", help="the folder to write it to (made if missing)")
    init.add_argument("--model", help="the registered model's name (default: from the folder's name)")
    init.set_defaults(func=init_command)


def check_command(args: argparse.Namespace) -> int:
    from mlcicd.cli.env import prepare_environment
    from mlcicd.project.check import check
    from mlcicd.settings import load

    settings = load()
    prepare_environment(settings)
    warnings.filterwarnings("ignore", module="mlflow")  # its schema hints, for a model nobody serves

    def report(step: Any) -> None:
        if not args.json:
            mark = "✓" if step.ok else "✗"
            print(f"  {mark} {step.name:<20} {step.seconds:>6.1f} s  {step.detail}", flush=True)

    if not args.json:
        print(f"mlcicd check {args.folder}")
    steps = check(args.folder, settings, report)
    failed = next((s for s in steps if not s.ok), None)
    code = failed.exit_code if failed else ExitCode.OK
    if args.json:
        print(
            json.dumps({"ok": failed is None, "exit_code": int(code), "steps": [s.to_dict() for s in steps]})
        )
    elif failed is None:
        print("every step passed: the project is ready to be triggered")
    return int(code)


def init_command(args: argparse.Namespace) -> int:
    from mlcicd.project import ProjectError
    from mlcicd.project.scaffold import init

    folder = Path(args.folder)
    try:
        written = init(folder, args.model)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"wrote a model project to {folder}:")
    for path in written:
        print(f"  {path.relative_to(folder)}")
    print(f"next: python -m mlcicd check {folder}   then   python -m mlcicd run --project {folder}")
    return ExitCode.OK
