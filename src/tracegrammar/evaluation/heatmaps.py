"""The validity benchmark's heat maps: instruction accuracy per (num_edges, depth), one picture
per (mode, encoding, temperature), like the papers' grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .grid import by_group


def heatmaps(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Instruction accuracy per (num_edges, depth), like the papers' grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for key, rs in by_group(records):
        mode, fmt, temp = key
        n_max = max(r["num_edges"] for r in rs)
        d_max = max(r["depth"] for r in rs)
        grid_ = np.full((d_max, n_max), np.nan)
        for r in rs:
            grid_[r["depth"] - 1, r["num_edges"] - 1] = r["instruction_accuracy"]
        fig, ax = plt.subplots(figsize=(max(6, n_max * 0.35), 2.6))
        im = ax.imshow(grid_, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(n_max), [str(i + 1) for i in range(n_max)], fontsize=7)
        ax.set_yticks(range(d_max), [str(i + 1) for i in range(d_max)])
        ax.set_xlabel("num_edges")
        ax.set_ylabel("depth")
        ax.set_title(f"instruction accuracy: {mode}, {fmt}, T={temp}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / f"heatmap_{mode}_{fmt}_T{temp}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
