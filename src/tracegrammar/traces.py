"""Loading real traces: Alibaba v2022 / v2021 call-graph CSV (plain or .gz) and TraceLLM-style text.

`load_traces(path)` streams `CallGraph`s. CSV rows are grouped by trace id; a trace is finished
when the file ends or when no row of it has been seen for `idle_rows` rows (Alibaba's hourly files
are ordered by time, so a trace's rows are close together). Memory is bounded by the open traces
in that window, never by the file.

Cleaning (each step counted in the `LoadReport`, by reason):
- calls logged twice (caller and callee side, same rpc id) are merged into one;
- unknown names (`UNKNOWN`, `UNAVAILABLE`, `(?)`, empty) are filled from the neighbouring call
  when the tree says what they must be (a call's source is its parent's destination); a leaf call
  whose destination or type stays unknown is removed; a trace whose inner call stays unknown is
  dropped;
- a trace whose calls hang under one missing ancestor is re-rooted there (that call becomes `0`
  from USER); one with several roots is dropped as disconnected;
- siblings are renumbered 1, 2, ... when ids have gaps; times become integer ms from the trace's
  first call (negative response times, a v2021 convention, are read as their magnitude);
  that first call's CSV `timestamp` becomes the graph's `timestamp` (epoch seconds UTC, see
  "Absolute times" below; TraceLLM's text has no clock, its graphs have none);
- a trace whose calls break time nesting (child outside its parent's interval) is dropped;
- anything else the oracle rejects is dropped with the oracle's error code.

With `keep_incomplete=True` two kinds of incomplete trace are kept instead, their unknown parts
None (`CallGraph.missing`) for `tracegrammar.infill` to fill: calls whose name or type stays
unknown after the filling above (a leaf is kept, not removed), and traces with exactly one missing
call between two known layers (the calls below one absent id whose own parent is there): that
call is put back with its source and (from its children) destination, its type and times unknown.
Such graphs skip the oracle (it cannot read unknown values) and are counted as `incomplete_graph`.

Absolute times. The CSV `timestamp` column is ms. In the Alibaba v2022 and v2021 samples it is ms
since the start of the trace collection (v2022: 0 to ~27.2M ms in the Casper sample, the first
hour 0-180k ms in the rpc sample); Alibaba does not publish the collection's calendar start, so
such offsets are anchored at 2024-01-01T00:00:00Z (`times.DEFAULT_ANCHOR`, where exports place
graphs without a time): a graph keeps its real offset within the collection, and graphs of one
window keep their real spacing. Values >= 1e11 (after 1973-03-03) are epoch ms, as our own CSV
export writes, so exported graphs load back at the same time.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import math
import re
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .constraints import SERVICE_RE, normalise_name, normalise_service
from .errors import InputError, TraceFormatError
from .times import trace_time
from .types import CALL_TYPES, ROOT_ID, USER, CallGraph, Edge, rpc_parent

UNKNOWN_NAMES = frozenset({"", "UNKNOWN", "UNAVAILABLE", "(?)", "NAN", "NONE", "NULL"})
TRACE_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
V2021_SERVICE = "S_0"  # v2021 has no service column: its graphs share this placeholder service
_RPC_ID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass
class LoadReport:
    """What loading saw: counts of rows, graphs, and what was dropped or repaired, by reason."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    traces: int = 0
    graphs: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "rows": self.rows,
            "traces": self.traces,
            "graphs": self.graphs,
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
        }


@dataclass(slots=True)
class RawCall:
    """One logged call before cleaning; times are absolute (ms) and may be fractional."""

    rpc_id: str
    um: str | None
    dm: str | None
    type: str | None
    start: float
    finish: float


# ------------------------------------------------------------------------------------------------
# public entry point
# ------------------------------------------------------------------------------------------------


