"""A picture of one call graph: a timeline with a bar per call, in depth-first order.

Rows read like a trace viewer: the row label is the rpc id indented by depth, then
caller -> callee and the call type; the bar spans [start, finish] in ms, coloured by call type
(legend above the plot), with the response time written beside it. Thin grey elbows join each call
to its parent so the tree stays readable without the indentation. Zero-length calls get a marker,
since a bar of width 0 would vanish. Rendering uses matplotlib's object API on an Agg canvas (no
pyplot state), so it is safe in threads and on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import UsageError
from ..io import write_figure
from ..types import CALL_TYPES, CallGraph, Edge

SUFFIXES: tuple[str, ...] = (".png", ".svg")
TYPE_COLOURS: dict[str, str] = {
    "http": "#4477aa",
    "rpc": "#228833",
    "mc": "#ccbb44",
    "db": "#ee6677",
    "mq": "#aa3377",
}
_OTHER_COLOUR = "#999999"
_ROW_INCHES = 0.26
_PLOT_INCHES = 9.0
_CHAR_INCHES = 8 * 0.6 / 72  # DejaVu Sans Mono advance at 8 pt


def check_suffix(path: str | Path) -> str:
    """The image format from the suffix; checked before any work so a typo fails fast."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"{path}: unsupported picture suffix {suffix or '(none)'!r} "
            f"(use {' or '.join(SUFFIXES)})"
        )
    return suffix[1:]


#: Largest picture drawn: a row per call (1,000 rows make a PNG ~29,000 pixels tall, Agg's
#: limit is 65,536) and labels indented by depth; beyond these, rendering takes minutes and
#: gigabytes for a picture no one can read.
MAX_DRAW_CALLS = 1000
MAX_DRAW_DEPTH = 100


def check_size(graph: CallGraph, path: str | Path) -> None:
    if graph.num_edges > MAX_DRAW_CALLS:
        raise UsageError(
            f"{path}: the graph has {graph.num_edges} calls; draw shows at most {MAX_DRAW_CALLS}"
        )
    if graph.depth > MAX_DRAW_DEPTH:
        raise UsageError(
            f"{path}: the graph is {graph.depth} calls deep; draw shows at most {MAX_DRAW_DEPTH}"
        )


def draw(graph: CallGraph, path: str | Path) -> None:
    """Write the timeline of `graph` to `path` (.png or .svg), atomically; graphs beyond
    MAX_DRAW_CALLS calls or MAX_DRAW_DEPTH levels are refused (UsageError)."""
    fmt = check_suffix(path)
    check_size(graph, path)
    write_figure(figure(graph), path, format=fmt, dpi=110)


def figure(graph: CallGraph) -> Figure:
    """The matplotlib Figure (for callers that want to embed or tweak it)."""
    edges = list(graph.edges)
    fig = _layout([_label(e) for e in edges])
    ax = fig.axes[0]
    span = max((e.finish for e in edges), default=0) or 1
    _elbows(ax, graph, span)
    _bars(ax, edges, span)
    _axes(ax, edges, span)
    _legend(ax)
    ax.set_title(_title(graph), loc="left", fontsize=10, pad=8)  # suptitle drifts on tall figures
    return fig


def _layout(labels: list[str]) -> Figure:
    """Margins in inches from the longest (monospace) label: a fixed layout avoids the second
    rendering pass that `bbox_inches="tight"` costs, which dominates for tall figures."""
    rows = max(len(labels), 3)
    left = 0.3 + _CHAR_INCHES * max(map(len, labels), default=0)
    width, height = left + _PLOT_INCHES + 0.7, 1.3 + _ROW_INCHES * rows
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.add_subplot()
    fig.subplots_adjust(
        left=left / width, right=1 - 0.5 / width, top=1 - 0.6 / height, bottom=0.6 / height
    )
    return fig


def _bars(ax: Axes, edges: list[Edge], span: int) -> None:
    """One artist for all bars and one for all markers: per-call artists make 80 rows slow."""
    colours = [TYPE_COLOURS.get(e.type, _OTHER_COLOUR) for e in edges]
    long = [n for n, e in enumerate(edges) if e.finish > e.start]
    zero = [n for n, e in enumerate(edges) if e.finish == e.start]
    ax.barh(
        long,
        [edges[n].finish - edges[n].start for n in long],
        left=[edges[n].start for n in long],
        height=0.62,
        color=[colours[n] for n in long],
        edgecolor="black",
        lw=0.4,
    )
    ax.scatter(
        [edges[n].start for n in zero],
        zero,
        marker="D",
        s=25,
        c=[colours[n] for n in zero],
        edgecolors="black",
        linewidths=0.4,
        zorder=3,
    )
    for n, e in enumerate(edges):
        gap = span * (0.006 if e.finish > e.start else 0.012)  # clear a zero-length marker
        ax.text(
            e.finish + gap, n, f"{e.finish - e.start} ms", va="center", fontsize=7, color="#333"
        )


def _elbows(ax: Axes, graph: CallGraph, span: int) -> None:
    """Thin lines down from each parent's start, then across to its child's start."""
    rows = {e.rpc_id: n for n, e in enumerate(graph.edges)}
    lines = []
    for n, e in enumerate(graph.edges):
        if e.parent_id in rows:
            x = graph.by_id[e.parent_id].start - span * 0.004
            lines.append([(x, rows[e.parent_id] + 0.31), (x, n), (e.start, n)])
    ax.add_collection(LineCollection(lines, colors="#bbbbbb", linewidths=0.6, zorder=0))


def _axes(ax: Axes, edges: list[Edge], span: int) -> None:
    labels = [_label(e) for e in edges]
    width = max(map(len, labels), default=0)  # equal widths keep the indentation visible
    ax.set_yticks(
        range(len(edges)), [s.ljust(width) for s in labels], fontsize=8, family="monospace"
    )
    ax.set_ylim(max(len(edges), 1) - 0.5, -0.5)  # first call on top
    ax.set_xlim(-span * 0.02, span * 1.1)
    ax.set_xlabel("time since the root call started (ms)")
    ax.grid(axis="x", color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend(ax: Axes) -> None:
    handles = [Patch(color=c, label=t) for t, c in TYPE_COLOURS.items() if t in CALL_TYPES]
    ax.legend(
        handles=handles,
        ncol=len(handles),
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        fontsize=8,
        handlelength=1.2,
    )


def _label(e: Edge) -> str:
    indent = "  " * (e.depth - 1)
    return f"{indent}{e.rpc_id}  {_short(e.source)} → {_short(e.destination)}  {e.type}"


def _short(name: str) -> str:
    """64-hex microservice hashes would swamp the labels; 8 digits still tell them apart."""
    return name[:8] + "…" if len(name) > 16 else name


def _title(g: CallGraph) -> str:
    calls = "call" if g.num_edges == 1 else "calls"
    return f"{g.service}: {g.num_edges} {calls}, depth {g.depth}, latency {g.latency} ms"
