"""The docs stay true to the code: the generated tables, the module map, every link and path they name."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from mlcicd import settings
from mlcicd.cli import docs, main

ROOT = settings.PROJECT_ROOT
PACKAGE = ROOT / "include" / "mlcicd"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGURATION = ROOT / docs.CONFIGURATION
ARCHITECTURE = ROOT / "docs" / "architecture.md"
NOT_MODULES = {"mlcicd.churn"}  # a model name in security.md's example of names that collide


def module_names() -> set[str]:
    """Every module of the package, as a dotted name (a package by its own name)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub makes for ``page`` (lowercase, punctuation dropped, spaces to hyphens)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", without_code_blocks(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


# (a) The generated tables


def test_the_generated_tables_match_the_code():
    _, drifted = docs.rewrite(CONFIGURATION.read_text())
    assert not drifted, f"{CONFIGURATION}: {drifted} differ from the code: run `make docs`"


def test_the_check_fails_naming_the_drifted_table_and_docs_writes_it_back(tmp_path, capsys):
    text = CONFIGURATION.read_text()
    page = tmp_path / "configuration.md"
    page.write_text(text.replace("| `MLCICD_STATE_DIR` |", "| `MLCICD_STATE_FOLDER` |", 1))
    with pytest.raises(SystemExit) as exited:
        main(["docs", "--check", "--file", str(page)])
    assert exited.value.code == 1
    assert "differ from the code: settings;" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["docs", "--file", str(page)])
    assert exited.value.code == 0 and page.read_text() == text


def test_a_missing_or_unknown_table_is_an_error_naming_it():
    text = CONFIGURATION.read_text()
    start, end = "<!-- generated: monitor-params:start -->", "<!-- generated: monitor-params:end -->"
    without = text[: text.index(start)] + text[text.index(end) + len(end) :]
    with pytest.raises(ValueError, match="monitor-params are missing"):
        docs.rewrite(without)
    with pytest.raises(ValueError, match="no generator for the table"):
        docs.rewrite(text + "<!-- generated: roadmap:start -->\n<!-- generated: roadmap:end -->\n")


def test_load_reads_the_declared_variables_and_no_other(monkeypatch):
    declared = {v.name for v in settings.VARIABLES} | {v.fallback for v in settings.VARIABLES if v.fallback}
    read, getenv = set(), os.getenv
    monkeypatch.setattr(os, "getenv", lambda key, default=None: read.add(key) or getenv(key, default))
    settings.load()
    assert read == declared


def test_settings_names_no_variable_outside_its_table():
    declared = {v.name for v in settings.VARIABLES}
    named = set(re.findall(r"\bMLCICD_[A-Z0-9_]*[A-Z0-9]\b", (PACKAGE / "settings.py").read_text()))
    assert named <= declared, f"not in settings.VARIABLES: {sorted(named - declared)}"


def test_every_variable_the_package_reads_is_documented():
    documented = set(re.findall(r"MLCICD_[A-Z0-9_]+", CONFIGURATION.read_text()))
    named = {
        (name, path.relative_to(ROOT).as_posix())
        for path in PACKAGE.rglob("*.py")
        for name in re.findall(r"[\"'](MLCICD_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text())
    }
    missing = sorted((name, where) for name, where in named if name not in documented)
    assert not missing, f"add these to {CONFIGURATION.relative_to(ROOT)}: {missing}"


# (b) The module map


def module_map() -> set[str]:
    """The modules the architecture page's module map lists (the first column of its tables)."""
    section = ARCHITECTURE.read_text().split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(mlcicd[\w.]*)` \|", section, flags=re.M))


def test_every_module_is_in_the_module_map():
    missing = sorted(MODULES - module_map())
    assert not missing, f"add these modules to the module map in {ARCHITECTURE.relative_to(ROOT)}: {missing}"


def test_the_module_map_names_only_modules_that_exist():
    stale = sorted(module_map() - MODULES)
    assert not stale, (
        f"the module map in {ARCHITECTURE.relative_to(ROOT)} names modules that are gone: {stale}"
    )


def defines(module: str, name: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    return any(
        getattr(node, "name", None) == name
        or any(
            getattr(t, "id", None) == name for t in getattr(node, "targets", [getattr(node, "target", None)])
        )
        for node in tree.body
    )


# The names the package uses as strings: MLflow tags (mlcicd.model_digest, ...) and logger names.
LITERALS = {
    name
    for path in PACKAGE.rglob("*.py")
    for name in re.findall(r"[\"'](mlcicd(?:\.\w+)+)[\"']", path.read_text())
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_dotted_name_in_the_docs_is_a_module_a_tag_or_what_a_module_defines(page):
    names = set(re.findall(r"`(mlcicd(?:\.[A-Za-z_]\w*)+)`", page.read_text())) - NOT_MODULES - LITERALS
    stale = sorted(
        n
        for n in names
        if n not in MODULES and not (n.rpartition(".")[0] in MODULES and defines(*n.rsplit(".", 1)))
    )
    assert not stale, f"{page.name} names modules, tags or functions the package does not have: {stale}"


# (c) Links and paths


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or heading in a Markdown file, does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no such heading in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page):
    assert not broken_links(page), f"{page.name}: {broken_links(page)}"


def test_the_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## From your CI: `python -m mlcicd trigger`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#from-your-ci-python--m-mlcicd-trigger) [top](#title) [web](https://example.com)\n"
        "# Title\n[gone](gone.md) [wrong](other.md#rollouts)\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["gone.md: no such file", "other.md#rollouts: no such heading in other.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_repository_path_the_docs_name_exists(page):
    paths = re.findall(
        r"`((?:include|dags|plugins|tools|tests|benchmarks|docs|\.github|\.ci)/[^`\s]*)`", page.read_text()
    )
    missing = sorted({p for p in paths if not re.search(r"[<*…{]", p) and not (ROOT / p).exists()})
    assert not missing, f"{page.name} names paths that do not exist: {missing}"
