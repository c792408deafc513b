"""Checkpoints never load a pickle: a crafted file in an `--out` folder is refused with one line
and runs no code; the random-number states round-trip through safetensors + JSON."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tracegrammar.training.lora import (
    OPTIMIZER_FILE,
    RNG_JSON,
    RNG_TENSORS,
    SCHEDULER_FILE,
    TrainConfig,
    TrainError,
    checkpoint_dirs,
    load_rng_state,
    load_tensor_state,
    save_rng_state,
    train,
)

from .conftest import SAMPLES


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): the file appears iff the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_pickle(path: Path, marker: Path) -> None:
    import torch

    torch.save({"state": _WritesMarker(marker)}, path)


def test_crafted_tensor_state_is_refused_without_running(tmp_path):
    evil, marker = tmp_path / "optimizer.pt", tmp_path / "PWNED"
    _evil_pickle(evil, marker)
    with pytest.raises(TrainError, match=r"optimizer\.pt: holds objects other than tensors"):
        load_tensor_state(evil)
    assert not marker.exists()


def test_rng_state_round_trips_without_pickle(tmp_path):
    import torch

    random.seed(7)
    torch.manual_seed(7)
    save_rng_state(tmp_path)
    expected = (random.random(), torch.rand(3).tolist())
    random.seed(99)
    torch.manual_seed(99)
    load_rng_state(tmp_path)
    assert (random.random(), torch.rand(3).tolist()) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RNG_JSON, RNG_TENSORS])


@pytest.fixture(scope="module")
def one_step_checkpoint(tmp_path_factory, tiny_model_dir, shared_data) -> tuple[TrainConfig, Path]:
    cfg = TrainConfig(
        data=(str(SAMPLES["rpc-casper"]),),
        base=str(tiny_model_dir),
        format="layer",
        max_length=160,
        skip_long=True,
        batch_size=4,
        micro_batch_size=4,
        val_fraction=0.05,
        eval_every=1000,
        eval_max_samples=4,
        max_steps=3,
        progress=False,
    )
    out = tmp_path_factory.mktemp("ckpt") / "adapter"
    assert not train(cfg, out, stop_after=1, log=lambda _: None).finished
    return cfg, out


@pytest.mark.parametrize(
    ("crafted", "message"),
    [
        (OPTIMIZER_FILE, r"optimizer\.pt: holds objects other than tensors"),
        (SCHEDULER_FILE, r"scheduler\.pt: holds objects other than tensors"),
        ("rng.pt", "is not loaded"),  # an older version's pickled RNG state: never read
    ],
)
def test_crafted_checkpoint_runs_no_code_on_resume(one_step_checkpoint, tmp_path, crafted, message):
    cfg, ref = one_step_checkpoint
    out = tmp_path / "adapter"
    shutil.copytree(ref, out)
    ckpt = checkpoint_dirs(out)[-1]
    marker = tmp_path / "PWNED"
    _evil_pickle(ckpt / crafted, marker)
    if crafted == "rng.pt":  # the layout of a checkpoint from before this version
        (ckpt / RNG_TENSORS).unlink()
        (ckpt / RNG_JSON).unlink()
    with pytest.raises(TrainError, match=message) as info:
        train(cfg, out, log=lambda _: None)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_clean_checkpoint_resumes(one_step_checkpoint, tmp_path):
    cfg, ref = one_step_checkpoint
    out = tmp_path / "adapter"
    shutil.copytree(ref, out)
    result = train(cfg, out, log=lambda _: None)
    assert result.finished and result.resumed_from == 1 and result.steps == 3


def test_no_pickle_is_loaded_anywhere():
    """Static law over the sources: torch.load only with weights_only=True, no pickle loads."""
    import re

    src = Path(__file__).resolve().parents[1] / "src"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        assert not re.search(r"pickle\.loads?\(|Unpickler\(|joblib\.load|np\.load\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
