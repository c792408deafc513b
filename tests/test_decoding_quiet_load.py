"""A normal run prints no warning: loading a model (with an adapter) and generating emit no
Python warning and write nothing to stderr (no "Loading weights" bar, no transformers or peft log
lines), and the quieting leaves transformers' settings as they were (tiny model only)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tracegrammar.constraints import Constraints


def _adapter(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():  # the setup's own chatter is not under test
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(base)
        config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        get_peft_model(model, config).save_pretrained(out)
    return out


def _transformers_settings() -> tuple[int, bool]:
    from transformers.utils import logging as hf_logging

    return hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()


def test_load_and_generate_emit_no_warning_and_no_stderr(tiny_model_dir, tmp_path, capfd):
    from tracegrammar.decoding.driver import generate
    from tracegrammar.decoding.models import load_model

    adapter = _adapter(tiny_model_dir, tmp_path / "adapter")
    before = _transformers_settings()
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm = load_model(tiny_model_dir, adapter, device="cpu")
        graphs = generate(Constraints("S_1", num_edges=3, depth=2), 2, model=lm, seed=0)
    err = capfd.readouterr().err
    assert len(graphs) == 2
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert err == "", err[-2000:]
    assert _transformers_settings() == before  # restored: no global side effect


def test_quiet_loading_restores_settings_after_an_error():
    from transformers.utils import logging as hf_logging

    from tracegrammar.decoding.models import quiet_loading

    before = _transformers_settings()
    with pytest.raises(RuntimeError), quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        raise RuntimeError("a damaged file")
    assert _transformers_settings() == before
    with pytest.warns(FutureWarning):  # the warning filters are restored too
        warnings.warn("after the load", FutureWarning, stacklevel=1)


def test_importing_the_decoder_raises_no_warning():
    """In a fresh interpreter with every warning an error: importing the decoder (torch,
    transformers, llguidance's compiled helpers) warns about nothing."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = "import tracegrammar.decoding.driver, tracegrammar.decoding.models, peft"
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]
