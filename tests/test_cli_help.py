"""Every flag of every command (nested ones too) has a help text, `--help` works for each command,
and the defaults a flag has are shown."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from tracegrammar.cli import build_parser, main


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for the top parser and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = list(_parsers(build_parser()))
COMMANDS = [path for path, _ in PARSERS if path]


def test_every_command_is_walked():
    names = {" ".join(p) for p in COMMANDS}
    assert {"generate", "train", "bench validity", "bench infill", "data stats"} <= names


@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) or "-" for p, _ in PARSERS])
def test_every_argument_has_help(path, parser):
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not (action.help or "").strip():
            missing.append(action.dest)
        if isinstance(action, argparse._SubParsersAction):
            missing += [a.dest for a in action._choices_actions if not (a.help or "").strip()]
    assert not missing, (path, missing)


def test_help_exits_zero_for_every_command(capsys):
    for path in [(), *COMMANDS]:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0, path
        out = capsys.readouterr().out
        assert out.startswith("usage: tracegrammar"), (path, out[:200])


def _help_of(*words: str) -> str:
    parser = dict(PARSERS)[words]
    return " ".join(parser.format_help().split())


def test_defaults_are_shown_once():
    text = _help_of("generate")
    assert "(default: 0.8)" in text and "(default: 50)" in text and "(default: jsonl)" in text
    assert text.count("0.8") == 1  # not "(0.8) (default: 0.8)"
    # no default shown for flags whose default is None or False
    assert "(default: None)" not in text and "(default: False)" not in text
    bench = _help_of("bench", "validity")
    from tracegrammar.evaluation.validity import ValidityOptions

    temperatures = ",".join(str(t) for t in ValidityOptions().temperatures)
    assert f"(default: {temperatures})" in bench  # lists as commas, not "[0.2, 0.5]"
    assert "(default: layer,tabular)" in bench


def test_train_standalone_parser_shows_help(capsys):
    from tracegrammar.cli.train import main as train_main

    with pytest.raises(SystemExit) as exc:
        train_main(["--help"])
    assert exc.value.code == 0
    assert "--epochs" in capsys.readouterr().out
