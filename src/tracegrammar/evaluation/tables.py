"""What every benchmark summary shares: markdown table lines and the line describing the machine
the numbers were measured on."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def table_lines(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table's lines."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(x) for x in row) + " |" for row in rows),
    ]


def machine() -> str:
    """Processor, CPU count, system and (when torch is already loaded and sees one) the GPU."""
    text = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    torch = sys.modules.get("torch")  # never imported just for this
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text
