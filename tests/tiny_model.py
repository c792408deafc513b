"""A tiny randomly initialised Llama over the default tokenizer: fast enough for property tests
of the decoder (the constraints, not the model, decide validity)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(out: Path, seed: int = 0, hidden: int = 64, kv_heads: int = 2) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tracegrammar.decoding.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir(progress=False))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,  # grouped, as the default base (9 query, 3 kv heads)
        max_position_embeddings=8192,  # as the default base
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
