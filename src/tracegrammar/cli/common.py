"""Helpers every command shares, written once: reading graphs, resolving the adapter, checking
flags and paths, and the comma-separated flag parsers.

Nothing here imports torch at module level: commands check their flags with these helpers before
any model is loaded.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..constraints import ConstraintError, Constraints, check_request_size
from ..errors import UsageError
from ..types import CallGraph

#: The value of `--adapter` that means "the bare base model", in any case (`none`, `None` ...).
NO_ADAPTER = "none"
START_HELP = (
    "when the first graph starts: an ISO 8601 time (no zone: UTC) or now; later graphs keep "
    "their offsets from it (default: each graph's own timestamp, else 2024-01-01T00:00:00Z)"
)


def start_ns(value: str | None, flag: str = "--start") -> int | None:
    """Epoch ns (whole ms) of a `--start` value, or None when the flag is not given; bad text
    raises UsageError naming the flag and the value (`tracegrammar.times`)."""
    if value is None:
        return None
    from ..times import epoch_ms, parse_time

    return epoch_ms(parse_time(value, flag)) * 1_000_000


def register_ray_and_send(
    p: argparse.ArgumentParser,
    ray_help: str,
    rate_help: str = "traces per second when sending, e.g. 50/s (default: at once)",
) -> None:
    """`--ray [ADDRESS]`, `--workers`, `--actors-per-gpu`, `--send URL`, `--protocol` and
    `--rate`: the flags `generate` and `workload` share (their checks: `check_ray_and_send`)."""
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help=ray_help)
    p.add_argument("--workers", type=int, default=2, help="Ray actors, one model each")
    p.add_argument(
        "--actors-per-gpu", type=int, default=1, metavar="K",
        help="with --ray on GPUs: K actors share each GPU (the engine's per-row work is Python "
        "on one core, so several actors keep a GPU busier); default 1",
    )  # fmt: skip
    p.add_argument(
        "--send",
        metavar="URL",
        help="after writing, send the valid graphs' spans to this OTLP endpoint",
    )
    p.add_argument(
        "--protocol", choices=("http", "grpc"), default="http", help="OTLP transport for --send"
    )
    p.add_argument("--rate", help=rate_help)


def check_ray_and_send(args: argparse.Namespace) -> None:
    """`--ray`, `--workers`, `--send` and `--rate`, before torch is imported: a bad value, or a
    missing extra (named with the pip command that installs it), is one line."""
    import importlib.util

    from ..errors import MissingExtraError

    if args.ray is not None:
        if args.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {args.workers}")
        if args.actors_per_gpu < 1:
            raise UsageError(f"--actors-per-gpu must be >= 1, got {args.actors_per_gpu}")
        if importlib.util.find_spec("ray") is None:
            raise MissingExtraError("--ray", "ray")
    if args.send is not None:
        from urllib.parse import urlparse

        parsed = urlparse(args.send)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"--send must be an http:// or https:// URL, got {args.send!r}")
        if importlib.util.find_spec("opentelemetry.sdk") is None:
            raise MissingExtraError("--send", "send")
    if args.rate is not None:
        from ..exports.send import parse_rate

        try:
            parse_rate(args.rate)
        except ValueError as exc:
            raise UsageError(f"--rate: {exc}") from None


def read_graphs(path: str | Path) -> Iterator[CallGraph]:
    """Graphs from a `.jsonl` file (our interchange format) or from real traces (`load_traces`)."""
    if str(path).endswith(".jsonl"):
        from ..io import read_jsonl

        return read_jsonl(path)
    from ..traces import load_traces

    return load_traces(path)


def read_all(paths: Sequence[str | Path]) -> list[CallGraph]:
    """Every graph of every path, in order."""
    return [g for p in paths for g in read_graphs(p)]


def is_no_adapter(value: str | None) -> bool:
    return value is not None and value.lower() == NO_ADAPTER


def resolve_adapter(value: str | None) -> str | None:
    """The adapter folder an `--adapter` value names: `None` (flag not given) is the default
    adapter (`$TRACEGRAMMAR_ADAPTER` or the shipped one), `none` in any case is no adapter."""
    if is_no_adapter(value):
        return None
    if value is not None:
        return value
    from ..decoding.models import default_adapter_dir  # imports nothing heavy at module level

    default = default_adapter_dir()
    return str(default) if default is not None else None


def model_label(model: str | None, adapter: str | None) -> str:
    """How summaries name a model: the base (default: the embedded one) `+` the adapter folder."""
    from ..decoding.models import DEFAULT_NAME

    return (model or DEFAULT_NAME) + (f"+{Path(adapter).name}" if adapter else "")


def check_dir(flag: str, value: str, marker: str, what: str) -> None:
    """A folder flag must name a folder holding `marker` (a model's config.json, say)."""
    if not (Path(value) / marker).is_file():
        raise UsageError(f"{flag} {value}: not {what} (no {marker})")


def check_model_flags(model: str | None, adapter: str | None) -> None:
    """`--model` and `--adapter`, before anything is loaded."""
    if model is not None:
        check_dir("--model", model, "config.json", "a Hugging Face model directory")
    if adapter is not None and not is_no_adapter(adapter):
        check_dir("--adapter", adapter, "adapter_config.json", "a LoRA adapter directory")


def flag_name(field: str | None) -> str:
    """The flag a `Constraints` field is given with (`num_edges` -> `--num-edges`, `n` -> `-n`,
    `include_calls` -> `--include-call`, given once per call)."""
    if field == "n":
        return "-n"
    if field == "include_calls":
        return "--include-call"
    if field == "format":
        return "--encoding"
    return f"--{(field or 'service').replace('_', '-')}"


def constraints_from_flags(
    service: str | None,
    num_edges: int | None,
    depth: int | None,
    latency: int | None,
    n: int,
    *,
    high_latency: bool = False,
    include_calls: Sequence[str] = (),
    uncommon_call: bool = False,
) -> Constraints:
    """One request from flags, within the documented limits; an error names the flag."""
    try:
        c = Constraints(
            service,  # type: ignore[arg-type]
            num_edges,
            depth,
            latency,
            high_latency=high_latency,
            include_calls=tuple(include_calls),  # type: ignore[arg-type]
            uncommon_call=uncommon_call,
        )
        check_request_size(c, n)
    except ConstraintError as exc:
        raise UsageError(f"{flag_name(exc.field)}: {exc}") from None
    return c


# ------------------------------------------------------------------------------------------------
# help: every parser of the CLI shows each flag's default
# ------------------------------------------------------------------------------------------------


def format_default(value: object) -> str:
    """How `--help` shows a default: lists and tuples as `a,b,c`, the rest as `str()`."""
    if isinstance(value, list | tuple):
        return ",".join(str(x) for x in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to a flag's help where the flag has a default worth showing (not
    None, not False, not an empty list) and the help does not already name it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            text == argparse.SUPPRESS
            or not action.option_strings
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
            or "default" in text.lower()
        ):
            return action.help
        shown = format_default(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


class Parser(argparse.ArgumentParser):
    """The CLI's parser: `HelpFormatter` unless told otherwise, and a bad flag is one line on
    stderr like every other user error (exit 2). Subparsers are made by the parent's class, so
    every nested command gets both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("tracegrammar").strip()
        where = f"{command}: " if command else ""
        flag = re.match(r"argument ([\w/-]+): expected one argument", message)
        if flag:  # `--rate -5/s`: argparse took the value for an option
            name = flag.group(1).split("/")[-1]
            message += f" (a value that starts with '-' goes as {name}=VALUE)"
        line = " ".join(f"{where}{message} (see {self.prog} --help)".split())
        self.exit(2, f"tracegrammar: error: {line}\n")


# ------------------------------------------------------------------------------------------------
# flag parsers (argparse `type=`): a bad value is argparse's one-line usage error, exit 2
# ------------------------------------------------------------------------------------------------


def comma_list(text: str) -> list[str]:
    """`a,b,,c` -> `["a", "b", "c"]`."""
    return [x for x in text.split(",") if x]


def comma_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def comma_choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A parser of comma-separated names, each one of `allowed`."""

    def parse(text: str) -> list[str]:
        items = comma_list(text)
        bad = [x for x in items if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {bad[0]!r}; choose from {', '.join(allowed)}"
            )
        return items

    return parse
