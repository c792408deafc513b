"""LoRA fine-tuning of a causal LM on layer (or tabular) samples, resumable after a kill.

The papers' recipe is the default: LoRA r=8, alpha=16, dropout 0.1 on the query/key projections,
AdamW at 3e-4 with linear warm-up and cosine decay, gradient clipping at 1.0.

The code is split by concern; this module keeps the names under their earlier import place:

- `config`: `TrainConfig`, the recipe and its checks;
- `batches`: the graphs, each epoch's batches, validation samples, padding;
- `optim`: device, LoRA wrapper, optimizer and schedule, the loss;
- `loop`: `train`, the optimisation loop, evaluation;
- `state`: the run's position and its loss history (`LossPoint`);
- `checkpoint`: save, restore and resume checks (no pickle is ever loaded);
- `artifacts`: the final adapter, loss.csv / loss.png, prior.json, reference.json, metadata.

torch, transformers and peft are imported inside the functions that use them, so the config (and
the CLI's `--help`) loads without them.
"""

from ..decoding.models import ModelError, default_model_dir
from ..errors import TrainError
from .artifacts import LOSS_CSV, LOSS_PNG, plot_loss, read_loss_csv, write_loss_csv
from .batches import EpochPlan, collate, data_fingerprint, load_graphs, validation_set
from .checkpoint import (
    CHECKPOINTS,
    OPTIMIZER_FILE,
    RNG_JSON,
    RNG_TENSORS,
    SCHEDULER_FILE,
    checkpoint_dirs,
    load_rng_state,
    load_tensor_state,
    save_rng_state,
)
from .config import DEVICE_RE, RESUMABLE_CHANGES, TrainConfig
from .loop import TrainResult, evaluate, train
from .optim import warmup_cosine
from .state import LossPoint, RunState

__all__ = [
    "CHECKPOINTS",
    "DEVICE_RE",
    "LOSS_CSV",
    "LOSS_PNG",
    "OPTIMIZER_FILE",
    "RESUMABLE_CHANGES",
    "RNG_JSON",
    "RNG_TENSORS",
    "SCHEDULER_FILE",
    "EpochPlan",
    "LossPoint",
    "ModelError",
    "RunState",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "checkpoint_dirs",
    "collate",
    "data_fingerprint",
    "default_model_dir",
    "evaluate",
    "load_graphs",
    "load_rng_state",
    "load_tensor_state",
    "plot_loss",
    "read_loss_csv",
    "save_rng_state",
    "train",
    "validation_set",
    "warmup_cosine",
    "write_loss_csv",
]
