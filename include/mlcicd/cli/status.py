"""``status``: what a deploy target serves against what ``@champion`` names; ``--repair`` settles it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlcicd.choices import DEFAULT_MODEL_NAME, DEPLOY_TARGETS
from mlcicd.names import ExitCode


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="does what serves match @champion? (exit 1 when not); --repair settles it"
    )
    status.add_argument("--model", default=DEFAULT_MODEL_NAME, help="registered model name")
    status.add_argument(
        "--target", choices=DEPLOY_TARGETS, help="deploy target (default: MLCICD_DEPLOY_TARGET)"
    )
    status.add_argument(
        "--repair", action="store_true", help="finish an interrupted promotion, or deploy the champion again"
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
    from mlcicd import settings as settings_module
    from mlcicd.cli.env import prepare_environment
    from mlcicd.errors import MlcicdError
    from mlcicd.promotion.transaction import reconcile

    settings = settings_module.load()
    prepare_environment(settings)
    try:
        state = reconcile(settings, args.target or settings.deploy_target, args.model, repair=args.repair)
    except Exception as exc:  # MLflow or the target unreachable, a version gone: say it, no traceback
        message = str(exc) if isinstance(exc, MlcicdError) else f"{type(exc).__name__}: {exc}"
        print(json.dumps({"agree": False, "error": message}) if args.json else f"error: {message}")
        return ExitCode.FAILED
    if args.json:
        print(json.dumps(state.to_dict()))
    else:
        print(
            f"{state.model_name} on {state.target}: serving v{state.serving or '-'} at {state.endpoint or '-'}, "
            f"champion v{state.champion or '-'}: {state.state}\n  {state.note}"
        )
    return ExitCode.OK if state.agree else ExitCode.FAILED
