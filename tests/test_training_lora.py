"""LoRA training on a tiny random Llama over the default tokenizer: the loss falls, a killed run
resumes where its last checkpoint left off (exactly: same losses as an uninterrupted run), and an
out dir trained for another base is refused. CPU only, no network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml

from tracegrammar.cli.train import main
from tracegrammar.decoding.models import ADAPTER_META, ModelError, load_model
from tracegrammar.training.lora import (
    CHECKPOINTS,
    LOSS_CSV,
    LOSS_PNG,
    TrainConfig,
    TrainError,
    checkpoint_dirs,
    read_loss_csv,
    train,
)

from .conftest import SAMPLES
from .tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
#: Short samples and tiny batches: the 49k-token LM head dominates a step on two CPU cores.
FAST = {
    "format": "layer",
    "max_length": 160,
    "skip_long": True,
    "batch_size": 4,
    "micro_batch_size": 4,
    "val_fraction": 0.05,
    "eval_every": 1000,
    "eval_max_samples": 4,
    "progress": False,
}


def tiny_llama(out: Path, hidden: int) -> Path:
    """A random 2-layer Llama with the default model's tokenizer (its files saved beside it)."""
    return build_tiny_model(out, hidden=hidden)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"), hidden=64)


@pytest.fixture(scope="session")
def data(shared_data) -> str:
    return str(SAMPLES["rpc-casper"])  # many small graphs: short samples


def config(data: str, base: Path, **changes) -> TrainConfig:
    return TrainConfig(data=(data,), base=str(base), **{**FAST, **changes})


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_base, data) -> Path:
    """A YAML recipe; LoRA also on v/o (a random base barely reacts to q/k alone)."""
    values = {**FAST, "data": [data], "base": str(tiny_base), "max_steps": 6, "lr": 1e-2}
    values["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, recipe):
    """The reference: six steps, uninterrupted."""
    cfg = TrainConfig.from_yaml(recipe)
    out = tmp_path_factory.mktemp("run") / "adapter"
    return cfg, out, train(cfg, out, log=lambda _: None)


def test_training_reduces_loss_and_writes_the_adapter(trained, tiny_base):
    _, out, result = trained
    assert result.finished and result.steps == 6 and result.resumed_from is None
    rows = read_loss_csv(out / LOSS_CSV)
    assert [r[0] for r in rows] == list(range(1, 7))
    assert (rows[-1][1] + rows[-2][1]) / 2 < rows[0][1] - 0.1
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["base_shape"] == [64, 2, 49152] and meta["steps"] == 6
    assert meta["hyperparameters"]["r"] == 8 and meta["final_val_loss"] is not None
    assert (out / "adapter_model.safetensors").is_file() and (out / LOSS_PNG).stat().st_size > 0
    assert not (out / CHECKPOINTS).exists()
    lm = load_model(tiny_base, adapter=out, device="cpu")
    assert lm.adapter == str(out)
    ref = lm.reference()  # the semantic rules generation uses by default
    assert ref is not None and len(ref) > 0 and ref.leaf_types <= {"http", "rpc", "mc", "db", "mq"}


def test_killed_run_resumes_exactly_where_its_checkpoint_was(trained, recipe, tmp_path):
    """SIGKILL a training process after its first checkpoint, resume with the same command: the
    loss log has every step once, and the losses are those of the uninterrupted run (same
    batches, same dropout masks, same optimizer state)."""
    _, ref_out, _ = trained
    out = tmp_path / "adapter"
    args = ["--config", str(recipe), "--out", str(out), "--save-every", "2", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracegrammar.training", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        deadline = time.monotonic() + 120
        while not checkpoint_dirs(out):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / ADAPTER_META).exists()
    state = json.loads((checkpoint_dirs(out)[-1] / "state.json").read_text())
    step = state["step"]
    assert step < 6 and [h[0] for h in state["history"]] == list(range(1, step + 1))

    assert main(args) == 0
    ref = read_loss_csv(ref_out / LOSS_CSV)
    got = read_loss_csv(out / LOSS_CSV)
    assert [r[0] for r in got] == list(range(1, 7))  # nothing missing, nothing twice
    assert [r[1] for r in got[:step]] == pytest.approx([h[1] for h in state["history"]], abs=1e-6)
    assert [r[1] for r in got] == pytest.approx([r[1] for r in ref], abs=1e-4)
    assert json.loads((out / ADAPTER_META).read_text())["steps"] == 6


def test_out_dir_of_another_base_is_refused(trained, tmp_path, data):
    _, out, _ = trained
    other = tiny_llama(tmp_path / "other-base", hidden=32)
    with pytest.raises(
        TrainError, match=r"trained for base .*tiny-llama.* not for base .*other-base"
    ):
        train(config(data, other, max_steps=2), out, log=lambda _: None)
    with pytest.raises(ModelError, match="adapter was trained for a base of shape"):
        load_model(other, adapter=out, device="cpu")


def test_changed_knobs_cannot_resume(trained, tmp_path):
    cfg, _, _ = trained
    out = tmp_path / "adapter"
    first = train(cfg, out, stop_after=1, log=lambda _: None)
    assert not first.finished and [p.name for p in checkpoint_dirs(out)] == ["step-00000001"]
    with pytest.raises(TrainError, match="cannot resume with changed lr"):
        train(replace(cfg, lr=1e-3), out, log=lambda _: None)


def test_bad_input_is_one_line(tmp_path, capsys, tiny_base):
    assert main(["--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv: no such file or directory" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.csv").write_text("timestamp,traceid,service,rpc_id,um,rpctype,dm,rt\n")
    assert main(["--data", str(empty), "--out", str(tmp_path / "o"), "--base", str(tiny_base)]) == 2
    assert "no graphs in" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "training").glob("*.yaml")))
