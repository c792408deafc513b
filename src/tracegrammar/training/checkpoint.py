"""Checkpoints: save and restore a run (adapter, optimizer, scheduler, random-number states,
position and loss history), find the previous run in an output folder, and check that resuming
continues the same run.

No pickle is ever loaded: optimizer and scheduler states are read with `weights_only=True`, the
random-number states are safetensors and JSON. A checkpoint is written to a temporary folder and
renamed into place, so a kill at any moment leaves the old checkpoint or the new one, never half.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..decoding.models import ADAPTER_META
from ..errors import TrainError
from ..io import remove_stale_temporaries, temp_prefix
from .config import RESUMABLE_CHANGES, TrainConfig
from .state import RunState

if TYPE_CHECKING:
    from .loop import Run

CHECKPOINTS = "checkpoints"
OPTIMIZER_FILE = "optimizer.pt"  # tensors and plain containers only: read with weights_only=True
SCHEDULER_FILE = "scheduler.pt"
RNG_TENSORS = "rng.safetensors"
RNG_JSON = "rng.json"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(run: Run, state: RunState) -> Path:
    """Adapter + optimizer + scheduler + RNG + position + history, renamed into place at once;
    then the oldest checkpoints beyond `keep_checkpoints` are removed."""
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
        doc = {"kind": "checkpoint", **run.meta, **state.as_json()}
        (tmp / "state.json").write_text(json.dumps(doc, indent=1))
        if final.exists():  # a resumed run reached the same step again
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in checkpoint_dirs(run.out)[: -max(1, run.cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore_checkpoint(run: Run, path: Path) -> RunState:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(run.model, load_file(path / "adapter_model.safetensors"))
    run.opt.load_state_dict(load_tensor_state(path / OPTIMIZER_FILE, run.device))
    run.sched.load_state_dict(load_tensor_state(path / SCHEDULER_FILE))
    doc = read_json(path / "state.json")
    load_rng_state(path)
    return RunState.from_json(doc)


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


def remove_temporaries(out: Path) -> None:
    """Half-written checkpoints or final files of a killed run (never renamed into place): only
    names this module makes (`temp_prefix`, with the writer's pid) whose writer is dead, so a
    user's own `.x.tmp` or `.final-*` in the folder is never touched."""
    remove_stale_temporaries(out)
    remove_stale_temporaries(out / CHECKPOINTS)


def previous_run(out: Path) -> dict[str, Any] | None:
    """The latest checkpoint's state, else a finished adapter's metadata, else None."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: exists and is not a directory")
    ckpts = checkpoint_dirs(out)
    if ckpts:
        return {**read_json(ckpts[-1] / "state.json"), "path": str(ckpts[-1])}
    meta = out / ADAPTER_META
    if meta.is_file():
        return {"kind": "final", **read_json(meta)}
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object of a previous run; damage is a TrainError naming the file."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        raise TrainError(f"{path}: unreadable ({str(exc)[:120]}); use another --out") from None
    if not isinstance(doc, dict):
        raise TrainError(f"{path}: not a JSON object; use another --out")
    return doc


def check_compatible(
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
