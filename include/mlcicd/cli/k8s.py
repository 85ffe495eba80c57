"""``k8s-rbac``: a model's deploy account for the kubernetes target, as YAML for ``kubectl apply -f -``."""

from __future__ import annotations

import argparse
from typing import Any

from mlcicd.names import ExitCode


def register(sub: Any) -> None:
    rbac = sub.add_parser(
        "k8s-rbac",
        help="print a model's ServiceAccount, Role and RoleBinding for the kubernetes target",
        description="Its deploy pods may then change that model's Deployments and Services, and no "
        "other's, in MLCICD_KUBE_NAMESPACE. Apply it once per model: python -m mlcicd k8s-rbac MODEL | "
        "kubectl apply -f -",
    )
    rbac.add_argument("model", help="registered model name")
    rbac.set_defaults(func=rbac_command)


def rbac_command(args: argparse.Namespace) -> int:
    from mlcicd.choices import NAME_PATTERN, is_name
    from mlcicd.deploy.kubernetes_manifests import render_rbac
    from mlcicd.settings import load

    if not is_name(args.model):
        print(f"error: {args.model!r} is not a model name (it must match {NAME_PATTERN} in full)")
        return ExitCode.USAGE
    print(render_rbac(load(), args.model), end="")
    return ExitCode.OK