def test_every_recipe_loads_and_names_layers_of_the_base(recipe):
    """A recipe with a typo (a key, a format, a module the base lacks) fails here, not after a
    device call has carried the base to a GPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tracegrammar.decoding.models import default_model_dir

    cfg = TrainConfig.from_yaml(ROOT / "training" / recipe)
    with torch.device("meta"):  # the base's architecture, no weights
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(default_model_dir()))
    linear = {
        n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)
    }
    assert set(cfg.target_modules) <= linear, (cfg.target_modules, linear)


def test_default_recipe_loads():
    cfg = TrainConfig.from_yaml(ROOT / "training" / "default.yaml")
    assert cfg.base is None and cfg.format == "mix"
    assert cfg.data == (str((ROOT.parent / "shared" / "data").resolve()),)
    assert (cfg.r, cfg.alpha, cfg.dropout, cfg.target_modules) == (8, 16, 0.1, ("q_proj", "k_proj"))


#: Recorded per run but not part of a recipe: where the data was (the run's own path or a note),
#: the device it ran on, whether a progress bar was shown.
NOT_RECIPE = ("data", "device", "progress")


@pytest.mark.parametrize(("recipe", "adapter"), [("default", "default"), ("tabular", "tabular")])
def test_recipe_is_what_made_its_shipped_adapter(recipe, adapter):
    """training/<recipe>.yaml, run as its header says, reproduces the hyperparameters recorded in
    adapters/<adapter>/tracegrammar.json: every knob, with no command-line override."""
    cfg = asdict(TrainConfig.from_yaml(ROOT / "training" / f"{recipe}.yaml"))
    used = json.loads((ROOT / "adapters" / adapter / ADAPTER_META).read_text())["hyperparameters"]
    assert set(used) == set(cfg)
    if used["base"] == "default":  # older runs recorded the embedded base by name
        used["base"] = None
    for knob in sorted(set(cfg) - set(NOT_RECIPE)):
        recorded = list(used[knob]) if isinstance(used[knob], list) else used[knob]
        value = list(cfg[knob]) if isinstance(cfg[knob], tuple) else cfg[knob]
        assert value == recorded, f"{recipe}.yaml {knob}: {value!r}, adapter used {recorded!r}"


def test_merged_adapter_computes_what_the_peft_wrapper_computes(trained, tiny_base):
    import torch

    _, out, _ = trained
    ids = torch.tensor([[1, 17, 300, 4000, 12]])
    with torch.inference_mode():
        merged = load_model(tiny_base, adapter=out, device="cpu").model(input_ids=ids).logits
        wrapped = load_model(tiny_base, out, device="cpu", merge=False).model(input_ids=ids).logits
        bare = load_model(tiny_base, device="cpu").model(input_ids=ids).logits
    assert torch.allclose(merged, wrapped, atol=1e-5)
    assert (merged - bare).abs().max() > 1e-4  # the adapter is really applied
