"""``mlcicd trigger``: start ``ml_retrain`` on an Airflow server through its REST API (for CI);
``approve`` / ``reject``: answer a rollout's approval there."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from mlcicd.cli.env import parse_conf
from mlcicd.cli.report import render
from mlcicd.errors import TriggerError, UsageError
from mlcicd.names import RETRAIN_DAG, ExitCode, Outcome


def register(sub: Any) -> None:
    trig = sub.add_parser(
        "trigger",
        help="start ml_retrain on an Airflow server through its REST API (for CI)",
        description="Credentials come from MLCICD_AIRFLOW_USERNAME / MLCICD_AIRFLOW_PASSWORD "
        "(or MLCICD_AIRFLOW_TOKEN). Exit status: 0 promoted, 1 error or timeout, 2 bad usage or "
        "params, 3 batch refused (data), 4 deployment rolled back, 5 rejected by the gate.",
    )
    trig.add_argument(
        "--url", default=os.getenv("MLCICD_AIRFLOW_URL"), help="Airflow base URL (or MLCICD_AIRFLOW_URL)"
    )
    trig.add_argument("--dag", default=RETRAIN_DAG, help="DAG id (default: %(default)s)")
    trig.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a DAG param (repeatable)"
    )
    trig.add_argument(
        "--sha", help="commit the run belongs to (default: GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT, git)"
    )
    trig.add_argument(
        "--wait", action="store_true", help="follow the run to its end and exit with its verdict"
    )
    trig.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default: %(default)s)")
    trig.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    trig.add_argument("--unpause", action="store_true", help="unpause the DAG if it is paused")
    trig.add_argument(
        "--accept-rejection", action="store_true", help="exit 0 when the gate rejects the model"
    )
    trig.add_argument(
        "--mlflow-url", default=os.getenv("MLCICD_MLFLOW_URL"), help="MLflow UI base URL, for links"
    )
    trig.add_argument("--json", action="store_true", help="print one JSON summary object at the end")
    trig.set_defaults(func=run_trigger)
    for name, approve in (("approve", True), ("reject", False)):
        answer = sub.add_parser(
            name,
            help=f"{name} the rollout a run of ml_retrain waits on (approval=true), through the REST API",
            description="Answers the run's approve_rollout task, as the UI's Required Actions does. "
            "Credentials as for trigger. Exit status: 0 answered, 1 already answered or an error, "
            "2 no such run or no approval waiting.",
        )
        answer.add_argument("run_id", help="the run's id (printed by trigger, shown in the UI)")
        answer.add_argument(
            "--url", default=os.getenv("MLCICD_AIRFLOW_URL"), help="Airflow base URL (or MLCICD_AIRFLOW_URL)"
        )
        answer.add_argument("--dag", default=RETRAIN_DAG, help="DAG id (default: %(default)s)")
        answer.add_argument("--json", action="store_true", help="print one JSON object")
        answer.set_defaults(func=run_answer, approve=approve)


def run_trigger(args: argparse.Namespace) -> int:
    from mlcicd.client import trigger

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    try:
        if not args.url:
            raise TriggerError("no Airflow URL: pass --url or set MLCICD_AIRFLOW_URL", ExitCode.USAGE)
        options = trigger.TriggerOptions(
            url=args.url,
            dag_id=args.dag,
            conf=parse_conf(args.conf),
            sha=args.sha,
            wait=args.wait,
            timeout_s=args.timeout,
            poll_s=args.poll,
            unpause=args.unpause,
            accept_rejection=args.accept_rejection,
            mlflow_url=args.mlflow_url,
        )
        code, summary = trigger.trigger(options, out=say)
    except UsageError as exc:
        code, summary = (
            ExitCode.USAGE,
            {"state": "not_started", "outcome": Outcome.USAGE_ERROR, "error": {"message": str(exc)}},
        )
    except TriggerError as exc:
        code, summary = (
            exc.exit_code,
            {"state": "unknown", "outcome": Outcome.ERROR, "error": {"message": str(exc)}},
        )
    if args.json:
        print(json.dumps(summary, default=str))
    elif summary.get("outcome") in (Outcome.ERROR, Outcome.USAGE_ERROR):
        print(f"error: {summary['error']['message']}", file=sys.stderr)
    elif args.wait:
        print(render(summary))
    return code


def run_answer(args: argparse.Namespace) -> int:
    from mlcicd.client import approvals

    try:
        if not args.url:
            raise TriggerError("no Airflow URL: pass --url or set MLCICD_AIRFLOW_URL", ExitCode.USAGE)
        done = approvals.answer_approval(args.url, args.run_id, args.approve, args.dag)
    except TriggerError as exc:
        print(
            json.dumps({"error": {"message": str(exc)}}) if args.json else f"error: {exc}",
            file=sys.stdout if args.json else sys.stderr,
        )
        return exc.exit_code
    if args.json:
        print(json.dumps(done))
    else:
        verb = "approved" if args.approve else "rejected"
        print(
            f"{verb} the rollout of run {done['run_id']} (as {done['by']}, {done['at']})\n  {done['airflow_url']}"
        )
    return ExitCode.OK
