"""Where a training run stands: its position in the data and its loss history, as typed records.

A checkpoint's `state.json` keeps the history as `[step, train_loss, val_loss|null]` rows (the
format earlier versions wrote, so their checkpoints still resume); in memory it is `LossPoint`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LossPoint:
    """The loss after one optimizer step: the step's training loss, and the validation loss when
    that step was evaluated (None otherwise). Both are token means in nats."""

    step: int
    train: float
    val: float | None = None

    def as_row(self) -> list[Any]:
        return [self.step, self.train, self.val]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LossPoint:
        step, train, val = row
        return cls(int(step), float(train), None if val is None else float(val))


@dataclass
class RunState:
    """The mutable position of a run: everything a checkpoint must restore besides tensors."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch within `epoch`
    wall_time_s: float = 0.0
    history: list[LossPoint] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "wall_time_s": self.wall_time_s,
            "history": [p.as_row() for p in self.history],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunState:
        """The state saved by `as_json` (other keys of the document are ignored)."""
        return cls(
            step=int(doc.get("step", 0)),
            epoch=int(doc.get("epoch", 0)),
            batch=int(doc.get("batch", 0)),
            wall_time_s=float(doc.get("wall_time_s", 0.0)),
            history=[LossPoint.from_row(r) for r in doc.get("history", [])],
        )


def last_losses(
    history: Sequence[LossPoint], window: int = 10
) -> tuple[float | None, float | None]:
    """Mean train loss of the last `window` steps, and the last validation loss."""
    train = [p.train for p in history[-window:]]
    vals = [p.val for p in history if p.val is not None]
    return (sum(train) / len(train) if train else None, vals[-1] if vals else None)
