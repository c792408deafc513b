"""The validity benchmark's heat maps: instruction accuracy per (num_edges, depth), one picture
per (mode, encoding, temperature), like the papers' grids. Every cell shows its value (percent,
in black on light cells and white on dark ones); a cell with no record is grey and marked
`EMPTY`. Pictures are written atomically (`io.write_figure`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import write_figure
from .grid import by_group

#: The text of a cell that has no record (not run, or not a feasible shape).
EMPTY = "–"
#: Luminance above which a cell's text is black, else white.
LIGHT = 0.5


def heatmaps(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Instruction accuracy per (num_edges, depth), like the papers' grids: one PNG per (mode,
    encoding, temperature) in `out`. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, rs in by_group(records):
        mode, fmt, temp = key
        fig = heatmap_figure(rs, f"instruction accuracy (%): {mode}, {fmt}, T={temp}")
        try:
            paths.append(write_figure(fig, out / f"heatmap_{mode}_{fmt}_T{temp}.png", dpi=110))
        finally:
            plt.close(fig)
    return paths


def heatmap_figure(records: list[dict[str, Any]], title: str) -> Any:
    """One heat map (a pyplot figure; close it after use) of the records' instruction accuracy
    in percent, rows by depth, columns by num_edges, each cell labelled with its value."""
    import matplotlib.pyplot as plt
    import numpy as np

    n_max = max(r["num_edges"] for r in records)
    d_max = max(r["depth"] for r in records)
    grid_ = np.full((d_max, n_max), np.nan)
    for r in records:
        grid_[r["depth"] - 1, r["num_edges"] - 1] = 100 * r["instruction_accuracy"]
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    fig, ax = plt.subplots(figsize=(max(6, n_max * 0.35), 1.4 + 0.3 * d_max))
    im = ax.imshow(grid_, origin="lower", vmin=0, vmax=100, cmap=cmap, aspect="auto")
    for d in range(d_max):
        for n in range(n_max):
            text, colour = _cell_label(grid_[d, n], im)
            ax.text(n, d, text, color=colour, ha="center", va="center", fontsize=6)
    ax.set_xticks(range(n_max), [str(i + 1) for i in range(n_max)], fontsize=7)
    ax.set_yticks(range(d_max), [str(i + 1) for i in range(d_max)])
    ax.set_xlabel(f"num_edges ({EMPTY}: no record)")
    ax.set_ylabel("depth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="%")
    fig.tight_layout()
    return fig


def _cell_label(value: float, im: Any) -> tuple[str, str]:
    """A cell's text and its colour: readable on the cell's own colour."""
    import numpy as np

    if np.isnan(value):
        return EMPTY, "#555555"
    r, g, b, _ = im.cmap(im.norm(value))
    light = 0.299 * r + 0.587 * g + 0.114 * b > LIGHT
    return f"{value:.0f}", "black" if light else "white"