def load_traces(
    path: str | Path,
    *,
    report: LoadReport | None = None,
    dedupe: bool = False,
    idle_rows: int = 200_000,
    keep_incomplete: bool = False,
) -> Iterator[CallGraph]:
    """Cleaned call graphs from a trace file or a directory of them, streamed.

    Raises TraceFormatError at once when the path is empty or missing or a directory holds no
    trace files, and (before yielding anything from that file) when a file is empty, has no trace
    header, or lacks a needed column; while streaming, when a file turns out unreadable (a
    truncated `.gz`, bytes that are not UTF-8, a line the CSV reader rejects). A bad row (a
    malformed, infinite or NaN number) is dropped and counted, never the whole file.
    `idle_rows` must be an integer >= 0 (InputError otherwise). `keep_incomplete`: keep graphs
    with unknown values or one missing call, marked (see the module docstring).
    """
    if isinstance(idle_rows, bool) or not isinstance(idle_rows, int) or idle_rows < 0:
        raise InputError(f"idle_rows must be an integer >= 0, got {idle_rows!r}")
    files = trace_files(path)
    return _load(
        files, report if report is not None else LoadReport(), dedupe, idle_rows, keep_incomplete
    )


def _load(
    files: list[Path], report: LoadReport, dedupe: bool, idle_rows: int, keep: bool = False
) -> Iterator[CallGraph]:
    seen: set[str] = set()
    for file in files:
        report.files.append(str(file))
        for graph in _load_file(file, report, idle_rows, keep):
            if dedupe:
                digest = graph_hash(graph)
                if digest in seen:
                    report.dropped["duplicate_graph"] += 1
                    continue
                seen.add(digest)
            report.graphs += 1
            yield graph


def trace_files(path: str | Path) -> list[Path]:
    if not str(path).strip():  # Path("") is the current directory: never scan it by accident
        raise TraceFormatError(repr(str(path)), "empty path (name a trace file or directory)")
    p = Path(path)
    if not p.exists():
        raise TraceFormatError(p, "no such file or directory")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(TRACE_SUFFIXES))
    if not files:
        raise TraceFormatError(p, f"directory holds no trace files ({', '.join(TRACE_SUFFIXES)})")
    return files


def graph_hash(graph: CallGraph) -> str:
    """A stable (process-independent) digest of a graph's content, for de-duplication."""
    from .encode import render_tabular

    return hashlib.sha256(render_tabular(graph).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------
# file formats
# ------------------------------------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    """utf-8-sig: a byte-order mark (spreadsheets write one) is dropped, not read as a name."""
    try:
        if path.name.endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise TraceFormatError(path, f"cannot open: {exc.strerror or exc}") from None


def _load_file(
    path: Path, report: LoadReport, idle_rows: int, keep: bool = False
) -> Iterator[CallGraph]:
    with _open_text(path) as fh:
        try:
            first = fh.readline()
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
            raise TraceFormatError(path, f"not readable as text: {_read_problem(exc)}") from None
        if not first.strip():
            raise TraceFormatError(path, "empty file")
        lines = _lines(path, fh)
        if first.startswith("[GENERATE GRAPH]"):
            traces: Iterable[tuple[str, str, list[RawCall], bool]] = _tracellm(lines, first, report)
        else:
            traces = _csv_traces(path, lines, first, report, idle_rows)
        stamp = not first.startswith("[GENERATE GRAPH]")  # TraceLLM's text has no clock
        for service, _tid, calls, is_v2021 in traces:
            report.traces += 1
            graph = clean_trace(
                service, calls, report, abs_rt=is_v2021, keep_incomplete=keep, timestamps=stamp
            )
            if graph is not None:
                yield graph


def _lines(path: Path, fh: IO[str]) -> Iterator[str]:
    """The lines after the first; a read failure part-way (a truncated `.gz`, bytes that are not
    UTF-8) becomes a TraceFormatError naming the file and about where."""
    n = 1
    while True:
        try:
            line = fh.readline()
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
            raise TraceFormatError(
                path, f"unreadable near line {n + 1}: {_read_problem(exc)}"
            ) from None
        if not line:
            return
        n += 1
        yield line


def _read_problem(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start} of a read block)"
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated file?)"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"corrupt compressed data ({exc})"


def _csv_rows(path: Path, lines: Iterable[str]) -> Iterator[list[str]]:
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise TraceFormatError(path, f"line {reader.line_num + 1}: not CSV ({exc})") from None
        yield row


_V2022 = ("traceid", "timestamp", "service", "um", "dm", "rpctype", "rt")
_V2021 = ("traceid", "timestamp", "um", "dm", "rpctype", "rt")


