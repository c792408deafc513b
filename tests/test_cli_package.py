"""The command line is one package (`tracegrammar.cli`, one module per command): the library never
imports argparse, the shared helpers are written once, and the renamed flags keep their old
spellings as hidden aliases."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tracegrammar.cli import COMMANDS, build_parser
from tracegrammar.cli.common import resolve_adapter
from tracegrammar.exports import EXPORT_FORMATS
from tracegrammar.grammar import ENCODINGS
from tracegrammar.training.datasets import SAMPLE_FORMATS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tracegrammar"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_cli_package_imports_argparse():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "argparse" in _imports(p) and p.relative_to(PACKAGE).parts[0] != "cli"
    ]
    assert offenders == []


def test_every_command_has_its_module():
    modules = {module for _, _, module, _ in COMMANDS}
    assert modules == {
        "data",
        "generate",
        "infill",
        "train",
        "eval",
        "export",
        "send",
        "bench",
        "workload",
    }
    assert all((PACKAGE / "cli" / f"{m}.py").is_file() for m in modules)


@pytest.mark.parametrize("value", ["none", "None", "NONE"])
def test_adapter_none_in_any_case_is_no_adapter(value):
    assert resolve_adapter(value) is None


def test_adapter_default_and_folder(monkeypatch, tmp_path):
    assert resolve_adapter(str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("TRACEGRAMMAR_ADAPTER", str(tmp_path))
    assert resolve_adapter(None) == str(tmp_path)
    monkeypatch.setenv("TRACEGRAMMAR_ADAPTER", "none")
    assert resolve_adapter(None) is None


def _choices(argv: list[str], dest: str) -> tuple[str, ...]:
    """The choices of the option of `dest` in the sub-parser `argv` leads to."""
    parser = build_parser()
    for word in argv:
        sub = next(a for a in parser._actions if a.dest == "==SUPPRESS==" and a.choices)
        parser = sub.choices[word]  # type: ignore[index]
    (action,) = [a for a in parser._actions if a.dest == dest and a.help != "==SUPPRESS=="]
    return tuple(action.choices or ())


def test_choices_come_from_the_catalogues():
    assert _choices(["generate"], "encoding") == tuple(ENCODINGS)
    assert _choices(["generate"], "format") == EXPORT_FORMATS
    assert _choices(["export"], "format") == EXPORT_FORMATS
    assert _choices(["data", "show"], "encoding") == tuple(ENCODINGS)
    assert _choices(["train"], "sample_format") == SAMPLE_FORMATS


def test_renamed_flags_keep_their_old_spelling():
    p = build_parser()
    base = ["generate", "--service", "S_1", "--out", "x.jsonl"]
    assert p.parse_args(base).encoding == "layer"
    assert p.parse_args([*base, "--fmt", "tabular"]).encoding == "tabular"
    assert p.parse_args([*base, "--encoding", "layer_instruct"]).encoding == "layer_instruct"
    assert p.parse_args(["data", "show", "x", "--format", "tabular"]).encoding == "tabular"
    train = ["train", "--out", "o"]
    assert p.parse_args([*train, "--format", "mix"]).sample_format == "mix"
    assert p.parse_args([*train, "--sample-format", "tabular"]).sample_format == "tabular"
    bench = ["bench", "validity", "--formats", "tabular"]
    assert p.parse_args(bench).encodings == ["tabular"]
    assert p.parse_args(bench[:2]).encodings == ["layer", "tabular"]
