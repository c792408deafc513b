"""transformers glue: the constraint as a `LogitsProcessor`, for people who want it inside their
own `model.generate` call (the decoder itself drives engine sessions directly)."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from ..reference import CallScope
from ..types import LayerConditions
from .engine import Engine, LayerSession


class LayerLogitsProcessor(LogitsProcessor):
    """A transformers LogitsProcessor that constrains every row of a batch to one valid layer.

    Use it with `model.generate(prompt_ids, logits_processor=[proc])` where the prompt is the
    layer prompt (`tracegrammar.encode.render_layer_prompt(conditions)`); the tokens after
    `prompt_length` are the layer's output. Stop generation when `proc.done` (or on EOS).
    """

    def __init__(
        self,
        conditions: LayerConditions,
        engine: Engine,
        prompt_length: int,
        *,
        fmt: str = "layer",
        scope: CallScope | None = None,
    ) -> None:
        self.conditions = conditions
        self.engine = engine
        self.prompt_length = prompt_length
        self.fmt = fmt
        self.scope = scope
        self.sessions: list[LayerSession] = []

    @property
    def done(self) -> bool:
        return bool(self.sessions) and all(s.done for s in self.sessions)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        while len(self.sessions) < input_ids.shape[0]:
            self.sessions.append(self.engine.session(self.conditions, self.fmt, self.scope))
        eos = self.engine.tokenizer.eos_token_id
        for row, session in enumerate(self.sessions):
            for tok in input_ids[row, self.prompt_length + len(session.tokens) :].tolist():
                if not session.done:
                    session.consume(int(tok))
            if session.done:
                allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
                allowed[eos] = True  # the layer is complete: only end-of-sequence remains
            else:
                allowed = session.mask()
            scores[row, : allowed.shape[0]][~allowed.to(scores.device)] = float("-inf")
            scores[row, allowed.shape[0] :] = float("-inf")
        return scores