def _csv_traces(
    path: Path, lines: Iterable[str], header_line: str, report: LoadReport, idle_rows: int
) -> Iterator[tuple[str, str, list[RawCall], bool]]:
    header = [h.strip() for h in next(_csv_rows(path, [header_line]), [])]
    rpc_col = "rpc_id" if "rpc_id" in header else "rpcid" if "rpcid" in header else None
    if rpc_col is None or "traceid" not in header:
        raise TraceFormatError(
            path,
            f"not a call-graph trace: header has no traceid/rpc_id ({header_line.strip()[:80]!r})",
        )
    is_v2021 = "service" not in header
    missing = [c for c in (_V2021 if is_v2021 else _V2022) if c not in header]
    if missing:
        raise TraceFormatError(path, f"missing column {missing[0]!r}")
    col = {name: i for i, name in enumerate(header)}
    idx = [col[c] for c in ("traceid", "timestamp", rpc_col, "um", "dm", "rpctype", "rt")]
    svc = col.get("service")
    open_traces: OrderedDict[str, tuple[str, list[RawCall], int]] = OrderedDict()
    finished: OrderedDict[str, None] = OrderedDict()
    for lineno, row in enumerate(_csv_rows(path, lines), start=2):
        if not row:
            continue
        report.rows += 1
        try:
            tid, ts, rid, um, dm, typ, rt = (row[i] for i in idx)
            service = V2021_SERVICE if svc is None else row[svc]
            start, resp = float(ts), float(rt)
        except (IndexError, ValueError):
            report.dropped["malformed_row"] += 1
            continue
        if not (math.isfinite(start) and math.isfinite(resp)):  # `inf`, `nan`, `1e999`
            report.dropped["non_finite_time"] += 1
            continue
        if tid in finished:
            report.dropped["late_row"] += 1
            continue
        call = RawCall(rid.strip(), _name(um), _dest(dm), _type(typ), start, start + resp)
        if tid in open_traces:
            entry = open_traces.pop(tid)
            entry[1].append(call)
            open_traces[tid] = (entry[0], entry[1], lineno)
        else:
            open_traces[tid] = (service, [call], lineno)
        while open_traces:  # flush traces idle for longer than the window (oldest first)
            oldest, (s, calls, last) = next(iter(open_traces.items()))
            if lineno - last <= idle_rows:
                break
            del open_traces[oldest]
            _remember(finished, oldest, idle_rows)
            yield (normalise_service(s), oldest, calls, is_v2021)
    for tid, (s, calls, _) in open_traces.items():
        yield (normalise_service(s), tid, calls, is_v2021)


def _remember(finished: OrderedDict[str, None], tid: str, limit: int) -> None:
    finished[tid] = None
    if len(finished) > limit:
        finished.popitem(last=False)


_TL_FIELD = re.compile(
    r"(source|destination|type|edge_id) is ([^,)]+)|communication (starts|finishes) at (-?[0-9.]+) milliseconds"
)


def _tracellm(
    rest: Iterable[str], first: str, report: LoadReport
) -> Iterator[tuple[str, str, list[RawCall], bool]]:
    """TraceLLM's tabular text: `[GENERATE GRAPH]attrs` / `<edges>` / `(k is v, ...)` / `</edges>`."""
    service, calls, n = "", [], 0
    for line in itertools.chain([first], rest):  # streamed: the file is never held whole
        line = line.strip()
        report.rows += 1
        if line.startswith("[GENERATE GRAPH]"):
            if calls:
                n += 1
                yield (service, f"graph{n}", calls, False)
            attrs = dict(
                kv.split(":", 1) for kv in line[len("[GENERATE GRAPH]") :].split("/") if ":" in kv
            )
            service, calls = normalise_service(attrs.get("id", "")), []
        elif line.startswith("("):
            f: dict[str, str] = {}
            for m in _TL_FIELD.finditer(line):
                if m.group(1):
                    f[m.group(1)] = m.group(2).strip()
                else:
                    f[m.group(3)] = m.group(4)
            try:
                start, finish = float(f["starts"]), float(f["finishes"])
                call = RawCall(
                    f["edge_id"],
                    _name(f["source"]),
                    _dest(f["destination"]),
                    _type(f["type"]),
                    start,
                    finish,
                )
            except (KeyError, ValueError):
                report.dropped["malformed_row"] += 1
                continue
            if not (math.isfinite(start) and math.isfinite(finish)):  # 400 digits read as inf
                report.dropped["non_finite_time"] += 1
                continue
            calls.append(call)
    if calls:
        yield (service, f"graph{n + 1}", calls, False)


