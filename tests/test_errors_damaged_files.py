"""Damaged or hostile files the user names (graphs, request files, configs, saved models, a
previous run's folder) are InputErrors naming the file, never a traceback."""

from __future__ import annotations

import json

import pytest

from tracegrammar.cli import main
from tracegrammar.errors import InputError, ModelError, TraceFormatError, TrainError
from tracegrammar.io import read_jsonl

GOOD = (
    json.dumps(
        {
            "service": "S_1",
            "edges": [
                dict(rpc_id="0", source="USER", destination="MS_1", type="http", start=0, finish=5)
            ],
        }
    )
    + "\n"
)


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        (b"\xff\xfe not utf-8\n", "not UTF-8 text after line"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "not JSON"),
        (b"[1, 2]\n", "a JSON object"),
        (b'{"service": "S_1"}\n', "not a call graph record"),
        (b"{truncated\n", "not JSON"),
    ],
)
def test_bad_jsonl_lines(tmp_path, second_line, message):
    path = tmp_path / "g.jsonl"
    path.write_bytes(GOOD.encode() + second_line)
    with pytest.raises(TraceFormatError, match=rf"g\.jsonl(:2)?: .*{message}"):
        list(read_jsonl(path))


def test_request_file_not_utf8(tmp_path, capsys):
    req = tmp_path / "r.yaml"
    req.write_bytes(b"- {service: S_\xff}\n")
    assert main(["generate", "--requests", str(req), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "r.yaml: not UTF-8" in err[0]


def test_train_config_not_utf8(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"lr: \xff\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "c.yaml: not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not json", b"\xff", b"[1, 2]"])
def test_damaged_previous_run_is_a_train_error(tmp_path, content):
    from tracegrammar.training.checkpoint import CHECKPOINTS, previous_run

    ckpt = tmp_path / "out" / CHECKPOINTS / "step-00000001"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_bytes(content)
    with pytest.raises(TrainError, match=r"state\.json: "):
        previous_run(tmp_path / "out")


@pytest.mark.parametrize("content", [b"not json", b"[[1, 2]]", b'{"a": 1}', b"\xff"])
def test_damaged_prior_is_a_model_error(tmp_path, content):
    from tracegrammar.decoding.prior import Prior

    path = tmp_path / "prior.json"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"prior\.json: not a shape prior"):
        Prior.load(path)


@pytest.mark.parametrize("content", [b"{broken", b"\xff", b"[]"])
def test_damaged_baseline_model(tmp_path, content):
    from tracegrammar.baseline import ProbabilisticBaseline

    path = tmp_path / "b.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"b\.json: not a baseline model"):
        ProbabilisticBaseline.load(path)


def test_damaged_adapter_metadata(tiny_model_dir, tmp_path):
    from tracegrammar.decoding.models import ADAPTER_META, load_model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")  # present: the metadata is read first
    (adapter / ADAPTER_META).write_bytes(b"{half")
    with pytest.raises(ModelError, match="unreadable adapter metadata"):
        load_model(tiny_model_dir, adapter, device="cpu")
