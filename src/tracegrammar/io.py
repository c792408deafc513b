"""JSON Lines: one call graph per line. The interchange format of `generate`, `eval` and exports.

A line is `{"service": "S_1", "edges": [{"rpc_id": "0", "source": "USER", "destination": "MS_1",
"type": "http", "start": 0, "finish": 12}, ...]}`, optionally with extra keys (e.g. `"valid"`,
`"violations"`, `"constraints"`) that readers ignore. A graph placed in time also has
`"timestamp": "2025-03-01T12:00:00.000Z"` (its root call's start, ISO 8601 UTC, after "service");
readers also take epoch seconds there.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import InputError, OutputPathError, TraceFormatError, os_error_message
from .times import format_time, parse_time
from .types import CallGraph, Edge

EDGE_KEYS = ("rpc_id", "source", "destination", "type", "start", "finish")


def graph_to_dict(graph: CallGraph, **extra: Any) -> dict[str, Any]:
    """The JSON record of a graph; `timestamp` (ISO 8601 UTC) only when the graph has one."""
    record: dict[str, Any] = {"service": graph.service}
    if graph.timestamp is not None:
        record["timestamp"] = format_time(graph.timestamp)
    record["edges"] = [{k: getattr(e, k) for k in EDGE_KEYS} for e in graph.edges]
    record.update(extra)
    return record


def timestamp_from_record(value: Any) -> float | None:
    """A record's `timestamp`: ISO 8601 text (no zone: UTC) or epoch seconds; None when absent.
    Anything else raises InputError naming the field and the value."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() != "now":
        return parse_time(value, "timestamp")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return float(value)
    raise InputError(
        f"timestamp must be an ISO 8601 time or epoch seconds after 1970, got {value!r}"
    )


