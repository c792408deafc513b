"""Training: call graphs -> layer/tabular samples -> LoRA fine-tuning (see training/README.md).

Importing this package does not import torch; `loop`, `optim` and `checkpoint` import it inside
the functions that run.
"""

from ..errors import TrainError
from .config import TrainConfig
from .datasets import (
    IGNORE_INDEX,
    SAMPLE_FORMATS,
    Encoded,
    Sample,
    SampleTooLong,
    Split,
    build_samples,
    encode_sample,
    encode_samples,
    graph_samples,
    layer_samples,
    split_graphs,
    tabular_sample,
)
from .loop import TrainResult, train

__all__ = [
    "IGNORE_INDEX",
    "SAMPLE_FORMATS",
    "Encoded",
    "Sample",
    "SampleTooLong",
    "Split",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "build_samples",
    "encode_sample",
    "encode_samples",
    "graph_samples",
    "layer_samples",
    "split_graphs",
    "tabular_sample",
    "train",
]
