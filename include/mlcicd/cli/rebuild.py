"""``mlcicd rebuild MODEL VERSION``: train a version again from its record; exit 0 when the rebuilt
model predicts what the served one does on the recorded holdout (within the project's stated
tolerance), 1 when it does not or the batch or code cannot be had again, 2 when there is no such version."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlcicd.names import ExitCode


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "rebuild", help="retrain a model version from its record and compare its predictions"
    )
    cmd.add_argument("model", metavar="MODEL")
    cmd.add_argument("version", metavar="VERSION")
    cmd.add_argument("--json", action="store_true", help="print one JSON report")
    cmd.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    import warnings

    from mlcicd.cli.env import prepare_environment
    from mlcicd.errors import MlcicdError, UsageError
    from mlcicd.rebuild import rebuild
    from mlcicd.settings import load

    settings = load()
    prepare_environment(settings)
    warnings.filterwarnings("ignore", module="mlflow")
    try:
        report = rebuild(settings, args.model, args.version)
    except UsageError as exc:
        return _fail(args, exc, ExitCode.USAGE)
    except MlcicdError as exc:
        return _fail(args, exc, ExitCode.FAILED)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(render(report))
    return ExitCode.OK if report["match"] else ExitCode.FAILED


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if args.json:
        print(
            json.dumps(
                {"match": False, "error": {"kind": getattr(exc, "kind", "error"), "message": str(exc)}}
            )
        )
    else:
        print(f"error: {exc}", file=sys.stderr)
    return code


def render(r: dict[str, Any]) -> str:
    verdict = (
        "the same predictions"
        if r["exact"]
        else (
            f"within the tolerance ({r['max_difference']:.3g} <= {r['tolerance']:g})"
            if r["match"]
            else "OTHER predictions"
        )
    )
    code = r["code"]
    lines = [
        f"rebuilt {r['model_name']} v{r['version']}: {verdict} on the {r['holdout_rows']} holdout rows ({r['compared']})",
        f"  data   {r['data']['uri']} (digest {r['data']['digest']}, from {r['data']['source']})",
        "  code   "
        + (
            f"{code['project']} at {code['commit'][:12]} (digest {code['digest'][:19]}, from {code['source']})"
            if "digest" in code
            else f"built-in {code['built_in']} (pipeline at {str(code['commit'])[:12]})"
        ),
    ]
    lines += [f"  differs: {d}" for d in r["differences"]]
    if r["libraries"] and r["match"]:
        lines.append(
            "  libraries changed since: "
            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in r["libraries"].items())
        )
    return "\n".join(lines)
