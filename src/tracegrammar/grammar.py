"""The Lark grammars in `grammars/`: loading, composing, per-request instantiation, parsers.

A grammar file is a list of top-level definitions. Files are composed by name: a later file's
definition replaces an earlier one of the same name (that is how `layer_instruct.lark` extends
`layer.lark`, and how a request binds the `p_*` parameter rules). The composed text is read by
Python lark (parsing, hypothesis) and by llguidance (decoding), so both see the same syntax.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from lark import Lark

from .resources import package_data

#: The text encodings: name -> the grammar files it is composed of, in order. Not the trainer's
#: sample formats (`training.datasets.SAMPLE_FORMATS`) nor the export formats
#: (`exports.EXPORT_FORMATS`).
ENCODINGS: dict[str, tuple[str, ...]] = {
    "layer": ("common.lark", "layer.lark"),
    "layer_instruct": ("common.lark", "layer.lark", "layer_instruct.lark"),
    "tabular": ("common.lark", "tabular.lark"),
}
#: Grammars of tasks that are not graph encodings (not a `generate` format): the infilling
#: prompt and answer (`tracegrammar.infill`), a window's graph contexts (`tracegrammar.workloads`).
TASK_GRAMMARS: dict[str, tuple[str, ...]] = {
    "infill": ("common.lark", "infill.lark"),
    "context": ("common.lark", "context.lark"),
}

_DEF_START = re.compile(r"^(?:[?!])?([A-Za-z_][A-Za-z0-9_]*)(?:\.\d+)?\s*:")


class GrammarError(ValueError):
    """A grammar could not be composed or instantiated."""


def grammar_dir() -> Path:
    """`$TRACEGRAMMAR_GRAMMARS`, else the grammars shipped in the package (`grammars/`)."""
    env = os.environ.get("TRACEGRAMMAR_GRAMMARS")
    path = Path(env) if env else package_data("grammars")
    if not (path / "common.lark").is_file():
        raise GrammarError(f"grammar directory {path} has no common.lark")
    return path


def split_definitions(text: str) -> dict[str, str]:
    """Top-level definitions of a grammar text, by name, in order. Comments are dropped."""
    defs: dict[str, str] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("//"):  # full-line comments only
            continue
        match = _DEF_START.match(line)
        if match and not line[0].isspace():
            current = match.group(1)
            defs[current] = line
        elif line.lstrip().startswith("%"):
            defs[line.strip()] = line.strip()
            current = None
        elif current is not None:
            defs[current] += "\n" + line
        else:
            raise GrammarError(f"line outside any definition: {raw!r}")
    return defs


def join_definitions(defs: dict[str, str]) -> str:
    return "\n".join(defs.values()) + "\n"


@cache
def format_definitions(fmt: str) -> tuple[tuple[str, str], ...]:
    files = ENCODINGS.get(fmt) or TASK_GRAMMARS.get(fmt)
    if files is None:
        raise GrammarError(f"unknown format {fmt!r}; known: {', '.join(ENCODINGS)}")
    defs: dict[str, str] = {}
    for name in files:
        defs.update(split_definitions((grammar_dir() / name).read_text()))
    return tuple(defs.items())


def grammar_text(fmt: str, bindings: dict[str, str] | None = None, *, start: str = "start") -> str:
    """The composed grammar of `fmt`, with parameter rules re-bound.

    `bindings` maps a parameter rule name (`p_*`) to its new body, e.g. `{"p_edges": "edge ~ 3"}`.
    `start` picks the rule the grammar starts from (`layer_output` to constrain a model's output).
    """
    defs = dict(format_definitions(fmt))
    for name, body in (bindings or {}).items():
        if not name.startswith("p_") or name not in defs:
            raise GrammarError(f"{fmt}: {name!r} is not a parameter rule of this grammar")
        defs[name] = f"{name}: {body}"
    if start != "start":
        if start not in defs:
            raise GrammarError(f"{fmt}: no rule {start!r} to start from")
        defs["start"] = f"start: {start}"
    return join_definitions(defs)


def lark_literal(text: str) -> str:
    """`text` as a Lark string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@cache
def parser(fmt: str, start: str = "start") -> Lark:
    """A cached LALR parser for the composed grammar (the contextual lexer keeps terminals that
    overlap, such as INT and a 64-hex name, apart by position)."""
    return Lark(grammar_text(fmt), parser="lalr", lexer="contextual", start=start)


@cache
def literal_after(fmt: str, rule: str) -> str:
    """The text `fmt`'s grammar always writes right after `rule` (the string literals that follow
    it, up to the next choice); `rule` must appear in exactly one place."""
    lark = parser(fmt)
    terminals = {t.name: t.pattern for t in lark.terminals}
    places = [
        (r.expansion, i)
        for r in lark.rules
        for i, symbol in enumerate(r.expansion)
        if symbol.name == rule
    ]
    if len(places) != 1:
        raise GrammarError(f"{fmt}: rule {rule!r} appears in {len(places)} places, not one")
    expansion, at = places[0]
    text = ""
    for symbol in expansion[at + 1 :]:
        pattern = terminals.get(symbol.name) if symbol.is_term else None
        if pattern is None or pattern.type != "str":
            break
        text += pattern.value
    return text
