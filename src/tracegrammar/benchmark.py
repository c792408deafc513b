"""The validity benchmark's names under their earlier import place. The code lives in
`tracegrammar.evaluation`: `grid` (cells, prompts, record keys), `validity` (options, records,
running cells), `validity_report` (summaries and tables), `heatmaps`, `tables` (shared by every
benchmark summary). New code imports from there."""

from .evaluation.grid import MODES, Cell, by_group, grid, prompts, record_key, task_key
from .evaluation.heatmaps import heatmaps
from .evaluation.tables import machine, table_lines
from .evaluation.validity import (
    ValidityOptions,
    plan,
    read_records,
    rewrite_summary,
    run_cell,
    run_validity,
)
from .evaluation.validity_report import (
    markdown_table,
    run_meta,
    speed,
    speed_table,
    summarize,
    write_summary,
)

__all__ = [
    "MODES",
    "Cell",
    "ValidityOptions",
    "by_group",
    "grid",
    "heatmaps",
    "machine",
    "markdown_table",
    "plan",
    "prompts",
    "read_records",
    "record_key",
    "rewrite_summary",
    "run_cell",
    "run_meta",
    "run_validity",
    "speed",
    "speed_table",
    "summarize",
    "table_lines",
    "task_key",
    "write_summary",
]
