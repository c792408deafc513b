"""Figures: the benchmark's heat maps label every cell (readable on dark and light cells, empty
cells marked), and every figure the project writes goes through `io.write_figure`, so a render
or a disk that fails leaves neither a truncated picture nor a temporary file."""

from __future__ import annotations

import errno
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from tracegrammar.errors import OutputPathError
from tracegrammar.evaluation.heatmaps import EMPTY, heatmap_figure, heatmaps
from tracegrammar.exports.draw import draw
from tracegrammar.io import write_figure
from tracegrammar.metrics import plot
from tracegrammar.training.artifacts import plot_loss
from tracegrammar.training.state import LossPoint
from tracegrammar.types import USER, CallGraph, Edge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAPH = CallGraph(
    "S_3",
    (
        Edge("0", USER, "MS_1", "http", 0, 50),
        Edge("0.1", "MS_1", "MS_2", "rpc", 4, 20),
        Edge("0.2", "MS_1", "MS_3", "db", 22, 30),
    ),
)


def _record(num_edges: int, depth: int, accuracy: float, temperature: float = 0.8) -> dict:
    return {
        "num_edges": num_edges,
        "depth": depth,
        "instruction_accuracy": accuracy,
        "mode": "constrained",
        "format": "layer",
        "temperature": temperature,
    }


RECORDS = [_record(1, 1, 1.0), _record(2, 2, 0.5), _record(3, 2, 0.0), _record(3, 3, 0.25)]


def _cells(ax) -> dict[tuple[int, int], tuple[str, str]]:
    """(num_edges, depth) -> (text, colour as a hex string) of every text placed on a cell."""
    from matplotlib.colors import to_hex

    out = {}
    for t in ax.texts:
        x, y = t.get_position()
        out[(round(x) + 1, round(y) + 1)] = (t.get_text(), to_hex(t.get_color()))
    return out


def test_every_cell_shows_its_value_readably():
    fig = heatmap_figure(RECORDS, "t")
    try:
        cells = _cells(fig.axes[0])
    finally:
        plt.close(fig)
    assert len(cells) == 3 * 3  # every cell of the 3 x 3 grid has a text
    assert cells[(1, 1)] == ("100", "#000000")  # yellow cell: black text
    assert cells[(3, 2)] == ("0", "#ffffff")  # dark purple cell: white text
    assert cells[(2, 2)][0] == "50" and cells[(3, 3)][0] == "25"
    for empty in [(2, 1), (3, 1), (1, 2), (1, 3), (2, 3)]:
        assert cells[empty][0] == EMPTY


def test_heatmaps_are_written_one_per_group(tmp_path):
    records = [*RECORDS, _record(2, 2, 1.0, temperature=0.0)]
    paths = heatmaps(records, tmp_path)
    assert sorted(p.name for p in paths) == [
        "heatmap_constrained_layer_T0.0.png",
        "heatmap_constrained_layer_T0.8.png",
    ]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


@pytest.fixture
def full_disk(monkeypatch):
    """Every savefig writes a little and then fails as a full disk would."""

    def savefig(self, fname, *args, **kwargs):
        if isinstance(fname, (str, os.PathLike)):  # savefig(path) opens the file itself
            with open(fname, "wb") as fh:
                fh.write(PNG_MAGIC + b"half a picture")
        else:
            fname.write(PNG_MAGIC + b"half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", savefig)


def _loss(path):
    plot_loss(path, [LossPoint(1, 2.0, None), LossPoint(2, 1.5, 1.7)])


def _metrics_plot(path):
    plot([GRAPH], [GRAPH], path.parent)


WRITERS = {
    "heatmaps": (lambda path: heatmaps(RECORDS, path.parent), "heatmap_constrained_layer_T0.8.png"),
    "draw": (lambda path: draw(GRAPH, path), "g.png"),
    "eval --plots": (_metrics_plot, "cdf_in_degree.png"),
    "loss": (_loss, "loss.png"),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_full_disk_leaves_no_partial_figure(tmp_path, full_disk, name):
    write, filename = WRITERS[name]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputPathError, match="not written"):
        write(out / filename)
    assert list(out.iterdir()) == []  # no truncated picture, no temporary file


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_figures_are_written_whole(tmp_path, name):
    write, filename = WRITERS[name]
    write(tmp_path / filename)
    assert (tmp_path / filename).read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_write_keeps_the_earlier_figure(tmp_path, full_disk):
    target = tmp_path / "fig.png"
    target.write_bytes(b"earlier")
    fig = Figure()
    with pytest.raises(OutputPathError):
        write_figure(fig, target)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_a_failing_render_leaves_nothing(tmp_path, monkeypatch):
    def savefig(self, fname, *args, **kwargs):
        fname.write(b"partial")
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(Figure, "savefig", savefig)
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_figure(Figure(), tmp_path / "fig.svg")
    assert list(tmp_path.iterdir()) == []
