"""The training recipe: `TrainConfig`, every knob of a run, checked when it is made, and loaded
from a recipe YAML (`training/default.yaml`) with paths taken from the file's folder."""

from __future__ import annotations

import contextlib
import math
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import TrainError
from .datasets import SAMPLE_FORMATS

#: Devices torch can train on here (anything else fails deep inside torch, after loading).
DEVICE_RE = re.compile(r"cpu|cuda(:[0-9]+)?|mps")
#: Knobs that may change between a run and its resumption (they do not change what is learned).
RESUMABLE_CHANGES = frozenset(
    {"eval_every", "eval_max_samples", "save_every", "keep_checkpoints", "device", "progress"}
)


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
