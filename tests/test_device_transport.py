"""The base model's way to a lent accelerator machine (bench/device/base.py and the models
helpers it uses), without a device: parts cut, checked and refused as they would be there, the
converted model's tokenizer taken from the carried folder, and the parameters' digest."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from tracegrammar.decoding import models

ROOT = Path(__file__).resolve().parents[1]


def _kit():
    spec = importlib.util.spec_from_file_location("device_base", ROOT / "bench/device/base.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("total", "parts", "balance"),
    [(10, 1, 0), (100, 2, 0), (101, 2, 7), (90_400_000, 2, 4_100_000), (9, 3, 2), (10, 2, 1000)],
)
def test_part_bounds_cover_the_bytes_and_balance_the_calls(total, parts, balance):
    bounds = _kit().part_bounds(total, parts, balance)
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    assert bounds[0] == 0 and bounds[-1] == total and len(sizes) == parts
    assert all(s >= 0 for s in sizes)
    if parts > 1 and balance <= total / parts:  # a balance the sizes allow is met to a byte
        assert abs((sizes[-1] - sizes[0]) - balance) <= 1


def _manifest(device: Path, packed: bytes, parts: int) -> None:
    kit = _kit()
    kit.write_parts(packed, device, parts, balance=3)
    (device / "base").mkdir(parents=True)
    manifest = {"gguf": "x.gguf", "parts": parts, "packed_sha256": kit._sha256(packed),
                "parameters_sha256": "0" * 64}  # fmt: skip
    (device / "base" / kit.WEIGHTS).write_text(json.dumps(manifest))


def test_status_names_the_parts_missing_or_damaged(tmp_path):
    kit = _kit()
    packed = bytes(range(256)) * 40
    _manifest(tmp_path, packed, 3)
    manifest, good, bad = kit.status(tmp_path)
    assert manifest["parts"] == 3 and good == [1, 2, 3] and bad == []
    joined = b"".join((tmp_path / f"gguf-{k}" / kit.PART).read_bytes() for k in good)
    assert joined == packed
    part2 = tmp_path / "gguf-2" / kit.PART
    part2.write_bytes(part2.read_bytes()[:-1] + b"!")  # damaged in transit
    (tmp_path / "gguf-3" / kit.PART).unlink()  # never carried
    assert kit.status(tmp_path)[1:] == ([1], [2, 3])
    with pytest.raises(SystemExit, match=r"gguf-2, .*gguf-3"):
        kit.unpack(tmp_path)


def test_status_before_the_manifest_arrives(tmp_path):
    kit = _kit()
    kit.write_parts(b"abcdefgh", tmp_path, 2)
    (tmp_path / "gguf-2").rename(tmp_path / "later")  # the second part comes with the next call
    manifest, good, bad = kit.status(tmp_path)
    assert manifest == {} and good == [1] and bad == [2]
    with pytest.raises(SystemExit, match=r"weights\.json: missing"):
        kit.unpack(tmp_path)


def _tiny(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    return LlamaForCausalLM(config)


def test_parameters_digest_is_of_the_values():
    import torch

    a, b = _tiny(0), _tiny(0)
    assert models.parameters_digest(a) == models.parameters_digest(b)
    assert models.parameters_digest(a) != models.parameters_digest(_tiny(1))
    with torch.no_grad():
        next(iter(b.parameters())).view(-1)[0] += 1e-6
    assert models.parameters_digest(a) != models.parameters_digest(b)


def test_conversion_takes_the_carried_tokenizer(tmp_path, monkeypatch):
    """A machine whose transformers reads the GGUF's tokenizer differently gets the tokenizer of
    the machine that packed it, byte for byte."""
    import transformers

    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: _tiny(0)
    )
    carried = tmp_path / "base"
    carried.mkdir()
    (carried / "tokenizer.json").write_text('{"made": "here"}')
    (carried / "tokenizer_config.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    models._convert_gguf(tmp_path / "x.gguf", out, carried)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").read_text() == '{"made": "here"}'
    assert (out / "tokenizer_config.json").is_file()
    (carried / "tokenizer.json").unlink()
    with pytest.raises(models.ModelError, match=r"no tokenizer\.json"):
        models._convert_gguf(tmp_path / "x.gguf", tmp_path / "out", carried)


def test_install_refuses_another_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEGRAMMAR_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not the one")
    with pytest.raises(models.ModelError, match=r"sha256 .* is not the expected"):
        models.install_default_base(fake, tokenizer=tmp_path)
    assert not (tmp_path / "cache" / models.DEFAULT_NAME).exists()
