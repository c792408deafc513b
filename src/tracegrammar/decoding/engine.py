"""The constrained decoding engine: grammar (llguidance, through outlines' CFG path) intersected
with the numeric rules (tracegrammar.rules, followed by the scanner).

- `Engine` is compiled once per (model, tokenizer): the llguidance tokenizer, the token tables and
  a cache of per-request grammars. It is immutable after construction and shared by all requests.
- `LayerSession` is the small per-sequence state: one llguidance matcher, one field scanner.
  `mask()` gives the allowed next tokens, `forced()` appends every token that is the only
  continuation (keywords, ids, copied fields, the scratch pad) without sampling.
- The same for many sessions at once (the scheduler's rows): `Engine.masks(sessions)` and
  `Engine.advance(sessions, tokens)`. llguidance fills every row's bitmask in one call, on its
  own threads and without the GIL; the numeric rules' masks are rows of one packed table
  (`masks.NumericMasks`), gathered by index and intersected with the whole batch at once, which
  also finds the dead and the single-token rows; a row is unpacked only to sample. A session
  keeps its row of the batch it was filled in, never a tensor of its own. Same masks and same
  forced tokens as the per-session methods, which stay the reference.
- A grammar is compiled into a matcher once (about a millisecond); a session gets a copy (a few
  microseconds), and the copies of one grammar share its lexer, so what one row's masks build,
  the others reuse. Layers share grammars: a layer's grammar binds its counts (and the semantic
  rules' calls of its caller), not its service and caller; the engine forces those
  (`LayerSession.fixed_forced`) with the tokens a literal in the grammar would have forced, so
  masks and tokens are those of a grammar per layer (`session(literals=True)`, tested), while
  llguidance builds a lexer state once for many layers instead of once per layer (at width 256,
  55 -> 27 us per row-step on these CPUs, side by side: bench/results/engine_width.md).
- The transformers `LogitsProcessor` glue is in `hf.py`.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import llguidance
import numpy as np
import torch

from ..errors import EngineError
from ..reference import CallScope
from ..rules import IntSet, LayerPlan
from ..types import LayerConditions
from .masks import NumericMasks, only_tokens, unpack, words_for
from .requests import fixed_follows, layer_grammar
from .scanner import FieldScanner, FreeScanner
from .tokens import TokenTable

with warnings.catch_warnings():
    # llguidance.torch compiles a function as it is imported, and torch's compiler imports its
    # mkldnn helpers, which warn that `torch.jit.script_method` is deprecated: not ours to fix,
    # and not a warning a normal run should print
    warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
    import llguidance.torch

_BIT = torch.arange(32, dtype=torch.int32)
#: from this many rows on, the sampled tokens go to llguidance's threads (a token costs the
#: matcher a few microseconds; handing a batch over, tens)
PARALLEL_CONSUME = 32


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
        #: grammar -> (spec, a fresh matcher that sessions copy)
        self._specs: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._cache_size = grammar_cache_size
        self._check_tokenizer_agreement()
        self.words = words_for(self.llg_tokenizer.vocab_size)  # int32 words per packed mask
        self.numeric = NumericMasks(self.table, self.words)
        # one thread per core this process may run on (llguidance's default leaves a fifth of
        # them out: one thread on two cores, so no fill would run in parallel); the caller only
        # waits for a fill. Processes pinned to a few cores each (several generators sharing
        # one GPU) get as many threads as their cores.
        self._executor = llguidance.LLExecutor(min(32, usable_cores()))
        #: llguidance's batch fill writes here (grown as needed); the lock keeps two threads
        #: sharing this engine from filling it at once
        self._bitmask = np.full((64, self.words), -1, dtype=np.int32)
        self._fill_lock = threading.Lock()
        #: (rest of a fixed value, the text after it) -> the tokens forced (`fixed_tokens`)
        self._fixed_tokens: dict[tuple[str, str], list[int]] = {}

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

    def fixed_tokens(self, rest: str, follow: str) -> list[int]:
        """The tokens that write `rest`, what is left of a value fixed when the layer started,
        and the start of `follow`, the text after it: `rest + follow` tokenized as llguidance
        tokenizes the bytes a grammar forces, up to the first token that reaches into `follow`
        (from there the matcher knows the value has ended, and forces the rest of `follow`
        itself, as it would after a literal). Cached."""
        key = (rest, follow)
        hit = self._fixed_tokens.get(key)
        if hit is None:
            if len(self._fixed_tokens) > 1 << 16:
                self._fixed_tokens.clear()
            tokenizer, hit, length, end = self.llg_tokenizer, [], 0, len(rest.encode())
            for token in tokenizer.tokenize_str(rest + follow):
                hit.append(token)
                length += len(tokenizer.decode_bytes([token]))
                if length > end:
                    break
            self._fixed_tokens[key] = hit
        return hit

    def spec(self, grammar: str) -> Any:
        """The compiled grammar spec for `grammar` (cached, validated once)."""
        return self._compiled(grammar)[0]

    def matcher(self, grammar: str) -> Any:
        """A fresh llguidance matcher for `grammar`: a copy of the one compiled for it."""
        return self._compiled(grammar)[1].deep_copy()

    def forget_grammars(self) -> None:
        """Drop every compiled grammar (a benchmark that must meet its grammars new)."""
        self._specs.clear()

    def _compiled(self, grammar: str) -> tuple[Any, Any]:
        hit = self._specs.get(grammar)
        if hit is not None:
            self._specs.move_to_end(grammar)
            return hit
        spec = self._backend.get_cfg_logits_processor(grammar).grammar
        lark = llguidance.LLMatcher.grammar_from_lark(spec) if isinstance(spec, str) else spec
        # compiled once: a grammar error does not raise, it leaves the matcher in an error
        # state with the same message as `LLMatcher.validate_grammar`
        matcher = llguidance.LLMatcher(self.llg_tokenizer, lark, log_level=0)
        if matcher.is_error():
            raise EngineError(f"invalid layer grammar: {matcher.get_error()}")
        self._specs[grammar] = (spec, matcher)
        if len(self._specs) > self._cache_size:
            self._specs.popitem(last=False)
        return spec, matcher

    def session(
        self,
        cond: LayerConditions,
        fmt: str = "layer",
        scope: CallScope | None = None,
        plan: LayerPlan | None = None,
        *,
        literals: bool = False,
    ) -> LayerSession:
        """A layer under the grammar and the numeric rules; `scope` adds the semantic rules
        (which calls, how deep, leaf types), `plan` the requested attributes planned for this
        layer (its first calls, the root's least latency). `literals`: the layer's service and
        caller compiled into its grammar, not forced by the engine (`requests`): the same masks
        and tokens, each layer with a grammar of its own; the reference the tests and
        bench/engine_width.py compare the shared grammars with."""
        grammar = layer_grammar(cond, fmt, scope, literals=literals)
        session = LayerSession(self, cond, self.matcher(grammar))
        if not literals:
            session.fixed = fixed_follows(fmt)
        if scope is not None or plan is not None:
            session.scanner = FieldScanner(cond, calls=scope, plan=plan)
        return session

    def free_session(self, grammar: str, cond: LayerConditions) -> LayerSession:
        """A session under `grammar` alone, with no numeric rules (the tabular format)."""
        session = LayerSession(self, cond, self.matcher(grammar))
        session.scanner = FreeScanner(cond)
        return session

    # -- many sessions at once (the scheduler's rows) -----------------------------------------

    def masks(
        self, sessions: Sequence[LayerSession], device: torch.device | None = None
    ) -> torch.Tensor:
        """bool[n, vocab]: each session's `mask()`, computed and unpacked together; on an
        accelerator `device`, the packed rows go there (1/8 of the bytes) and are unpacked
        there."""
        if device is None or device.type == "cpu":
            return unpack(torch.from_numpy(self._gather(sessions, copy=False)), self.vocab_size)
        packed = torch.from_numpy(self._gather(sessions, copy=True))
        return unpack(packed.to(device, non_blocking=True), self.vocab_size)

    def packed_masks(self, sessions: Sequence[LayerSession]) -> torch.Tensor:
        """int32[n, words]: each session's mask, packed as llguidance's bitmask; those not
        known since the session's last token are computed in one batch."""
        return torch.from_numpy(self._gather(sessions, copy=True))

    def advance(
        self, sessions: Sequence[LayerSession], tokens: Sequence[int] | None = None
    ) -> list[list[int]]:
        """Each session consumes its sampled token (if `tokens`), then every token forced after
        it: `[s.forced() for s in sessions]`, with the masks of each round computed together."""
        if tokens is not None:
            self._consume_all(sessions, tokens)
        out: list[list[int]] = [[] for _ in sessions]
        pending = [i for i, s in enumerate(sessions) if not s.done]
        while pending:  # a round: what `forced()` does in one turn of its loop, for every row
            again, stuck = [], []
            for i in pending:
                (again if _take_grammar_forced(sessions[i], out[i]) else stuck).append(i)
            # a stuck row takes the one token its mask allows, if only one: forced too
            numeric, todo, index = self.numeric, [], []
            numeric.trim()  # before looking up rows, which stay valid until the fill
            for i in stuck:
                session = sessions[i]
                row = session._row
                if row is None:
                    n = numeric.index(session.scanner)
                    token = int(numeric.only[n])
                    # the numeric rules alone allow one token: the mask is that token if the
                    # grammar takes it (else a dead end, which the fill reports), no fill needed
                    if token < 0 or session.matcher.validate_tokens([token]) != 1:
                        todo.append(i)
                        index.append(n)
                        continue
                elif row[2] < 0:
                    continue
                else:
                    token = row[2]
                session.consume(token)
                out[i].append(token)
                again.append(i)
            if todo:
                self._fill([sessions[i] for i in todo], index)
                for i in todo:
                    row = sessions[i]._row
                    assert row is not None
                    token = row[2]
                    if token >= 0:
                        sessions[i].consume(token)
                        out[i].append(token)
                        again.append(i)
            pending = [i for i in again if not sessions[i].done]
        return out

    def _consume_all(self, sessions: Sequence[LayerSession], tokens: Sequence[int]) -> None:
        """`s.consume(t)` for each session and token, the matchers' part on llguidance's
        threads when there are enough rows to be worth handing them over."""
        if len(sessions) < PARALLEL_CONSUME:
            for session, token in zip(sessions, tokens, strict=True):
                session.consume(int(token))
            return
        pairs = [(s.matcher, int(t)) for s, t in zip(sessions, tokens, strict=True)]
        ok = self._executor.consume_token_par(pairs)
        for session, (_, token), good in zip(sessions, pairs, ok, strict=True):
            if not good:
                raise session.rejected(token)
            session._consumed(token)

    def _gather(self, sessions: Sequence[LayerSession], copy: bool) -> np.ndarray:
        """int32[n, words]: the sessions' packed masks (those not known yet computed in one
        batch); without `copy` it may be the very batch the rows were filled in."""
        todo = [s for s in sessions if s._row is None]
        if todo:
            self._fill(todo)
        groups: dict[int, tuple[np.ndarray, list[int], list[int]]] = {}
        for pos, session in enumerate(sessions):
            row = session._row
            assert row is not None
            group = groups.get(id(row[0]))
            if group is None:
                group = groups[id(row[0])] = (row[0], [], [])
            group[1].append(pos)
            group[2].append(row[1])
        if len(groups) == 1:
            block, _, rows = next(iter(groups.values()))
            whole = len(rows) == block.shape[0] and rows == list(range(len(rows)))
            if whole and not copy:
                return block
            return block.take(rows, axis=0)
        out = np.empty((len(sessions), self.words), dtype=np.int32)
        for block, positions, rows in groups.values():
            out[positions] = block.take(rows, axis=0)
        return out

    def _fill(self, sessions: Sequence[LayerSession], index: list[int] | None = None) -> None:
        """Compute and keep the packed mask of every session (grammar & numeric rules);
        `index`: the sessions' rows of the numeric table, if known."""
        n = len(sessions)
        numeric = self.numeric
        if index is None:
            numeric.trim()
            index = [numeric.index(s.scanner) for s in sessions]
        # a row whose numeric rules allow a few tokens asks the matcher about those alone
        few = numeric.few
        wide = [
            (s.matcher, i)
            for i, (s, r) in enumerate(zip(sessions, index, strict=True))
            if few[r] is None
        ]
        with self._fill_lock:
            if self._bitmask.shape[0] < n:
                self._bitmask = np.full((2 * n, self.words), -1, dtype=np.int32)
            grammar = self._bitmask
            if wide:
                self._executor.unsafe_compute_mask_ptr(
                    wide, grammar.ctypes.data, self.words * 4, grammar.shape[0]
                )
            bits = numeric.rows.take(index, axis=0)  # a new array: rows outlive the lock
            np.bitwise_and(bits, grammar[:n], out=bits)
        if len(wide) < n:
            flat = bits.view(np.uint32)
            for i, (session, r) in enumerate(zip(sessions, index, strict=True)):
                candidates = few[r]
                if candidates is None:
                    continue
                flat[i] = 0
                for token in candidates:  # the grammar's mask bit is whether it takes the token
                    if session.matcher.validate_tokens([token]) == 1:
                        flat[i, token >> 5] |= np.uint32(1 << (token & 31))
        nonzero = np.count_nonzero(bits, axis=1)
        dead = np.flatnonzero(nonzero == 0)
        if dead.size:
            raise sessions[int(dead[0])].dead_end()
        only = only_tokens(bits, nonzero).tolist()
        for i, session in enumerate(sessions):
            session._row = (bits, i, only[i])

    def unpack(self, bitmask: torch.Tensor) -> torch.Tensor:
        """llguidance's packed int32 bitmask row -> bool[vocab]."""
        bits = (bitmask.unsqueeze(-1) >> _BIT) & 1
        return bits.reshape(-1)[: self.vocab_size].bool()


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def _unwrap(model: Any) -> Any:
    """outlines wants a transformers model; a peft model wraps one."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


class LayerSession:
    """One layer being written under the grammar and the numeric rules."""

    def __init__(self, engine: Engine, cond: LayerConditions, matcher: Any) -> None:
        """`matcher`: a fresh llguidance matcher of the layer's grammar (`Engine.matcher`)."""
        self.engine = engine
        self.conditions = cond
        self.matcher = matcher
        self.scanner = FieldScanner(cond)
        #: subgraph block field -> the text after its value, for the fields whose value the
        #: engine forces (`requests.FIXED_FIELDS`; none outside the layer formats)
        self.fixed: dict[str, str] = {}
        self.tokens: list[int] = []
        self._bitmask: torch.Tensor | None = None  # mask()'s llguidance bitmask
        self._mask: torch.Tensor | None = None
        #: the packed mask, set by Engine._fill: (int32[n, words] batch, this row, the one
        #: token the row allows or -1)
        self._row: tuple[np.ndarray, int, int] | None = None

    @property
    def done(self) -> bool:
        return self.matcher.is_accepting()

    @property
    def text(self) -> str:
        return "".join(self.engine.table.strings[t] for t in self.tokens)

    def mask(self) -> torch.Tensor:
        """bool[vocab]: tokens allowed next by the grammar and by the numeric rules."""
        if self._mask is None:
            if self._bitmask is None:
                vocab = self.engine.llg_tokenizer.vocab_size
                self._bitmask = llguidance.torch.allocate_token_bitmask(1, vocab)
            llguidance.torch.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
            grammar = self.engine.unpack(self._bitmask[0])
            self._mask = grammar & self.engine.table.mask(self.scanner)
            if not bool(self._mask.any()):
                raise self.dead_end()
        return self._mask

    def packed_mask(self) -> torch.Tensor:
        """int32[words]: `mask()` packed as llguidance's bitmask (Engine.packed_masks)."""
        if self._row is None:
            self.engine._fill([self])
        assert self._row is not None
        return torch.from_numpy(self._row[0][self._row[1]])

    def dead_end(self) -> EngineError:
        return EngineError(
            f"dead end after {self.text!r} (field {self.scanner.field!r}, "
            f"value {self.scanner.buf!r}, allowed {self.scanner.target!r})"
        )

    def rejected(self, token: int) -> EngineError:
        return EngineError(f"grammar rejected token {token} after {self.text!r}")

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise self.rejected(token)
        self._consumed(token)

    def _consumed(self, token: int) -> None:
        """What follows the matcher's taking `token`: the scanner's and the session's part."""
        self.scanner.feed(self.engine.table.strings[token])
        self.tokens.append(token)
        self._mask = None
        self._row = None

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
        then those of a value fixed when the layer started (`fixed_forced`), appending them to
        `out`; whether there was any."""
        table = self.engine.table
        progressed = False
        for tok in self.matcher.compute_ff_tokens():
            if not table.allows(self.scanner, tok):
                break
            self.consume(tok)
            out.append(tok)
            progressed = True
        for tok in self.fixed_forced():
            if not table.allows(self.scanner, tok):
                break
            self.consume(tok)
            out.append(tok)
            progressed = True
        return progressed

    def fixed_forced(self) -> list[int]:
        """The tokens forced in a subgraph block's value fixed when the layer started (its
        service or caller: `requests.FIXED_FIELDS`), as a literal in the layer's grammar would
        force them (`Engine.fixed_tokens`); [] elsewhere."""
        scanner = self.scanner
        follow = self.fixed.get(scanner.field) if scanner.field is not None else None
        target = scanner.target
        if follow is None or scanner.section != "block" or not isinstance(target, str):
            return []
        buf = scanner.buf
        if len(buf) >= len(target) or not target.startswith(buf):
            return []
        return self.engine.fixed_tokens(target[len(buf) :], follow)


def _take_grammar_forced(session: LayerSession, out: list[int]) -> bool:
    """`session.consume_grammar_forced(out)` (the reference), with the matcher taking the
    tokens in one call, and asked for them only when its forced bytes say there are any."""
    matcher = session.matcher
    table = session.engine.table
    scanner = session.scanner
    taken: list[int] = []
    # no forced byte, no forced token; and none inside a number other than a lone 0: the
    # grammar's INT takes any digit first, then a digit or the end (tested: every numeric field
    # of the layer grammars is an INT)
    target = scanner.target
    in_number = isinstance(target, IntSet) and scanner.buf != "0"
    if not in_number and matcher.compute_ff_bytes():
        for tok in matcher.compute_ff_tokens():
            if not table.allows(scanner, tok):
                break
            scanner.feed(table.strings[tok])
            taken.append(tok)
    if session.fixed:
        for tok in session.fixed_forced():
            if not table.allows(scanner, tok):
                break
            scanner.feed(table.strings[tok])
            taken.append(tok)
    if not taken:
        return False
    if not matcher.consume_tokens(taken):
        raise session.rejected(taken[0])
    session.tokens.extend(taken)
    session._mask = None
    session._row = None
    out.extend(taken)
    return True
