"""The house's shape: every import inside include/mlcicd points down a layer, and none goes in a circle.

Imports inside functions and under TYPE_CHECKING count too: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "include"

# Lower layers never import higher ones; a module may import its own layer (no circles, below).
LAYERS = [
    ["mlcicd", "mlcicd.names", "mlcicd.choices", "mlcicd.serving*"],
    ["mlcicd.errors"],
    [
        "mlcicd.settings",
        "mlcicd.ports",
        "mlcicd.record",
        "mlcicd.summary",
        "mlcicd.kube",
        "mlcicd.synthetic",
        "mlcicd.memory",
        "mlcicd.suite_schema",
        "mlcicd.signing",
    ],
    [
        "mlcicd.data",
        "mlcicd.validation*",
        "mlcicd.training",
        "mlcicd.search*",
        "mlcicd.champion",
        "mlcicd.conf",
        "mlcicd.evaluation",
        "mlcicd.gate",
        "mlcicd.registry",
        "mlcicd.monitoring*",
        "mlcicd.release",
        "mlcicd.promotion.analysis",
        "mlcicd.policy",
        "mlcicd.trust",
    ],
    ["mlcicd.dag*", "mlcicd.plugin*"],
    ["mlcicd.scan.types"],
    ["mlcicd.scan.slices", "mlcicd.scan.robustness", "mlcicd.scan.report"],
    ["mlcicd.scan"],
    ["mlcicd.image*"],
    ["mlcicd.deploy*"],
    ["mlcicd.promotion*"],
    ["mlcicd.boundary", "mlcicd.runparams"],
    ["mlcicd.tasks*"],
    ["mlcicd.client*", "mlcicd.dev*"],
    ["mlcicd.cli*", "mlcicd.__main__"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "mlcicd").rglob("*.py"))}


def layer(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        for m in members:
            if module == m or (m.endswith("*") and (module == m[:-1] or module.startswith(m[:-1] + "."))):
                return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def imports(module: str) -> set[str]:
    """The mlcicd modules that ``module`` imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mlcicd"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlcicd":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found - {module}


def upward(module: str, deps: set[str]) -> list[str]:
    return sorted(d for d in deps if layer(d) > layer(module))


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, set())):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if state.get(d) is None and (found := visit(d, [*path, d])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None and (found := visit(m, [m])):
            return found
    return None


GRAPH = {m: imports(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    assert not upward(module, GRAPH[module]), f"{module} (layer {layer(module)}) imports higher layers"


def test_serving_imports_nothing_else_of_mlcicd():
    """What the model-server image copies is the serving package and mlcicd/__init__.py: nothing more."""
    for module, deps in GRAPH.items():
        if module.startswith("mlcicd.serving"):
            assert all(d.startswith("mlcicd.serving") for d in deps), (module, deps)


def test_no_import_circles():
    assert find_circle(GRAPH) is None


def test_no_module_over_the_size_budget():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 360}
    assert not big, f"split these modules (over 360 lines): {big}"


def test_the_checks_can_fail():
    """The rules see real edges, and flag an upward import and a circle when there is one."""
    assert "mlcicd.boundary" in GRAPH["mlcicd.tasks.retrain"]
    assert upward("mlcicd.training", {"mlcicd.boundary", "mlcicd.errors"}) == ["mlcicd.boundary"]
    circle = find_circle({**GRAPH, "mlcicd.errors": GRAPH["mlcicd.errors"] | {"mlcicd.settings"}})
    assert circle == ["mlcicd.errors", "mlcicd.settings", "mlcicd.errors"]
