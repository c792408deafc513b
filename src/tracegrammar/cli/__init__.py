"""`tracegrammar` command line: the parser, `main`, and how failures are reported.

One module per command (`data`, `generate`, `infill`, `workload`, `train`, `eval` (+ `baseline`), `export` (+ `draw`),
`bench`), shared helpers in `common`; a new command is a new module here and one line in
`COMMANDS`. The library never imports argparse: commands turn flags into plain arguments.

Every failure on bad input (an `InputError`: a bad flag, file, constraint or output path; an
`OSError` on a named path) is one line on stderr naming the flag or file and the value, with exit
code 2; flags are checked before torch is imported or a model loaded. Anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from ..errors import InputError, UsageError, os_error_message

#: The CLI's own refusals (kept under this name for callers of earlier versions).
CliError = UsageError

#: (command, help, module under `tracegrammar.cli`, its register function). Each module imports
#: its heavy dependencies only when its command runs.
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("data", "inspect real traces", "data", "register_data"),
    ("generate", "generate call graphs (constrained by default)", "generate", "register_generate"),
    ("infill", "fill the missing values of incomplete graphs", "infill", "register_infill"),
    (
        "workload",
        "a window of traffic: its graph contexts, then each graph",
        "workload",
        "register_workload",
    ),
    ("train", "LoRA fine-tuning on layer samples", "train", "register_train"),
    ("eval", "fidelity metrics of synthetic graphs against real ones", "eval", "register_eval"),
    ("baseline", "fit the probabilistic baseline and sample from it", "eval", "register_baseline"),
    ("export", "convert graphs to another trace format", "export", "register_export"),
    ("send", "send graphs as spans to an OTLP endpoint (OTLP receivers)", "send", "register_send"),
    ("draw", "draw one call graph (PNG or SVG)", "export", "register_draw"),
    ("bench", "benchmarks (validity over the papers' grid; fidelity)", "bench", "register_bench"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(
    func: Callable[[argparse.Namespace], int | None],
    args: argparse.Namespace,
    interrupted: str = "interrupted",
) -> int:
    """Run one command: user errors become one line and exit 2, Ctrl-C exit 130; bugs (any
    other exception) keep their traceback."""
    try:
        return int(func(args) or 0)
    except InputError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.filename is None:  # not about a path the user named: a bug or the machine
            raise
        return _fail(f"{exc.filename}: {os_error_message(exc)}")
    except KeyboardInterrupt:
        print(f"tracegrammar: {interrupted}", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"tracegrammar: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tracegrammar")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from .common import Parser

    p = Parser(
        prog="tracegrammar",
        description="Synthetic microservice call graphs from a grammar-constrained LLM.",
    )
    p.add_argument("--version", action="version", version=f"tracegrammar {version()}")
    sub = p.add_subparsers(
        metavar="COMMAND", required=True, help="the command to run (COMMAND --help: its flags)"
    )
    for name, help_text, module, register in COMMANDS:
        getattr(import_module(f"{__name__}.{module}"), register)(
            sub.add_parser(
                name, help=help_text, description=help_text[:1].upper() + help_text[1:] + "."
            )
        )
    return p