def _name(value: str) -> str | None:
    value = value.strip()
    if value.upper() in UNKNOWN_NAMES:
        return None
    return normalise_name(value)


def _dest(value: str) -> str | None:
    """A destination is never the user: USER there is as unknown as UNKNOWN."""
    name = _name(value)
    return None if name == USER else name


def _type(value: str) -> str | None:
    value = value.strip().lower()
    return value if value in CALL_TYPES else None


# ------------------------------------------------------------------------------------------------
# cleaning one trace
# ------------------------------------------------------------------------------------------------


def clean_trace(
    service: str,
    calls: list[RawCall],
    report: LoadReport,
    *,
    abs_rt: bool = False,
    keep_incomplete: bool = False,
    timestamps: bool = False,
) -> CallGraph | None:
    """Turn one trace's raw calls into a valid CallGraph, or count why it was dropped; with
    `keep_incomplete`, an incomplete one is kept with its unknown values None. With `timestamps`
    the calls' times are a trace file's ms timestamps and the graph gets its `timestamp`: its
    first call's time (`times.trace_time`: epoch ms, or ms since the start of the collection
    anchored at 2024-01-01T00:00:00Z)."""
    reason = _clean(service, calls, report, abs_rt, keep_incomplete, timestamps)
    if isinstance(reason, str):
        report.dropped[reason] += 1
        return None
    if reason.missing:
        report.repaired["incomplete_graph"] += 1
        return reason
    from .oracle import check

    problems = check(reason)
    if problems:
        report.dropped[f"oracle:{problems[0].code}"] += 1
        return None
    return reason


def _clean(
    service: str,
    calls: list[RawCall],
    report: LoadReport,
    abs_rt: bool,
    keep: bool = False,
    stamp: bool = False,
) -> CallGraph | str:
    if not SERVICE_RE.fullmatch(service):
        return "bad_service"
    if any(not _RPC_ID_RE.fullmatch(c.rpc_id) for c in calls):
        return "bad_rpc_id"
    for c in calls:
        if c.finish < c.start:
            if not abs_rt:
                return "negative_rt"
            c.finish = c.start + (c.start - c.finish)
            report.repaired["negative_rt_abs"] += 1
    merged = _merge_duplicates(calls, report)
    if isinstance(merged, str):
        return merged
    by_id = _reroot(merged, report, keep)
    if isinstance(by_id, str):
        return by_id
    problem = _fill_names(by_id, report, keep)
    if problem:
        return problem
    by_id = _renumber(by_id, report)
    if not by_id:
        return "empty"
    t0 = min(c.start for c in by_id.values() if not math.isnan(c.start))
    edges = []
    for rid, c in by_id.items():
        if math.isnan(c.start):  # a missing call put back: its times are unknown
            edges.append(Edge(rid, c.um, c.dm, c.type, None, None))  # type: ignore[arg-type]
            continue
        start = _round(c.start - t0)
        finish = max(start, _round(c.finish - t0))
        if keep:
            edges.append(Edge(rid, c.um, c.dm, c.type, start, finish))  # type: ignore[arg-type]
        else:
            edges.append(Edge(rid, c.um or "", c.dm or "", c.type or "", start, finish))
    graph = CallGraph(service, tuple(edges), trace_time(t0) if stamp else None)
    if not _times_nest(graph):
        return "inconsistent_times"
    return graph


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _merge_duplicates(calls: list[RawCall], report: LoadReport) -> dict[str, RawCall] | str:
    by_id: dict[str, RawCall] = {}
    for c in calls:
        have = by_id.get(c.rpc_id)
        if have is None:
            by_id[c.rpc_id] = RawCall(c.rpc_id, c.um, c.dm, c.type, c.start, c.finish)
            continue
        report.repaired["merged_duplicate_row"] += 1
        for attr in ("um", "dm", "type"):
            mine, theirs = getattr(have, attr), getattr(c, attr)
            if mine is None:
                setattr(have, attr, theirs)
            elif theirs is not None and theirs != mine:
                return f"conflicting_duplicate_{attr}"
        have.start = min(have.start, c.start)
        have.finish = max(have.finish, c.finish)
    return by_id


