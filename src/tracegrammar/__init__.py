"""tracegrammar: synthetic microservice call graphs from a language model that can only write
valid layers.

Data flows one way: traces (`load_traces`) -> graphs (`CallGraph`) -> layers and text
(`tracegrammar.layers`, `tracegrammar.encode`) -> constrained decoding (`generate`) -> graphs ->
checks (`check`), metrics and exports. Windows of traffic over time (`generate_workload`) are
generated coarse to fine: the window's graph contexts first, then each graph. Incomplete graphs
(`load_traces(..., keep_incomplete=True)`) are completed by `infill`. Importing this package is
cheap: the model-side names (`generate`, `load_model`) import torch only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constraints import Constraints
from .infilling import InfillError, infill
from .oracle import Violation, check, check_layer
from .reference import Reference
from .traces import LoadReport, TraceFormatError, load_traces
from .types import CallGraph, Edge, Layer, LayerConditions, LayerEdge, SubgraphBlock
from .workloads import WindowContext, WindowRequest, generate_workload

if TYPE_CHECKING:
    from .decoding.driver import generate
    from .decoding.models import load_model

__all__ = [
    "CallGraph",
    "Constraints",
    "Edge",
    "InfillError",
    "Layer",
    "LayerConditions",
    "LayerEdge",
    "LoadReport",
    "Reference",
    "SubgraphBlock",
    "TraceFormatError",
    "Violation",
    "WindowContext",
    "WindowRequest",
    "check",
    "check_layer",
    "generate",
    "generate_workload",
    "infill",
    "load_model",
    "load_traces",
]

_LAZY = {"generate": "decoding.driver", "load_model": "decoding.models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'tracegrammar' has no attribute {name!r}")
