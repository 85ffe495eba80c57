"""``docs``: the tables of docs/configuration.md that come from the code, written or checked.

Each table sits between ``<!-- generated: NAME:start -->`` and ``<!-- generated: NAME:end -->``:
``ml_retrain``'s and ``ml_monitor``'s Params (their title, description, default and schema) and the
settings (:data:`mlcicd.settings.VARIABLES`). ``docs`` rewrites them; ``docs --check`` changes nothing
and fails naming each table that no longer matches the code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcicd.names import ExitCode

CONFIGURATION = Path("docs") / "configuration.md"  # under the project folder
BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z0-9-]+):start -->\n)(?P<body>.*?)(<!-- generated: (?P=name):end -->)",
    re.S,
)
BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def register(sub: Any) -> None:
    docs = sub.add_parser(
        "docs",
        help="rewrite the generated tables of docs/configuration.md (Params, settings) from the code",
        description="The tables between '<!-- generated: NAME:start -->' and '<!-- generated: NAME:end -->' "
        "are written from the DAGs' Params and mlcicd.settings. With --check nothing is written, and the "
        "exit status is 1 when a table differs from the code (the message names it).",
    )
    docs.add_argument("--check", action="store_true", help="only compare; exit 1 naming each drifted table")
    docs.add_argument("--file", type=Path, help=f"the page to rewrite (default: {CONFIGURATION})")
    docs.set_defaults(func=docs_command)


def docs_command(args: argparse.Namespace) -> int:
    from mlcicd.settings import PROJECT_ROOT

    path = args.file or PROJECT_ROOT / CONFIGURATION
    try:
        text, drifted = rewrite(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    if args.check:
        if drifted:
            print(
                f"{path}: generated table(s) differ from the code: {', '.join(drifted)}; "
                "run `python -m mlcicd docs` (or `make docs`) and commit the result",
                file=sys.stderr,
            )
            return ExitCode.FAILED
        return ExitCode.OK
    if drifted:
        path.write_text(text)
    print(f"{path}: {'rewrote ' + ', '.join(drifted) if drifted else 'up to date'}")
    return ExitCode.OK


def blocks() -> dict[str, Callable[[], str]]:
    """The generated tables by name, each a function that renders it from the code."""
    from mlcicd.dag import params as dag_params

    return {
        "retrain-params": lambda: params_table(dag_params.retrain_params()),
        "monitor-params": lambda: params_table(dag_params.monitor_params()),
        "settings": settings_table,
        "server-settings": server_settings_table,
    }


def rewrite(text: str) -> tuple[str, list[str]]:
    """``text`` with every generated table rendered again, and the names of those that changed.

    Raises:
        ValueError: a table is missing from ``text``, or ``text`` holds one that nothing generates.
    """
    makers = blocks()
    found = [m["name"] for m in BLOCK.finditer(text)]
    if unknown := sorted(set(found) - set(makers)):
        raise ValueError(f"no generator for the table(s) {', '.join(unknown)} (known: {', '.join(makers)})")
    if missing := [name for name in makers if name not in found]:
        raise ValueError(
            f"the generated table(s) {', '.join(missing)} are missing: add "
            "'<!-- generated: NAME:start -->' and '<!-- generated: NAME:end -->' lines where each goes"
        )
    drifted: list[str] = []

    def render(match: re.Match[str]) -> str:
        body = makers[match["name"]]()
        if body != match["body"]:
            drifted.append(match["name"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(render, text), drifted


def params_table(params: dict[str, Any]) -> str:
    """A Markdown table of Airflow ``Param`` objects: name, default, what it accepts, title and description."""
    rows = ["| param | default | accepts | meaning |", "|---|---|---|---|"]
    for name, param in params.items():
        schema = param.schema
        meaning = f"**{schema.get('title', name)}**. {param.description or ''}".strip()
        rows.append(f"| `{name}` | {_value(param.value)} | {_cell(accepts(schema))} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def accepts(schema: dict[str, Any]) -> str:
    """What a Param's JSON schema accepts, in words: its type or choices, bounds and whether it may be empty."""
    from mlcicd.choices import NAME_PATTERN

    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    enum = schema.get("enum")
    empty = "null" in kinds or (enum is not None and None in enum)
    if enum is not None:
        words = "one of " + ", ".join(f"`{v}`" for v in enum if v is not None)
    else:
        words = " or ".join(k for k in kinds if k != "null")
    if schema.get("pattern") == NAME_PATTERN:
        words = "a name"
    if schema.get("format") == "date-time":
        words += " (ISO 8601 date and time)"
    if bounds := _bounds(schema):
        words += " " + bounds
    if items := schema.get("items"):
        words += f" of {accepts(items)}"
        if "minItems" in schema and "maxItems" in schema:
            words += f", {schema['minItems']} – {schema['maxItems']} items"
    return words + (", or empty" if empty else "")


def _bounds(schema: dict[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{_number(low)} – {_number(high)}"
    parts = [f"{sign} {_number(schema[key])}" for key, sign in BOUNDS if schema.get(key) is not None]
    return ", ".join(parts)


def settings_table() -> str:
    """A Markdown table of the environment variables :func:`mlcicd.settings.load` reads."""
    from mlcicd.settings import VARIABLES

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in VARIABLES:
        name = f"`{var.name}`" + (f" (or `{var.fallback}`)" if var.fallback else "")
        default = var.shown or _value(var.default, empty="(none)")
        rows.append(f"| {name} | {_cell(default)} | {_cell(var.doc)} |")
    return "\n".join(rows) + "\n"


def server_settings_table() -> str:
    """A Markdown table of what the model server reads (:data:`mlcicd.serving.config.SERVER_SETTINGS`),
    but the variables the server sets for its own worker processes."""
    from mlcicd.serving.config import SERVER_SETTINGS

    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for s in (s for s in SERVER_SETTINGS if not s.internal):
        default = _value(s.default, empty="(none)")
        rows.append(f"| `{s.name}` | {_cell(default)} | {_cell(s.kind.allowed)} | {_cell(s.meaning)} |")
    return "\n".join(rows) + "\n"


def _value(value: Any, empty: str = "(empty)") -> str:
    if value is None or value == "" or value == ():
        return empty
    if isinstance(value, str | Path):
        return f"`{value}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{json.dumps(value)}`"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _cell(text: str) -> str:
    """``text`` fit for a table cell: one line, pipes escaped (in code spans too, as GFM wants), and
    ``<`` outside code spans written as ``&lt;`` so that ``<name>`` is not taken for an HTML tag."""
    spans = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(spans))