def _reroot(
    by_id: dict[str, RawCall], report: LoadReport, keep: bool = False
) -> dict[str, RawCall] | str:
    roots = [rid for rid in by_id if rpc_parent(rid) not in by_id]
    if len(roots) != 1 and keep:
        gap = _one_missing_call(roots, by_id)
        if gap is not None:
            by_id[gap] = RawCall(gap, None, None, None, math.nan, math.nan)
            report.repaired["missing_call_kept"] += 1
            roots = [rid for rid in by_id if rpc_parent(rid) not in by_id]
    if len(roots) != 1:
        return "disconnected"
    root = roots[0]
    if root != ROOT_ID:
        report.repaired["rerooted"] += 1
        cut = len(root)
        by_id = {ROOT_ID + rid[cut:]: c for rid, c in by_id.items()}
    top = by_id[ROOT_ID]
    if top.um != USER:
        report.repaired["root_source_set_to_USER"] += 1
        top.um = USER
    return by_id


def _one_missing_call(roots: list[str], by_id: dict[str, RawCall]) -> str | None:
    """The id of the one call whose absence splits the trace (its parent is in the main tree, and
    every other root is its child), or None when the trace is not split that way."""
    shallowest = min(r.count(".") for r in roots)
    main = [r for r in roots if r.count(".") == shallowest]
    if len(main) != 1:
        return None
    gaps = {rpc_parent(r) for r in roots if r != main[0]}
    if len(gaps) != 1:
        return None
    gap = gaps.pop()
    above = rpc_parent(gap) if gap is not None else None
    if gap is None or above is None or above not in by_id:
        return None
    if not (above == main[0] or above.startswith(main[0] + ".")):
        return None
    return gap


def _fill_names(by_id: dict[str, RawCall], report: LoadReport, keep: bool = False) -> str | None:
    kids: dict[str, list[str]] = {}
    for rid in by_id:
        parent = rpc_parent(rid)
        if parent is not None:
            kids.setdefault(parent, []).append(rid)
    for rid, c in by_id.items():  # a call's source is its parent's destination, and back
        parent = rpc_parent(rid)
        if parent is None:
            continue
        p = by_id[parent]
        if c.um is None and p.dm is not None:
            c.um = p.dm
            report.repaired["source_from_parent"] += 1
        elif p.dm is None and c.um is not None:
            p.dm = c.um
            report.repaired["destination_from_child"] += 1
        elif c.um is not None and p.dm is not None and c.um != p.dm:
            return "source_mismatch"
    for rid in list(by_id):
        c = by_id[rid]
        if c.dm is None or c.type is None or c.um is None:
            if keep:
                report.repaired["unknown_kept"] += 1
                continue
            if rid in kids or rid == ROOT_ID:
                return "unknown_name" if c.type is not None else "unknown_type"
            del by_id[rid]
            report.repaired["removed_unknown_leaf"] += 1
    return None


def _renumber(by_id: dict[str, RawCall], report: LoadReport) -> dict[str, RawCall]:
    """Children of every call become 1, 2, ... in their original order."""
    kids: dict[str | None, list[str]] = {}
    for rid in by_id:
        kids.setdefault(rpc_parent(rid), []).append(rid)
    out: dict[str, RawCall] = {}
    # depth-first with an explicit stack: real traces can be thousands of calls deep
    stack = [(ROOT_ID, ROOT_ID)] if ROOT_ID in by_id else []
    while stack:
        old, new = stack.pop()
        out[new] = by_id[old]
        children = sorted(kids.get(old, []), key=lambda r: int(r.rsplit(".", 1)[1]))
        stack.extend((child, f"{new}.{n}") for n, child in reversed(list(enumerate(children, 1))))
    if any(a != b for a, b in zip(sorted(out), sorted(by_id), strict=False)) or len(out) != len(
        by_id
    ):
        report.repaired["renumbered_ids"] += 1
    return out


def _times_nest(g: CallGraph) -> bool:
    for e in g.edges:
        parent = g.by_id.get(e.parent_id) if e.parent_id else None
        if parent is None or e.start is None or parent.start is None:  # unknown: infill decides
            continue
        if e.start < parent.start or e.finish > parent.finish:
            return False
    return True
