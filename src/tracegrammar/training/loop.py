"""The training run: `train` prepares the model, data and optimizer (resuming from the latest
checkpoint when there is one), runs the optimisation loop, checkpoints every `save_every` steps
and writes the final adapter at the end.

Why the loop is hand-written rather than `transformers.Trainer`: a killed run must resume at the
exact sample it stopped at, with the same attribute thinning and dropout masks, and the output
directory must carry the metadata that `decoding.models.load_model` checks.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..decoding.models import base_shape, load_model
from ..errors import TrainError
from .artifacts import LOSS_CSV, write_final, write_loss_csv
from .batches import (
    EpochPlan,
    collate,
    data_fingerprint,
    load_graphs,
    micro_batches,
    target_tokens,
    validation_set,
)
from .checkpoint import (
    check_compatible,
    previous_run,
    remove_temporaries,
    restore_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .datasets import Encoded, Split, split_graphs
from .optim import add_lora, batch_loss_sum, hardware, make_optimizer, pick_device
from .state import LossPoint, RunState, last_losses


@dataclass(frozen=True)
class TrainResult:
    """What a `train` call did. `finished` is False when it stopped early (`stop_after`)."""

    out: Path
    steps: int
    total_steps: int
    finished: bool
    resumed_from: int | None
    final_train_loss: float | None
    final_val_loss: float | None
    wall_time_s: float


@dataclass
class Run:
    """Everything a training step needs, built once per `train` call."""

    cfg: TrainConfig
    out: Path
    model: Any
    tok: Any
    opt: Any
    sched: Any
    plan: EpochPlan
    val: list[Encoded]
    device: str
    total: int
    meta: dict[str, Any]
    log: Callable[[str], None]

    def autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda") and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def pad_id(self) -> int:
        pad = self.tok.pad_token_id
        return int(pad if pad is not None else self.tok.eos_token_id)


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    stop_after: int | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume training) a LoRA adapter into `out`. `stop_after` ends this call after
    that many optimizer steps, leaving a checkpoint to resume from (time-boxed sessions, tests)."""
    log = log or _stderr
    out = Path(out)
    if out.exists() and not out.is_dir():  # before loading data or the model
        raise TrainError(f"--out {out}: exists and is not a directory")
    if stop_after is not None and (
        isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1
    ):
        raise TrainError(f"stop_after must be an integer >= 1, got {stop_after!r}")
    if cfg.base is not None and not (Path(cfg.base) / "config.json").is_file():
        raise TrainError(f"base {cfg.base}: not a Hugging Face model directory (no config.json)")
    graphs = load_graphs(cfg.data)
    split = split_graphs(graphs, fraction=cfg.val_fraction, seed=cfg.split_seed)
    if not split.train:
        raise TrainError(f"all {len(graphs)} graphs fell in the validation split")
    run, state, resumed = _prepare(cfg, out, split, log)
    if state.step >= run.total:
        log(f"{out}: already trained for {state.step} steps; nothing to do")
    state = _loop(run, state, stop_after)
    finished = state.step >= run.total
    if finished:
        if state.history and state.history[-1].val is None:  # the last step was not evaluated
            state.history[-1] = replace(state.history[-1], val=evaluate(run))
        write_final(run, state)
    last = last_losses(state.history)
    return TrainResult(
        out, state.step, run.total, finished, resumed, last[0], last[1], state.wall_time_s
    )


