"""What the model is trained on: the graphs, the batches of each epoch (a pure function of the
config, the graphs and the epoch, so a resumed run sees the very same batches), the validation
samples, and their padding into tensors."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TrainError
from ..traces import graph_hash, load_traces
from ..types import CallGraph
from .config import TrainConfig
from .datasets import IGNORE_INDEX, Encoded, Split, build_samples, encode_samples


def load_graphs(paths: Sequence[str | Path]) -> list[CallGraph]:
    """Every graph in the given files/folders (no de-duplication: frequency is signal)."""
    if not paths:
        raise TrainError("no training data: pass --data PATH or set `data` in the config")
    graphs: list[CallGraph] = []
    for path in paths:
        if not Path(path).exists():
            raise TrainError(f"{path}: no such file or directory")
        graphs.extend(load_traces(path))
    if not graphs:
        raise TrainError(f"no graphs in {', '.join(map(str, paths))}")
    return graphs


def data_fingerprint(split: Split) -> str:
    """Which graphs train on which side: a resumed run must see the very same data."""
    import hashlib

    h = hashlib.sha256()
    for side in (split.train, split.validation):
        for key in sorted(graph_hash(g) for g in side):
            h.update(key.encode())
        h.update(b"|")
    return h.hexdigest()[:16]


class EpochPlan:
    """The training batches of each epoch: samples re-drawn per epoch (new root-attribute
    thinning), shuffled by a seeded RNG. A pure function of (config, graphs, epoch), so a resumed
    run rebuilds exactly the batches the killed run would have seen."""

    def __init__(self, cfg: TrainConfig, graphs: Sequence[CallGraph], tok: Any) -> None:
        self.cfg, self.graphs, self.tok = cfg, graphs, tok
        self._cache: tuple[int, list[list[Encoded]], int] | None = None

    def batches(self, epoch: int) -> list[list[Encoded]]:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, *self._build(epoch))
        return self._cache[1]

    def skipped(self, epoch: int) -> int:
        self.batches(epoch)
        return self._cache[2]  # type: ignore[index]

    def _build(self, epoch: int) -> tuple[list[list[Encoded]], int]:
        c = self.cfg
        samples = build_samples(
            self.graphs, c.format, seed=c.seed, salt=f"epoch{epoch}", drop_prob=c.drop_prob
        )
        enc, skipped = encode_samples(
            samples,
            self.tok,
            mask_prompt=c.mask_prompt,
            max_length=c.max_length,
            skip_long=c.skip_long,
        )
        if not enc:
            raise TrainError(f"no training samples fit in max_length {c.max_length}")
        random.Random(f"{c.seed}:order:{epoch}").shuffle(enc)
        return [enc[i : i + c.batch_size] for i in range(0, len(enc), c.batch_size)], skipped


def validation_set(cfg: TrainConfig, graphs: Sequence[CallGraph], tok: Any) -> list[Encoded]:
    """A fixed draw of validation samples (at most `eval_max_samples`), the same at every eval."""
    samples = build_samples(
        graphs, cfg.format, seed=cfg.seed, salt="validation", drop_prob=cfg.drop_prob
    )
    random.Random(f"{cfg.seed}:validation").shuffle(samples)
    enc, _ = encode_samples(
        samples[: cfg.eval_max_samples],
        tok,
        mask_prompt=cfg.mask_prompt,
        max_length=cfg.max_length,
        skip_long=cfg.skip_long,
    )
    return enc


def micro_batches(batch: Sequence[Encoded], size: int) -> list[list[Encoded]]:
    """Sort by length before chunking, so each micro-batch pads to similar lengths."""
    ordered = sorted(batch, key=len)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def collate(items: Sequence[Encoded], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-pad to the longest item: padding gets attention 0 and label IGNORE_INDEX."""
    import torch

    width = max(map(len, items))
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def target_tokens(items: Sequence[Encoded]) -> int:
    """Tokens that carry loss (a label at position i is predicted from position i-1)."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE_INDEX) for e in items)
