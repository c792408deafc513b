"""Training: call graphs -> layer/tabular samples -> LoRA fine-tuning (see training/README.md).

Importing this package does not import torch; `lora` imports it inside the functions that run.
"""

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
from .lora import TrainConfig, TrainError, TrainResult, train

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