def _prepare(
    cfg: TrainConfig, out: Path, split: Split, log: Callable[[str], None]
) -> tuple[Run, RunState, int | None]:
    device = pick_device(cfg.device)
    lm = load_model(cfg.base, device=device)
    base = str(lm.base)
    shape = base_shape(lm.model)
    fingerprint = data_fingerprint(split)
    remove_temporaries(out)
    previous = previous_run(out)
    if previous is not None:
        check_compatible(out, previous, cfg, base, shape, fingerprint)
    plan = EpochPlan(cfg, split.train, lm.tokenizer)
    per_epoch = len(plan.batches(0))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    samples = sum(map(len, plan.batches(0)))
    log(
        f"data: {len(split.train)} train / {len(split.validation)} validation graphs, "
        f"{samples} train samples per epoch ({plan.skipped(0)} skipped: longer than "
        f"{cfg.max_length} tokens), {per_epoch} batches of {cfg.batch_size} per epoch; "
        f"{total} steps on {hardware(device)}"
    )
    model = add_lora(lm.model, cfg)
    model.train()
    opt, sched = make_optimizer(model, cfg, total)
    meta = {
        "base": base,
        "base_name": Path(base).name,
        "base_shape": list(shape),
        "data": list(cfg.data),
        "data_fingerprint": fingerprint,
        "split_seed": cfg.split_seed,
        "val_fraction": cfg.val_fraction,
        "train_graphs": len(split.train),
        "validation_graphs": len(split.validation),
        "train_samples_epoch0": samples,
        "skipped_long_epoch0": plan.skipped(0),
        "total_steps": total,
        "hardware": hardware(device),
        "hyperparameters": asdict(cfg),
    }
    val = validation_set(cfg, split.validation, lm.tokenizer)
    run = Run(cfg, out, model, lm.tokenizer, opt, sched, plan, val, device, total, meta, log)
    state, resumed = RunState(), None
    if previous is not None and previous.get("kind") == "checkpoint":
        state = restore_checkpoint(run, Path(previous["path"]))
        resumed = state.step
        log(f"resumed from checkpoint at step {state.step} of {total}")
    return run, state, resumed


def _loop(run: Run, state: RunState, stop_after: int | None) -> RunState:
    from tqdm.auto import tqdm

    cfg = run.cfg
    t0, wall0 = time.monotonic(), state.wall_time_s
    bar = tqdm(
        total=run.total,
        initial=state.step,
        desc="train",
        disable=not cfg.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    done = 0
    try:
        while state.step < run.total and (stop_after is None or done < stop_after):
            batches = run.plan.batches(state.epoch)
            lr = run.sched.get_last_lr()[0]  # the rate this step uses
            loss = _train_step(run, batches[state.batch])
            state.step += 1
            done += 1
            state.batch += 1
            if state.batch >= len(batches):
                state.epoch, state.batch = state.epoch + 1, 0
            val = evaluate(run) if state.step % cfg.eval_every == 0 and run.val else None
            state.history.append(LossPoint(state.step, loss, val))
            state.wall_time_s = wall0 + time.monotonic() - t0
            bar.update(1)
            bar.set_postfix(_postfix(loss, lr, state.history), refresh=False)
            if state.step % cfg.save_every == 0 or (stop_after is not None and done == stop_after):
                save_checkpoint(run, state)
                write_loss_csv(run.out / LOSS_CSV, state.history)
    finally:
        bar.close()
    return state


def _postfix(loss: float, lr: float, history: list[LossPoint]) -> dict[str, str]:
    post = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}"}
    vals = [p.val for p in history if p.val is not None]
    if vals:
        post["val"] = f"{vals[-1]:.4f}"
    return post


def _train_step(run: Run, batch: list[Encoded]) -> float:
    """One optimizer step over `batch`: the loss is the token mean over the whole batch, however
    it is split into micro-batches."""
    import torch

    run.opt.zero_grad(set_to_none=True)
    n_tokens = target_tokens(batch)
    total = 0.0
    for micro in micro_batches(batch, run.cfg.micro_batch_size):
        loss_sum = batch_loss_sum(run.model, collate(micro, run.pad_id, run.device), run.autocast)
        (loss_sum / n_tokens).backward()
        total += float(loss_sum.detach())
    torch.nn.utils.clip_grad_norm_(
        [p for p in run.model.parameters() if p.requires_grad], run.cfg.grad_clip
    )
    run.opt.step()
    run.sched.step()
    return total / n_tokens


def evaluate(run: Run) -> float | None:
    """Token-mean loss over the validation set (dropout off, no gradients)."""
    import torch

    if not run.val:
        return None
    run.model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for micro in micro_batches(run.val, run.cfg.micro_batch_size):
            batch = collate(micro, run.pad_id, run.device)
            total += float(batch_loss_sum(run.model, batch, run.autocast))
            n += target_tokens(micro)
    run.model.train()
    return total / n


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
