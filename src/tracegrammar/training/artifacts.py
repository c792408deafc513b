"""What a finished run leaves in its folder: the adapter, `loss.csv` and `loss.png`, the shape
prior (`prior.json`) and semantic reference (`reference.json`) of the training graphs, and the
metadata (written last: its presence means the folder is complete)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..decoding.models import ADAPTER_META
from ..decoding.prior import PRIOR_FILE, Prior
from ..io import atomic_writer, temp_prefix, write_figure
from ..reference import REFERENCE_FILE, Reference
from .checkpoint import CHECKPOINTS
from .state import LossPoint, RunState, last_losses

if TYPE_CHECKING:
    from .loop import Run

LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"


def write_final(run: Run, state: RunState) -> None:
    """Adapter (safetensors) + loss.csv + loss.png + prior.json + reference.json, then the
    metadata last: its presence means the directory is complete. Checkpoints are removed (they
    are 3x the adapter's size)."""
    last = last_losses(state.history)
    run.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix("final"), suffix=".tmp", dir=run.out))
    try:
        run.model.save_pretrained(tmp, safe_serialization=True)
        for f in tmp.iterdir():
            os.replace(f, run.out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_loss_csv(run.out / LOSS_CSV, state.history)
    # unset graph attributes at generation time are drawn from the training graphs' shapes
    Prior.from_graphs(run.plan.graphs).save(run.out / PRIOR_FILE)
    # the semantic rules of decoding: the calls (and leaf call types) of the training graphs
    Reference.from_graphs(run.plan.graphs).save(run.out / REFERENCE_FILE)
    try:
        plot_loss(run.out / LOSS_PNG, state.history)
    except ImportError:  # a long run must not fail at the end for want of a plot
        run.log("matplotlib is not installed: no loss.png (loss.csv has the numbers)")
    meta = {
        **run.meta,
        "kind": "final",
        "steps": state.step,
        "epochs_seen": round(
            state.epoch + state.batch / max(1, len(run.plan.batches(state.epoch))), 3
        ),
        "wall_time_s": round(state.wall_time_s, 1),
        "final_train_loss": last[0],
        "final_val_loss": last[1],
        "versions": _versions(),
    }
    _write_atomic(run.out / ADAPTER_META, json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(run.out / CHECKPOINTS, ignore_errors=True)
    run.log(
        f"saved adapter to {run.out}: {state.step} steps, train loss {_fmt(last[0])}, "
        f"validation loss {_fmt(last[1])}, {state.wall_time_s:.0f} s"
    )


def write_loss_csv(path: Path, history: Sequence[LossPoint]) -> None:
    with atomic_writer(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "train_loss", "val_loss"])
        for p in history:
            w.writerow([p.step, f"{p.train:.6f}", "" if p.val is None else f"{p.val:.6f}"])


def read_loss_csv(path: str | Path) -> list[tuple[int, float, float | None]]:
    with open(path, newline="") as fh:
        return [
            (
                int(r["step"]),
                float(r["train_loss"]),
                float(r["val_loss"]) if r["val_loss"] else None,
            )
            for r in csv.DictReader(fh)
        ]


def plot_loss(path: Path, history: Sequence[LossPoint]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p.step for p in history], [p.train for p in history], lw=0.8, label="train")
    vals = [(p.step, p.val) for p in history if p.val is not None]
    if vals:
        ax.plot(*zip(*vals, strict=True), "o-", ms=3, label="validation")
    ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="LoRA fine-tuning")
    ax.legend()
    try:
        fig.tight_layout()
        write_figure(fig, path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _write_atomic(path: Path, text: str) -> None:
    with atomic_writer(path) as fh:
        fh.write(text)


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
