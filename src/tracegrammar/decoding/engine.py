"""The constrained decoding engine: grammar (llguidance, through outlines' CFG path) intersected
with the numeric rules (tracegrammar.rules, followed by the scanner).

- `Engine` is compiled once per (model, tokenizer): the llguidance tokenizer, the token tables and
  a cache of per-request grammars. It is immutable after construction and shared by all requests.
- `LayerSession` is the small per-sequence state: one llguidance matcher, one field scanner.
  `mask()` gives the allowed next tokens, `forced()` appends every token that is the only
  continuation (keywords, ids, copied fields, the scratch pad) without sampling.
- The same for many sessions at once (the scheduler's rows): `Engine.masks(sessions)` and
  `Engine.advance(sessions, tokens)`. llguidance fills every row's bitmask in one call, on its
  own threads and without the GIL; the numeric rules' masks come packed from a cache
  (`masks.NumericMasks`) and are intersected word by word; a row is unpacked only to sample.
  Same masks and same forced tokens as the per-session methods, which stay the reference.
- The transformers `LogitsProcessor` glue is in `hf.py`.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import llguidance
import torch

from ..errors import EngineError
from ..reference import CallScope
from ..rules import LayerPlan
from ..types import LayerConditions
from .masks import NumericMasks, empty_rows, only_tokens, unpack, words_for
from .requests import layer_grammar
from .scanner import FieldScanner, FreeScanner
from .tokens import TokenTable

with warnings.catch_warnings():
    # llguidance.torch compiles a function as it is imported, and torch's compiler imports its
    # mkldnn helpers, which warn that `torch.jit.script_method` is deprecated: not ours to fix,
    # and not a warning a normal run should print
    warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
    import llguidance.torch

_BIT = torch.arange(32, dtype=torch.int32)


class Engine:
    """Per-(model, tokenizer) compiled state, shared by every request."""

    def __init__(self, model: Any, tokenizer: Any, *, grammar_cache_size: int = 512) -> None:
        import outlines
        from outlines.backends.llguidance import LLGuidanceBackend

        vocab = int(model.config.vocab_size) if model is not None else len(tokenizer)
        # The grammar goes through outlines' CFG path: its llguidance backend owns the tokenizer
        # translation and the grammar spec; we drive the matchers it describes ourselves so that
        # forced tokens can skip the model.
        self._backend = LLGuidanceBackend(outlines.from_transformers(_unwrap(model), tokenizer))
        self.tokenizer = tokenizer
        self.table = TokenTable.build(tokenizer, vocab)
        self.vocab_size = vocab
        self._specs: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = grammar_cache_size
        self._check_tokenizer_agreement()
        self.words = words_for(self.llg_tokenizer.vocab_size)  # int32 words per packed mask
        self.numeric = NumericMasks(self.table, self.words)
        self._executor = llguidance.LLExecutor()  # one thread per core
        #: llguidance's batch fill writes here (grown as needed); the lock keeps two threads
        #: sharing this engine from filling it at once
        self._bitmask = llguidance.torch.allocate_token_bitmask(64, self.llg_tokenizer.vocab_size)
        self._fill_lock = threading.Lock()

    def _check_tokenizer_agreement(self) -> None:
        """llguidance must read every token as the model's tokenizer writes it; some tokenizer
        files (e.g. a GGUF conversion by transformers 5.17) make it see byte-level symbols
        instead (`Ċ` for a newline), and then no layer could ever be written."""
        probe = "<edges>\n(id:12 dm:MS_5 type:http start:0 finish:7)\n</layer>"
        ids = self.tokenizer(probe, add_special_tokens=False).input_ids
        seen = b"".join(self.llg_tokenizer.decode_bytes([i]) for i in ids)
        if seen != probe.encode():
            raise EngineError(
                f"llguidance reads this tokenizer differently from transformers "
                f"({seen[:40]!r} for {probe[:40]!r}); re-save the tokenizer with a current "
                f"transformers version"
            )

    @property
    def llg_tokenizer(self) -> Any:
        return self._backend.llg_tokenizer

    def spec(self, grammar: str) -> Any:
        """The compiled grammar spec for `grammar` (cached, validated once)."""
        hit = self._specs.get(grammar)
        if hit is not None:
            self._specs.move_to_end(grammar)
            return hit
        spec = self._backend.get_cfg_logits_processor(grammar).grammar
        error = llguidance.LLMatcher.validate_grammar(
            llguidance.LLMatcher.grammar_from_lark(spec) if isinstance(spec, str) else spec
        )
        if error:  # a matcher would not raise, only enter an error state: check first
            raise EngineError(f"invalid layer grammar: {error}")
        self._specs[grammar] = spec
        if len(self._specs) > self._cache_size:
            self._specs.popitem(last=False)
        return spec

    def session(
        self,
        cond: LayerConditions,
        fmt: str = "layer",
        scope: CallScope | None = None,
        plan: LayerPlan | None = None,
    ) -> LayerSession:
        """A layer under the grammar and the numeric rules; `scope` adds the semantic rules
        (which calls, how deep, leaf types), `plan` the requested attributes planned for this
        layer (its first calls, the root's least latency)."""
        session = LayerSession(self, cond, self.spec(layer_grammar(cond, fmt, scope)))
        if scope is not None or plan is not None:
            session.scanner = FieldScanner(cond, calls=scope, plan=plan)
        return session

    def free_session(self, grammar: str, cond: LayerConditions) -> LayerSession:
        """A session under `grammar` alone, with no numeric rules (the tabular format)."""
        session = LayerSession(self, cond, self.spec(grammar))
        session.scanner = FreeScanner(cond)
        return session

    # -- many sessions at once (the scheduler's rows) -----------------------------------------

    def masks(self, sessions: Sequence[LayerSession]) -> torch.Tensor:
        """bool[n, vocab]: each session's `mask()`, computed and unpacked together."""
        return unpack(self.packed_masks(sessions), self.vocab_size)

    def packed_masks(self, sessions: Sequence[LayerSession]) -> torch.Tensor:
        """int32[n, words]: each session's mask, packed as llguidance's bitmask; those not
        known since the session's last token are computed in one batch."""
        todo = [s for s in sessions if s._packed is None]
        if todo:
            self._fill(todo)
        return torch.stack([s.packed_mask() for s in sessions])

    def advance(
        self, sessions: Sequence[LayerSession], tokens: Sequence[int] | None = None
    ) -> list[list[int]]:
        """Each session consumes its sampled token (if `tokens`), then every token forced after
        it: `[s.forced() for s in sessions]`, with the masks of each round computed together."""
        if tokens is not None:
            for session, token in zip(sessions, tokens, strict=True):
                session.consume(token)
        out: list[list[int]] = [[] for _ in sessions]
        pending = [i for i, s in enumerate(sessions) if not s.done]
        while pending:  # a round: what `forced()` does in one turn of its loop, for every row
            again, stuck = [], []
            for i in pending:
                (again if sessions[i].consume_grammar_forced(out[i]) else stuck).append(i)
            if stuck:
                only = only_tokens(self.packed_masks([sessions[i] for i in stuck]))
                for i, token in zip(stuck, only, strict=True):
                    if token is not None:  # the numeric rules leave one token: forced too
                        sessions[i].consume(token)
                        out[i].append(token)
                        again.append(i)
            pending = [i for i in again if not sessions[i].done]
        return out

    def _fill(self, sessions: Sequence[LayerSession]) -> None:
        """Compute and keep the packed mask of every session (grammar & numeric rules)."""
        numeric = torch.stack([self.numeric.for_scanner(s.scanner) for s in sessions])
        with self._fill_lock:
            if self._bitmask.shape[0] < len(sessions):
                self._bitmask = llguidance.torch.allocate_token_bitmask(
                    2 * len(sessions), self.llg_tokenizer.vocab_size
                )
            rows = [(s.matcher, i) for i, s in enumerate(sessions)]
            llguidance.torch.fill_next_token_bitmask_par(self._executor, rows, self._bitmask)
            bits = self._bitmask[: len(sessions)] & numeric  # a new tensor: rows outlive the lock
        dead = torch.nonzero(empty_rows(bits)).flatten().tolist()
        if dead:
            raise sessions[dead[0]].dead_end()
        for session, row in zip(sessions, bits.unbind(0), strict=True):
            session._packed = row

    def unpack(self, bitmask: torch.Tensor) -> torch.Tensor:
        """llguidance's packed int32 bitmask row -> bool[vocab]."""
        bits = (bitmask.unsqueeze(-1) >> _BIT) & 1
        return bits.reshape(-1)[: self.vocab_size].bool()


def _unwrap(model: Any) -> Any:
    """outlines wants a transformers model; a peft model wraps one."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


class LayerSession:
    """One layer being written under the grammar and the numeric rules."""

    def __init__(self, engine: Engine, cond: LayerConditions, spec: Any) -> None:
        self.engine = engine
        self.conditions = cond
        grammar = llguidance.LLMatcher.grammar_from_lark(spec) if isinstance(spec, str) else spec
        self.matcher = llguidance.LLMatcher(engine.llg_tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise EngineError(f"matcher failed: {self.matcher.get_error()}")
        self.scanner = FieldScanner(cond)
        self.tokens: list[int] = []
        self._bitmask = llguidance.torch.allocate_token_bitmask(1, engine.llg_tokenizer.vocab_size)
        self._mask: torch.Tensor | None = None
        self._packed: torch.Tensor | None = None  # int32[words], set by Engine.packed_masks

    @property
    def done(self) -> bool:
        return self.matcher.is_accepting()

    @property
    def text(self) -> str:
        return "".join(self.engine.table.strings[t] for t in self.tokens)

    def mask(self) -> torch.Tensor:
        """bool[vocab]: tokens allowed next by the grammar and by the numeric rules."""
        if self._mask is None:
            llguidance.torch.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
            grammar = self.engine.unpack(self._bitmask[0])
            self._mask = grammar & self.engine.table.mask(self.scanner)
            if not bool(self._mask.any()):
                raise self.dead_end()
        return self._mask

    def packed_mask(self) -> torch.Tensor:
        """int32[words]: `mask()` packed as llguidance's bitmask (Engine.packed_masks)."""
        if self._packed is None:
            self.engine._fill([self])
        assert self._packed is not None
        return self._packed

    def dead_end(self) -> EngineError:
        return EngineError(
            f"dead end after {self.text!r} (field {self.scanner.field!r}, "
            f"value {self.scanner.buf!r}, allowed {self.scanner.target!r})"
        )

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise EngineError(f"grammar rejected token {token} after {self.text!r}")
        self.scanner.feed(self.engine.table.strings[token])
        self.tokens.append(token)
        self._mask = None
        self._packed = None

    def forced(self) -> list[int]:
        """Append and return every token that is the only allowed continuation."""
        out: list[int] = []
        while not self.done:
            if self.consume_grammar_forced(out):
                continue
            allowed = self.mask().nonzero()
            if len(allowed) != 1:
                break
            tok = int(allowed[0])
            self.consume(tok)
            out.append(tok)
        return out

    def consume_grammar_forced(self, out: list[int]) -> bool:
        """Consume the tokens the grammar forces next, as far as the numeric rules allow them,
        appending them to `out`; whether there was any."""
        table = self.engine.table
        progressed = False
        for tok in self.matcher.compute_ff_tokens():
            if not table.allows(self.scanner, tok):
                break
            self.consume(tok)
            out.append(tok)
            progressed = True
        return progressed