def stamp_record(record: dict[str, Any], base_epoch_ns: int | None) -> dict[str, Any]:
    """The record with `timestamp` set to `base_epoch_ns` (after `service`, as `graph_to_dict`
    writes it); the record itself when the base is None."""
    if base_epoch_ns is None:
        return record
    stamp = format_time((base_epoch_ns // 1_000_000) / 1000)
    rest = {k: v for k, v in record.items() if k not in ("service", "timestamp")}
    return {"service": record.get("service"), "timestamp": stamp, **rest}


def generation_record(generation: Any) -> dict[str, Any]:
    """The JSON Lines record `generate` writes for one `Generation`: the graph with its verdict
    and request, or (no graph could be parsed) the service and the start of the text."""
    g = generation
    if g.graph is None:
        return {
            "service": g.constraints.service,
            "edges": [],
            "valid": False,
            "text": g.text[:2000],
        }
    return graph_to_dict(
        g.graph,
        valid=g.valid,
        constraints=g.constraints.as_dict(),
        violations=[str(v) for v in g.violations[:5]],
    )


def graph_from_dict(data: dict[str, Any], *, keep_missing: bool = False) -> CallGraph:
    """A graph from its JSON record. With `keep_missing`, a `null` source, destination, type,
    start or finish stays None (an unknown value: `CallGraph.missing`); otherwise it is an error."""

    def name(value: Any) -> str | None:
        return None if value is None and keep_missing else str(value)

    def time(value: Any) -> int | None:
        return None if value is None and keep_missing else int(value)

    try:
        edges = tuple(
            Edge(
                str(e["rpc_id"]),
                name(e["source"]),  # type: ignore[arg-type]
                name(e["destination"]),  # type: ignore[arg-type]
                name(e["type"]),  # type: ignore[arg-type]
                time(e["start"]),  # type: ignore[arg-type]
                time(e["finish"]),  # type: ignore[arg-type]
            )
            for e in data["edges"]
        )
        service, stamp = str(data["service"]), data.get("timestamp")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a call graph record: {exc!r}") from None
    return CallGraph(service, edges, timestamp_from_record(stamp))


def read_jsonl(path: str | Path, *, keep_missing: bool = False) -> Iterator[CallGraph]:
    """Graphs from a JSON Lines file; a bad line (or bytes that are not UTF-8) raises
    TraceFormatError naming the file and line. `keep_missing`: `null` fields stay unknown
    (see `graph_from_dict`)."""
    p = Path(path)
    if not p.is_file():
        raise TraceFormatError(p, "no such file")
    with open(p, encoding="utf-8") as fh:
        n = 0
        while True:
            try:
                line = fh.readline()
            except UnicodeDecodeError as exc:
                # decoding runs ahead in blocks: the line is where reading stopped, not the byte
                raise TraceFormatError(p, f"not UTF-8 text after line {n} ({exc.reason})") from None
            if not line:
                return
            n += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
                raise TraceFormatError(f"{p}:{n}", f"not JSON ({str(exc)[:120]})") from None
            if not isinstance(record, dict):
                raise TraceFormatError(f"{p}:{n}", "not a call graph record (a JSON object)")
            try:
                graph = graph_from_dict(record, keep_missing=keep_missing)
            except ValueError as exc:
                raise TraceFormatError(f"{p}:{n}", str(exc)) from None
            yield graph


#: A temporary file or folder of ours: `.NAME.tg<pid>-<random>.tmp`. The pid says whether the
#: writer is still alive; only names of this shape are ever removed.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.tg(?P<pid>[0-9]+)-[a-z0-9_]+\.tmp")
_FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file or folder standing for `name` (pass `suffix=".tmp"`)."""
    return f".{name}.tg{os.getpid()}-"


def remove_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporaries a killed writer left in `folder` (for target `name`, or for any):
    only names of our own shape whose writer pid is no longer alive, never a link."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP_RE.fullmatch(entry.name)
        if m is None or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            continue  # never ours: we only make plain files and folders
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # exists, owned by someone else (overflow: no such pid)
    return True


def check_output_path(path: str | Path) -> Path:
    """Refuse an output path that must not be replaced: an existing symlink, device, FIFO, socket
    or folder (os.replace would put a regular file in its place), or one whose folder cannot be
    made. Returns the path; nothing is written."""
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # e.g. a parent that is a file
        raise OutputPathError(target, f"cannot be written: {os_error_message(exc)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputPathError(target, f"is {_kind(st.st_mode)}, not a regular file; not replaced")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(target, f"its folder {parent} is not a directory")
    return target


def check_output_writable(path: str | Path) -> Path:
    """`check_output_path`, and the folder exists (it is made) and accepts new files; called
    before long work so that a bad `--out` fails in a second, not after an hour."""
    target = check_output_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(target, f"cannot make its folder: {os_error_message(exc)}") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputPathError(target, f"its folder {target.parent} is not writable")
    return target


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@contextmanager
def atomic_writer(
    path: str | Path, mode: str = "w", *, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it into place only on success, so an
    interrupted run never leaves a half-written file.

    The target must be absent or a regular file: a symlink, device, FIFO or folder there raises
    OutputPathError (os.replace would swap it for a regular file, e.g. `/dev/null` as root).
    Temporaries carry the writer's pid; those of dead writers of the same target are removed.
    Failures to create the folder or the file, and a full disk, raise OutputPathError."""
    target = check_output_writable(path)
    remove_stale_temporaries(target.parent, target.name)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise OutputPathError(target, f"cannot be written: {os_error_message(exc)}") from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8", newline=newline) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        check_output_path(target)  # it may have become a link while we wrote
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in _FULL_DISK:
            raise OutputPathError(target, f"not written: {os_error_message(exc)}") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure to `path` through `atomic_writer`: a failing render or a full
    disk leaves neither a truncated picture nor a temporary file (a file already at `path` stays
    as it was). The format is `format=` if given, else the suffix (png without one). The figure
    is not closed (a pyplot figure: `plt.close(fig)` after)."""
    target = Path(path)
    fmt = savefig_kwargs.pop("format", None) or target.suffix[1:].lower() or "png"
    with atomic_writer(target, "wb") as fh:
        fig.savefig(fh, format=fmt, **savefig_kwargs)
    return target


def write_jsonl(graphs: Iterable[CallGraph | dict[str, Any]], path: str | Path) -> int:
    count = 0
    with atomic_writer(path) as fh:
        for g in graphs:
            record = graph_to_dict(g) if isinstance(g, CallGraph) else g
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    return count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
