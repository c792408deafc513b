"""Damaged model and adapter files are refused with a ModelError naming the path, at load time
(never a traceback, never an adapter that loads and writes NaN later)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tracegrammar.decoding.models import ModelError, load_model


def test_truncated_model_weights(tiny_model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match=f"{broken}: cannot load the model"):
        load_model(broken, device="cpu")


def _adapter(base: Path, out: Path, value: float | None) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    if value is not None:
        with torch.no_grad():
            next(p for n, p in peft.named_parameters() if "lora_B" in n).fill_(value)
    peft.save_pretrained(out)
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_adapter_with_non_finite_weights(tiny_model_dir, tmp_path, value):
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter", value)
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_model(tiny_model_dir, adapter, device="cpu")


def test_truncated_adapter_weights(tiny_model_dir, tmp_path):
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter", None)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match=f"{adapter}: does not fit base"):
        load_model(tiny_model_dir, adapter, device="cpu")


DAMAGED_ADAPTER_FILES = {
    "config-a-list": ("adapter_config.json", "[]"),
    "config-bad-rank": (
        "adapter_config.json",
        '{"peft_type": "LORA", "r": "x", "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}',
    ),
    "meta-shape-not-a-list": ("tracegrammar.json", '{"base_shape": 5}'),
    "weights-missing": ("adapter_model.safetensors", None),
}


@pytest.mark.parametrize("name", DAMAGED_ADAPTER_FILES)
def test_damaged_adapter_files_are_model_errors(tiny_model_dir, tmp_path, name):
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter", None)
    file, text = DAMAGED_ADAPTER_FILES[name]
    if text is None:
        (adapter / file).unlink()
    else:
        (adapter / file).write_text(text)
    with pytest.raises(ModelError, match=str(adapter)):
        load_model(tiny_model_dir, adapter, device="cpu")


def test_model_config_that_is_a_list(tiny_model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("[]")
    with pytest.raises(ModelError, match=f"{broken}: cannot load the model"):
        load_model(broken, device="cpu")


@pytest.mark.parametrize(
    "text", ["[]", "{}", "[[-1, 1, 0]]", "[[2, 1.5, 0]]", "[" * 100_000], ids=lambda t: t[:12]
)
def test_damaged_prior_is_a_model_error(tmp_path, text):
    from tracegrammar.decoding.prior import Prior

    (tmp_path / "prior.json").write_text(text)
    with pytest.raises(ModelError, match="not a shape prior"):
        Prior.load(tmp_path / "prior.json")


def test_deeply_nested_reference_is_an_input_error(tmp_path):
    from tracegrammar.errors import InputError
    from tracegrammar.reference import Reference

    (tmp_path / "reference.json").write_text("[" * 100_000)
    with pytest.raises(InputError, match="not a reference file"):
        Reference.load(tmp_path / "reference.json")
