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
        "mlcicd.project",
        "mlcicd.project.schema",
        "mlcicd.project.code",
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
        "mlcicd.project.entry",
        "mlcicd.project.check",
        "mlcicd.project.scaffold",
        "mlcicd.rebuild",
    ],
    ["mlcicd.dag*", "mlcicd.plugin*"],
    ["mlcicd.scan.types"],
    ["mlcicd.scan.slices", "mlcicd.scan.robustness", "mlcicd.scan.report"],
    ["mlcicd.scan"],
    ["mlcicd.image*"],
    ["mlcicd.deploy*"],
    ["mlcicd.promotion*"],
    ["mlcicd.boundary", "mlcicd.conf.run"],
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


# -- runtime contexts: what each folder may import ---------------------------------------------------


def airflow_imports(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {n for n in names if n.split(".")[0] == "airflow"}
    return found


def closure(module: str) -> set[str]:
    """``module`` and every mlcicd module it imports, directly or not."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(GRAPH.get(m, ()))
    return seen


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# Where Airflow may be imported: the adapters and what DAG files, the plugin, the dev server and the
# commands load, and the few stage helpers that use an Airflow provider's client (a connection's
# hook, ObjectStoragePath, the KubernetesPodOperator). Stage logic and the model server never do.
AIRFLOW_SIDE = (
    "mlcicd.dag", "mlcicd.plugin", "mlcicd.tasks", "mlcicd.boundary", "mlcicd.cli", "mlcicd.dev",
    "mlcicd.data", "mlcicd.image", "mlcicd.kube", "mlcicd.deploy.kubernetes",
)  # fmt: skip


def test_only_the_airflow_side_imports_airflow():
    offenders = {m: airflow_imports(m) for m in MODULES if airflow_imports(m) and not under(m, *AIRFLOW_SIDE)}
    assert not offenders


def test_task_adapters_import_no_other_adapter():
    """tasks/ wires Airflow's context to plain functions: what two adapters share lives below them."""
    for module, deps in GRAPH.items():
        if under(module, "mlcicd.tasks"):
            assert not {d for d in deps if under(d, "mlcicd.tasks")}, (module, deps)


def test_the_ci_client_needs_only_the_light_modules():
    """What `python -m mlcicd trigger` loads (requirements-trigger.txt: no Airflow, no ML stack)."""
    light = (
        "mlcicd.client",
        "mlcicd.conf",
        "mlcicd.choices",
        "mlcicd.errors",
        "mlcicd.names",
        "mlcicd.summary",
        "mlcicd.search",
        "mlcicd.serving.auth",
        "mlcicd",
    )
    for module in [m for m in MODULES if under(m, "mlcicd.client")]:
        heavy = {m for m in closure(module) if not any(m == x or m.startswith(x + ".") for x in light)}
        assert not {h for h in heavy if h not in ("mlcicd",)}, (module, heavy)


def test_the_plugin_loads_no_stage_logic():
    """The API server and the scheduler load the plugin: report pages and the scheduler guard only."""
    allowed = (
        "mlcicd.plugin",
        "mlcicd.dag.links",
        "mlcicd.settings",
        "mlcicd.names",
        "mlcicd.errors",
        "mlcicd.choices",
        "mlcicd",
    )
    for module in [m for m in MODULES if under(m, "mlcicd.plugin")]:
        assert all(under(m, *allowed) for m in closure(module)), (module, closure(module))


def test_the_dev_server_is_started_only_by_commands():
    for module, deps in GRAPH.items():
        if any(under(d, "mlcicd.dev") for d in deps):
            assert under(module, "mlcicd.cli", "mlcicd.dev"), module


BLOCK = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent here)")
        return None
sys.meta_path.insert(0, Absent())
import {modules}
from mlcicd.cli import main
try:
    main(["trigger", "--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""
HEAVY = (
    "airflow",
    "sklearn",
    "pandas",
    "numpy",
    "mlflow",
    "great_expectations",
    "fastapi",
    "requests",
    "pyarrow",
)


@pytest.mark.parametrize("blocked", [HEAVY, ()], ids=["stack-absent", "control"])
def test_the_ci_client_imports_where_airflow_and_the_ml_stack_are_absent(blocked):
    """In this environment, with the heavy stack made absent: the client and ``trigger --help`` load.
    (tests/e2e/test_trigger.py installs it in a fresh venv as the CI templates do.)"""
    import subprocess
    import sys

    clients = ", ".join(m for m in MODULES if under(m, "mlcicd.client"))
    code = BLOCK.format(blocked=set(blocked), modules=clients)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: python -m mlcicd trigger" in done.stdout


def test_the_absent_stack_check_can_fail():
    import subprocess
    import sys

    code = BLOCK.format(blocked={"airflow"}, modules="mlcicd.dag.params")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "absent here" in done.stderr


# -- no packing: '# fmt: skip' only closes a table ---------------------------------------------------

PROJECT = ROOT.parent
TABLE_LITERALS = (ast.List, ast.Tuple, ast.Dict, ast.Set)


def table_ends(tree: ast.Module) -> set[int]:
    """The last lines of the tables in ``tree``: multi-line literals assigned at module or class level,
    or given to a decorator (pytest's parametrize lists)."""
    ends: set[int] = set()

    def add(node: ast.AST) -> None:
        if isinstance(node, TABLE_LITERALS) and node.end_lineno and node.end_lineno > node.lineno:
            ends.add(node.end_lineno)

    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]
    for scope in scopes:
        for stmt in scope.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                add(stmt.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                for sub in ast.walk(decorator):
                    add(sub)
    return ends


def packed_lines(text: str) -> list[int]:
    """Lines whose '# fmt: skip' does not close a table."""
    import io
    import tokenize

    marked = [
        tok.start[0]
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT and tok.string.strip() == "# fmt: skip"
    ]
    ends = table_ends(ast.parse(text))
    return [line for line in marked if line not in ends]


def python_files() -> list[Path]:
    folders = ("include", "dags", "plugins", "tests", "benchmarks", "tools")
    return [p for f in folders for p in sorted((PROJECT / f).rglob("*.py")) if ".state" not in p.parts]


def test_fmt_skip_only_closes_tables():
    """The size rule counts formatted lines: a long statement is formatted, not packed."""
    packed = {
        str(p.relative_to(PROJECT)): lines for p in python_files() if (lines := packed_lines(p.read_text()))
    }
    assert not packed


def test_the_packing_check_can_fail():
    packed = "def f(x):\n    return g(x, 1,\n             2)  # fmt: skip\n"
    table = "ROWS = [\n    (1, 2),  (3, 4),\n]  # fmt: skip\n"
    assert packed_lines(packed) == [3] and packed_lines(table) == []
