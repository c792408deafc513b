"""LoRA fine-tuning of a causal LM on layer (or tabular) samples, resumable after a kill.

The papers' recipe is the default: LoRA r=8, alpha=16, dropout 0.1 on the query/key projections,
AdamW at 3e-4 with linear warm-up and cosine decay, gradient clipping at 1.0.

Why the loop is hand-written rather than `transformers.Trainer`: a killed run must resume at the
exact sample it stopped at, with the same attribute thinning and dropout masks, and the output
directory must carry the metadata that `decoding.models.load_model` checks. Every `save_every`
optimizer steps a checkpoint holds the adapter, optimizer, scheduler, RNG states, the data-order
position (epoch, batch) and the loss history (no pickle is ever loaded: optimizer and scheduler
states are read with `weights_only=True`, the RNG states are safetensors and JSON); it is
written to a temporary directory and renamed into place, so a kill at any moment leaves either
the old checkpoint or the new one, never half.

torch, transformers and peft are imported inside the functions that use them, so the config (and
the CLI's `--help`) loads without them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..decoding.models import ADAPTER_META, ModelError, base_shape, default_model_dir, load_model
from ..decoding.prior import PRIOR_FILE, Prior
from ..errors import TrainError
from ..io import atomic_writer, remove_stale_temporaries, temp_prefix
from ..reference import REFERENCE_FILE, Reference
from ..traces import graph_hash, load_traces
from ..types import CallGraph
from .datasets import (
    IGNORE_INDEX,
    SAMPLE_FORMATS,
    Encoded,
    Split,
    build_samples,
    encode_samples,
    split_graphs,
)

CHECKPOINTS = "checkpoints"
OPTIMIZER_FILE = "optimizer.pt"  # tensors and plain containers only: read with weights_only=True
SCHEDULER_FILE = "scheduler.pt"
RNG_TENSORS = "rng.safetensors"
RNG_JSON = "rng.json"
LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"
#: Devices torch can train on here (anything else fails deep inside torch, after loading).
DEVICE_RE = re.compile(r"cpu|cuda(:[0-9]+)?|mps")
#: Knobs that may change between a run and its resumption (they do not change what is learned).
RESUMABLE_CHANGES = frozenset(
    {"eval_every", "eval_max_samples", "save_every", "keep_checkpoints", "device", "progress"}
)


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run. `batch_size` samples make one optimizer step, processed as
    micro-batches of `micro_batch_size` (gradient accumulation); `max_steps` (when set) overrides
    `epochs`. `base` None is the embedded default model."""

    data: tuple[str, ...] = ()
    base: str | None = None
    format: str = "mix"
    drop_prob: float = 0.9
    val_fraction: float = 0.1
    split_seed: int = 0
    max_length: int = 512
    skip_long: bool = False
    mask_prompt: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj")
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    batch_size: int = 32
    micro_batch_size: int = 8
    epochs: float = 3.0
    max_steps: int | None = None
    seed: int = 0
    eval_every: int = 50
    eval_max_samples: int = 1024
    save_every: int = 50
    keep_checkpoints: int = 2
    device: str | None = None
    bf16: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise TrainError(f"config: {problem}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base_dir: Path | None = None) -> TrainConfig:
        """Keys are field names; relative `data`/`base` paths are taken from `base_dir` (the YAML
        file's folder), so a recipe works from any working directory."""
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise TrainError(f"config: unknown key(s) {', '.join(unknown)}")
        kwargs = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
        if base_dir is not None:
            kwargs = _resolve_paths(kwargs, base_dir)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise TrainError(f"{p}: no such config file")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except UnicodeDecodeError as exc:
            raise TrainError(f"{p}: not UTF-8 text ({exc.reason})") from None
        except yaml.YAMLError as exc:
            raise TrainError(f"{p}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None
        if not isinstance(values, dict):
            raise TrainError(f"{p}: a config is a mapping of key: value")
        return cls.from_dict(values, p.resolve().parent)

    def override(self, **values: Any) -> TrainConfig:
        """A copy with the given fields replaced; None means "keep" (how CLI flags arrive)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_batch_size


def _problems(c: TrainConfig) -> Iterator[str]:
    if c.format not in SAMPLE_FORMATS:
        yield f"format must be one of {SAMPLE_FORMATS}, got {c.format!r}"
    if not 0.0 <= c.drop_prob <= 1.0:
        yield f"drop_prob must be in [0, 1], got {c.drop_prob}"
    for name in ("max_length", "r", "batch_size", "micro_batch_size", "eval_every", "save_every"):
        if getattr(c, name) < 1:
            yield f"{name} must be at least 1, got {getattr(c, name)}"
    if c.micro_batch_size >= 1 and c.batch_size % c.micro_batch_size:
        b, m = c.batch_size, c.micro_batch_size
        yield f"batch_size {b} is not a multiple of micro_batch_size {m}"
    if c.max_steps is not None and c.max_steps < 1:
        yield f"max_steps must be at least 1, got {c.max_steps}"
    if c.max_steps is None and not (math.isfinite(c.epochs) and c.epochs > 0):
        yield f"epochs must be a finite number > 0, got {c.epochs}"
    for name in ("lr", "grad_clip"):
        if not (math.isfinite(getattr(c, name)) and getattr(c, name) > 0):
            yield f"{name} must be a finite number > 0, got {getattr(c, name)}"
    if not (math.isfinite(c.weight_decay) and c.weight_decay >= 0):
        yield f"weight_decay must be a finite number >= 0, got {c.weight_decay}"
    if not 0.0 <= c.dropout < 1.0:
        yield f"dropout must be in [0, 1), got {c.dropout}"
    if c.device is not None and not DEVICE_RE.fullmatch(c.device):
        yield f"device must be cpu, cuda, cuda:<n> or mps, got {c.device!r}"
    if not c.target_modules:
        yield "target_modules is empty"
    if not 0.0 <= c.warmup_ratio < 1.0:
        yield f"warmup_ratio must be in [0, 1), got {c.warmup_ratio}"


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """YAML values -> the field's type; wrong types are errors, not silent surprises."""
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if typing.get_origin(hint) is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise TrainError(f"config: {key} must be a string or a list of strings")
        return tuple(items)
    want = next((a for a in (*args, hint) if a in (bool, int, float, str)), None)
    if want is float and isinstance(value, str):  # PyYAML reads `3e-4` (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    ok = isinstance(value, want) if want is not None else True
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, bool):
        ok = False
    if not ok and want is not None:
        raise TrainError(f"config: {key} must be {want.__name__}, got {value!r}")
    return value


def _resolve_paths(kwargs: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = dict(kwargs)
    if "data" in out:
        out["data"] = tuple(str((base_dir / p).resolve()) for p in out["data"])
    if out.get("base") in ("default", ""):
        out["base"] = None
    elif out.get("base") is not None:
        out["base"] = str((base_dir / out["base"]).resolve())
    return out


# ------------------------------------------------------------------------------------------------
# results and state
# ------------------------------------------------------------------------------------------------


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
class _State:
    """The mutable position of a run: everything a checkpoint must restore besides tensors."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch within `epoch`
    wall_time_s: float = 0.0
    history: list[list[Any]] = field(default_factory=list)  # [step, train_loss, val_loss|None]


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# model, optimizer, schedule
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


@dataclass
class _Run:
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
        _finish(run, state)
    last = _last_losses(state.history)
    return TrainResult(
        out, state.step, run.total, finished, resumed, last[0], last[1], state.wall_time_s
    )


def _prepare(
    cfg: TrainConfig, out: Path, split: Split, log: Callable[[str], None]
) -> tuple[_Run, _State, int | None]:
    device = pick_device(cfg.device)
    lm = load_model(cfg.base, device=device)
    base = str(lm.base)
    shape = base_shape(lm.model)
    fingerprint = data_fingerprint(split)
    _remove_temporaries(out)
    previous = _previous_run(out)
    if previous is not None:
        _check_compatible(out, previous, cfg, base, shape, fingerprint)
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
    run = _Run(cfg, out, model, lm.tokenizer, opt, sched, plan, val, device, total, meta, log)
    state, resumed = _State(), None
    if previous is not None and previous.get("kind") == "checkpoint":
        state = _restore(run, Path(previous["path"]))
        resumed = state.step
        log(f"resumed from checkpoint at step {state.step} of {total}")
    return run, state, resumed


def _loop(run: _Run, state: _State, stop_after: int | None) -> _State:
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
            state.history.append([state.step, loss, val])
            state.wall_time_s = wall0 + time.monotonic() - t0
            bar.update(1)
            bar.set_postfix(_postfix(loss, lr, state.history), refresh=False)
            if state.step % cfg.save_every == 0 or (stop_after is not None and done == stop_after):
                save_checkpoint(run, state)
    finally:
        bar.close()
    return state


def _postfix(loss: float, lr: float, history: list[list[Any]]) -> dict[str, str]:
    post = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}"}
    vals = [h[2] for h in history if h[2] is not None]
    if vals:
        post["val"] = f"{vals[-1]:.4f}"
    return post


def _train_step(run: _Run, batch: list[Encoded]) -> float:
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


def evaluate(run: _Run) -> float | None:
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


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(run: _Run, state: _State) -> Path:
    """Adapter + optimizer + scheduler + RNG + position + history, renamed into place at once."""
    import torch

    root = run.out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=".tmp", dir=root))
    try:
        run.model.save_pretrained(tmp)
        torch.save(run.opt.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(run.sched.state_dict(), tmp / SCHEDULER_FILE)
        save_rng_state(tmp)
        doc = {"kind": "checkpoint", **run.meta, **asdict(state)}
        (tmp / "state.json").write_text(json.dumps(doc, indent=1))
        if final.exists():  # a resumed run reached the same step again
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_loss_csv(run.out / LOSS_CSV, state.history)
    for old in checkpoint_dirs(run.out)[: -max(1, run.cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _restore(run: _Run, path: Path) -> _State:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(run.model, load_file(path / "adapter_model.safetensors"))
    run.opt.load_state_dict(load_tensor_state(path / OPTIMIZER_FILE, run.device))
    run.sched.load_state_dict(load_tensor_state(path / SCHEDULER_FILE))
    doc = _read_json(path / "state.json")
    load_rng_state(path)
    names = {f.name for f in fields(_State)}
    return _State(**{k: v for k, v in doc.items() if k in names})


def load_tensor_state(path: Path, map_location: Any = None) -> Any:
    """A `torch.save`d state dict, read with `weights_only=True`: only tensors and plain
    containers are rebuilt, so a crafted file in someone's `--out` folder cannot run code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's message invites loading it unsafely: not ours to say
        raise TrainError(
            f"{path}: holds objects other than tensors and plain containers; refused, not loaded "
            "(a checkpoint of this version never does)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"{path}: unreadable checkpoint state ({reason})") from None


def save_rng_state(folder: Path) -> None:
    """Random-number states without pickle: torch's as uint8 tensors (safetensors), Python's as
    JSON. `rng.pt` (a pickle) of older versions is never written or read again."""
    import torch
    from safetensors.torch import save_file

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    save_file(tensors, str(folder / RNG_TENSORS))
    version, internal, gauss = random.getstate()
    doc = {"python": {"version": version, "state": list(internal), "gauss_next": gauss}}
    (folder / RNG_JSON).write_text(json.dumps(doc))


def load_rng_state(folder: Path) -> None:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (folder / RNG_TENSORS).is_file() or not (folder / RNG_JSON).is_file():
        raise TrainError(
            f"{folder}: checkpoint has no {RNG_TENSORS} / {RNG_JSON} (written by an older "
            "version, whose pickled rng.pt is not loaded); use another --out"
        )
    try:
        tensors = load_file(str(folder / RNG_TENSORS))
        py = json.loads((folder / RNG_JSON).read_text())["python"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
        torch.set_rng_state(tensors["torch"])
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise TrainError(f"{folder}: unreadable random-number state ({exc})") from None
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _remove_temporaries(out: Path) -> None:
    """Half-written checkpoints or final files of a killed run (never renamed into place): only
    names this module makes (`temp_prefix`, with the writer's pid) whose writer is dead, so a
    user's own `.x.tmp` or `.final-*` in the folder is never touched."""
    remove_stale_temporaries(out)
    remove_stale_temporaries(out / CHECKPOINTS)


def _previous_run(out: Path) -> dict[str, Any] | None:
    """The latest checkpoint's state, else a finished adapter's metadata, else None."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: exists and is not a directory")
    ckpts = checkpoint_dirs(out)
    if ckpts:
        return {**_read_json(ckpts[-1] / "state.json"), "path": str(ckpts[-1])}
    meta = out / ADAPTER_META
    if meta.is_file():
        return {"kind": "final", **_read_json(meta)}
    return None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object of a previous run; damage is a TrainError naming the file."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        raise TrainError(f"{path}: unreadable ({str(exc)[:120]}); use another --out") from None
    if not isinstance(doc, dict):
        raise TrainError(f"{path}: not a JSON object; use another --out")
    return doc


def _check_compatible(
    out: Path,
    prev: dict[str, Any],
    cfg: TrainConfig,
    base: str,
    shape: tuple[int, ...],
    fingerprint: str,
) -> None:
    """Resuming must continue the same run: same base, same data, same learning knobs."""
    prev_shape = tuple(prev.get("base_shape") or ())
    if prev_shape != tuple(shape) or prev.get("base_name") != Path(base).name:
        raise TrainError(
            f"{out}: was trained for base {prev.get('base')} of shape {prev_shape} "
            f"(hidden, layers, vocab), not for base {base} of shape {tuple(shape)}; "
            "use another --out"
        )
    if prev["kind"] == "final":
        raise TrainError(f"{out}: already holds a finished adapter; use another --out")
    if prev.get("data_fingerprint") != fingerprint:
        raise TrainError(f"{out}: its checkpoint was trained on other data; use another --out")
    before = dict(prev.get("hyperparameters") or {})
    now = asdict(cfg)
    changed = sorted(
        k
        for k in now
        if k not in RESUMABLE_CHANGES
        and k not in ("data", "base")
        and _norm(before.get(k)) != _norm(now[k])
    )
    if changed:
        raise TrainError(
            f"{out}: cannot resume with changed {', '.join(changed)} "
            f"(checkpoint has {', '.join(f'{k}={before.get(k)!r}' for k in changed)})"
        )


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


# ------------------------------------------------------------------------------------------------
# final output
# ------------------------------------------------------------------------------------------------


def _finish(run: _Run, state: _State) -> None:
    """Adapter (safetensors) + loss.csv + loss.png, then the metadata last: its presence means
    the directory is complete. Checkpoints are removed (they are 3x the adapter's size)."""
    if state.history and state.history[-1][2] is None:  # the last step was not evaluated yet
        state.history[-1][2] = evaluate(run)
    last = _last_losses(state.history)
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


def _last_losses(history: list[list[Any]], window: int = 10) -> tuple[float | None, float | None]:
    """Mean train loss of the last `window` steps, and the last validation loss."""
    train = [h[1] for h in history[-window:]]
    vals = [h[2] for h in history if h[2] is not None]
    return (sum(train) / len(train) if train else None, vals[-1] if vals else None)


def write_loss_csv(path: Path, history: list[list[Any]]) -> None:
    with atomic_writer(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "train_loss", "val_loss"])
        for step, loss, val in history:
            w.writerow([step, f"{loss:.6f}", "" if val is None else f"{val:.6f}"])


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


def plot_loss(path: Path, history: list[list[Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h[0] for h in history], [h[1] for h in history], lw=0.8, label="train")
    vals = [(h[0], h[2]) for h in history if h[2] is not None]
    if vals:
        ax.plot(*zip(*vals, strict=True), "o-", ms=3, label="validation")
    ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="LoRA fine-tuning")
    ax.legend()
    fig.tight_layout()
    with atomic_writer(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = [
    "ModelError",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "default_model_dir",
    "read_loss_csv",
    "train",
]
