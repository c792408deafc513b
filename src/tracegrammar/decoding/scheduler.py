"""Waves of layers in shared forward passes.

A wave is every layer that can be written now (all root layers, then all their children, ...).
In a wave each row feeds its prompt, then either one sampled token or (constrained) the sampled
token plus every forced token after it, in one forward pass; rows leave the batch as their
layers finish. The scheduler asks each layer's `LayerWriter` what is allowed and what is forced,
never which mode it is in; the rows that sample in a pass are served together (one batch of
masks, applied to all their logits at once, after the writers' `adjust`), then each draws with
its own generator.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..types import LayerConditions
from .batch import BatchState
from .sampling import draw_among, sample_token
from .writers import LayerWriter, Writers, unadjusted

#: Quantile of the rows' pending span lengths that sets how many tokens a row feeds in one pass
#: on a CPU (see WaveScheduler.pass_width).
WIDTH_QUANTILE = 0.6


@dataclass
class GenerationStats:
    graphs: int = 0
    layers: int = 0
    forward_passes: int = 0
    sampled_tokens: int = 0
    forced_tokens: int = 0
    fed_tokens: int = 0
    wall_s: float = 0.0
    engine_s: float = 0.0
    #: over the constrained sampled steps: the probability the model (at temperature 1) gave to
    #: tokens the engine masked, summed, and how many steps had a mask
    masked_mass: float = 0.0
    masked_steps: int = 0

    @property
    def forced_share(self) -> float:
        total = self.sampled_tokens + self.forced_tokens
        return self.forced_tokens / total if total else 0.0

    @property
    def mean_masked_mass(self) -> float | None:
        """How much the constraint overrules the model per sampled step, on average: 0 when
        the model only ever wanted allowed tokens (None: nothing was masked)."""
        return self.masked_mass / self.masked_steps if self.masked_steps else None


@dataclass
class LayerJob:
    """One layer waiting to be (or being) written."""

    graph: int
    prefix: str | None  # rpc id of the call this layer expands (None: the root layer)
    cond: LayerConditions
    prompt: str
    rng: torch.Generator
    writer: LayerWriter | None = None
    queue: deque[list[int]] = field(default_factory=deque)  # token spans still to feed
    fed: bool = False  # has the prompt been fed

    @property
    def root(self) -> bool:
        return self.prefix is None


class WaveScheduler:
    def __init__(
        self,
        lm: Any,
        writers: Writers,
        temperature: float,
        top_k: int,
        fast_forward: bool,
        stats: GenerationStats,
    ) -> None:
        self.lm = lm
        self.writers = writers
        self.temperature = temperature
        self.top_k = top_k
        self.fast_forward = fast_forward
        self.stats = stats
        tok = lm.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.device = next(lm.model.parameters()).device
        #: the rows' logits stay where the model is, masked and cut to their top k there; only
        #: [rows, k] comes back to draw with each layer's generator (`_draw_on_device`): on an
        #: accelerator only, where bringing back [rows, vocab] floats each pass would cost more
        #: than the pass
        self.device_sampling = (
            self.device.type != "cpu"
            and temperature > 0
            and 0 < top_k < int(lm.model.config.vocab_size)
            and type(writers).adjust is unadjusted
        )

    def decode(
        self, jobs: list[LayerJob], on_finish: Callable[[LayerJob, str], None] | None = None
    ) -> list[str]:
        """Write every layer of a wave; return each layer's output text. `on_finish(job, text)`
        is called as each layer finishes, while the rest of the wave is still being written
        (layers finished by their forced tokens alone first, in job order; then in the order
        their rows leave the batch). It only observes: the outputs are the same without it."""
        for job in jobs:
            self._start(job)
        begun = self.writers.begin_all([_writer(job) for job in jobs])
        for job, forced in zip(jobs, begun, strict=True):
            self._enqueue(job, forced)
        batch = BatchState(self.lm.model, self.pad, self.device)
        rows = [i for i, job in enumerate(jobs) if not _writer(job).done]
        if on_finish is not None:
            for job in jobs:
                if _writer(job).done:
                    on_finish(job, _writer(job).text)
        while rows:  # a layer finished by its forced tokens alone never needs the model
            width = self.pass_width([jobs[i] for i in rows])
            chunks = [self._next_chunk(jobs[i], width) for i in rows]
            # rows with nothing left to feed sample after this pass: only their logits are used
            sampling = [pos for pos, i in enumerate(rows) if not jobs[i].queue]
            logits = batch.step(chunks, sampling, host=not self.device_sampling)
            if sampling:
                self._sample([jobs[rows[pos]] for pos in sampling], logits)
            keep = [pos for pos, i in enumerate(rows) if not _writer(jobs[i]).done]
            if on_finish is not None:
                for i in rows:
                    if _writer(jobs[i]).done:
                        on_finish(jobs[i], _writer(jobs[i]).text)
            if len(keep) != len(rows):
                batch.keep(keep)
                rows = [rows[p] for p in keep]
        self.stats.forward_passes += batch.forward_passes
        self.stats.fed_tokens += batch.fed_tokens
        self.stats.engine_s += sum(_writer(job).engine_s for job in jobs)
        return [_writer(job).text for job in jobs]

    def _start(self, job: LayerJob) -> None:
        job.queue.append(list(self.lm.tokenizer(job.prompt, add_special_tokens=False).input_ids))
        job.writer = self.writers.new(job.graph, job.cond, job.root, job.prefix)

    def _enqueue(self, job: LayerJob, forced: list[int]) -> None:
        self.stats.forced_tokens += len(forced)
        if not forced:
            return
        if self.fast_forward:
            if job.queue:
                job.queue[-1].extend(forced)
            else:
                job.queue.append(list(forced))
        else:
            job.queue.extend([t] for t in forced)

    def pass_width(self, rows: list[LayerJob]) -> int | None:
        """How many tokens of its pending span a row may feed this pass (None: all of it).

        Rows are padded to the widest chunk of the pass, so on a CPU, where every padded
        position costs compute, one row's long forced span would make the whole batch pay for
        it. There the width is a quantile of the rows' pending spans: longer spans continue in
        later passes, which the rows still sampling need anyway (replaying recorded runs of the
        default model on 2 cores with a fitted cost per pass: 9% less time than a fixed cap of
        12 tokens, padding 34% -> 14% of fed positions; rechecked with grouped attention, 24
        validation prompts, seeds 0 and 1: quantile 0.6 took 38-39 s, 0.4 40-42 s, 0.8 40-47 s,
        whole spans 51-55 s). On a GPU a pass costs about the same at any width, so spans go
        in whole."""
        if self.device.type != "cpu":
            return None
        spans = sorted(len(r.queue[0]) for r in rows if r.fed and r.queue)
        if not spans:
            return None
        return max(1, spans[min(len(spans) - 1, int(len(spans) * WIDTH_QUANTILE))])

    def _next_chunk(self, job: LayerJob, width: int | None) -> list[int]:
        """The tokens a row feeds this pass: its pending span, cut to `width` (a prompt, fed
        by every row at the start of a wave, is never cut)."""
        if not job.queue:
            return []
        chunk = job.queue.popleft()
        if job.fed and width is not None and len(chunk) > width:
            job.queue.appendleft(chunk[width:])
            chunk = chunk[:width]
        job.fed = True
        return chunk

    def _sample(self, jobs: list[LayerJob], logits: torch.Tensor) -> None:
        """One token for each of `jobs` (their rows of `logits`), and the tokens forced after."""
        writers = [_writer(job) for job in jobs]
        if self.device_sampling:
            tokens = self._draw_on_device(jobs, writers, logits)
        else:
            masks = self.writers.masks(writers)
            if masks is not None:
                logits = logits[:, : masks.shape[1]]
                self.stats.masked_mass += float(masked_mass(logits, masks).sum())
                self.stats.masked_steps += len(jobs)
                logits = self.writers.adjust(writers, logits, masks, self.temperature)
                logits = logits.masked_fill(~masks, float("-inf"))  # every row in one operation
            tokens = [
                sample_token(row, None, self.temperature, self.top_k, job.rng)
                for row, job in zip(logits, jobs, strict=True)
            ]
        self.stats.sampled_tokens += len(jobs)
        after = self.writers.accept_all(writers, tokens)
        for job, tok, forced in zip(jobs, tokens, after, strict=True):
            job.queue.append([tok])
            self._enqueue(job, forced)

    def _draw_on_device(
        self, jobs: list[LayerJob], writers: list[LayerWriter], logits: torch.Tensor
    ) -> list[int]:
        """`sample_token` for every row, its masking, temperature and top-k done for all rows
        at once where `logits` are; each row then draws among its k with its own generator."""
        masks = self.writers.masks(writers, logits.device)
        if masks is not None:
            logits = logits[:, : masks.shape[1]]
            self.stats.masked_mass += float(masked_mass(logits, masks).sum())
            self.stats.masked_steps += len(jobs)
            logits = logits.masked_fill(~masks, float("-inf"))
        k = min(self.top_k, logits.shape[1])
        values, indices = torch.topk(logits / self.temperature, k)
        values, indices = values.cpu(), indices.cpu()
        return [draw_among(v, i, job.rng) for v, i, job in zip(values, indices, jobs, strict=True)]


def masked_mass(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The probability (softmax at temperature 1) of the tokens `mask` forbids, per row of
    `logits` [n, vocab] and `mask` [n, vocab] (or one row of each: a 0-d tensor)."""
    probs = torch.softmax(logits[..., : mask.shape[-1]].float(), dim=-1)
    return 1.0 - torch.where(mask, probs, 0.0).sum(dim=-1)


def _writer(job: LayerJob) -> LayerWriter:
    assert job.writer is not None, "a job gets its writer when its wave starts"
    return job.writer
