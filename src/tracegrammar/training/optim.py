"""The model side of training: the device, the LoRA wrapper, the optimizer with its warm-up +
cosine schedule, and the loss of a batch. torch and peft are imported inside the functions."""

from __future__ import annotations

import contextlib
import math
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TrainError
from .config import TrainConfig
from .datasets import IGNORE_INDEX


def pick_device(requested: str | None) -> str:
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise TrainError(f"device {requested!r} requested, but CUDA is not available")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def hardware(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {_cpu_name()}, {torch.get_num_threads()} threads"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def add_lora(model: Any, cfg: TrainConfig) -> Any:
    """Wrap the base in a fresh LoRA adapter (initialisation seeded by `cfg.seed`)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.filterwarnings("ignore", category=FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. target modules not found in the base
        raise TrainError(f"LoRA does not fit this base: {str(exc).splitlines()[0]}") from None


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier for the step about to be taken (0-based): linear ramp to 1 over `warmup`
    steps (the first step already moves), then cosine down to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(model: Any, cfg: TrainConfig, total: int) -> tuple[Any, Any]:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
    return opt, sched


def batch_loss_sum(model: Any, batch: dict[str, Any], autocast: Any) -> Any:
    """Summed next-token cross-entropy over the target tokens (fp32 logits for the loss)."""
    import torch.nn.functional as F

    with autocast():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
