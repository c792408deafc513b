"""`tracegrammar generate`: constraints as flags or as a JSON/YAML file of many requests, output
in any export format, a progress bar and a closing summary.

Every flag, file and the output path are checked before torch is imported. Graphs are generated
in chunks of `CHUNK`; each chunk's graphs are written as it ends (JSON Lines to a temporary file
renamed into place at the end), so Ctrl-C keeps the finished graphs. One progress reporter spans
the chunks and moves as each graph finishes: a bar on a terminal, plain lines (every 5% or 10 s)
when stderr is not one."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constraints import (
    MAX_GRAPHS_PER_RUN,
    MAX_NUM_EDGES,
    ConstraintError,
    Constraints,
    check_request_size,
)
from ..decoding.progress import GraphProgress
from ..distributed.plan import CHUNK, chunk_seed
from ..errors import UsageError
from ..exports import EXPORT_FORMATS
from ..grammar import ENCODINGS
from ..io import atomic_writer, check_output_writable, generation_record, stamp_record
from ..types import CallGraph
from .common import (
    START_HELP,
    check_model_flags,
    check_ray_and_send,
    constraints_from_flags,
    flag_name,
    register_ray_and_send,
    resolve_adapter,
    start_ns,
)


def register_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", help="service id, e.g. S_32048416")
    p.add_argument("--num-edges", type=int, help=f"exact number of calls (1 to {MAX_NUM_EDGES})")
    p.add_argument("--depth", type=int, help="exact depth (1: only the root call)")
    p.add_argument("--latency", type=int, help="upper bound on the root call's finish (ms)")
    p.add_argument(
        "--high-latency",
        action="store_true",
        help="root latency at or above the service's 90th percentile in the training data",
    )
    p.add_argument(
        "--include-call",
        action="append",
        default=[],
        metavar="SRC,DST,TYPE",
        help="a call that must appear, e.g. MS_1,MS_2,rpc (repeatable)",
    )
    p.add_argument(
        "--uncommon-call",
        action="store_true",
        help="at least one call that is in under 10%% of the service's training graphs",
    )
    p.add_argument(
        "--requests",
        metavar="FILE",
        help="JSON or YAML list of requests ({service, num_edges?, depth?, latency?, "
        "high_latency?, include_calls?, uncommon_call?, n?})",
    )
    p.add_argument(
        "-n",
        type=int,
        default=1,
        help=f"graphs per request (default 1; at most {MAX_GRAPHS_PER_RUN} in all)",
    )
    p.add_argument("--seed", type=int, help="random seed (same seed, same output)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, 0: greedy")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest, 0: all")
    p.add_argument(
        "--encoding",
        default="layer",
        choices=tuple(ENCODINGS),
        help="text encoding the model writes",
    )
    # the earlier name of --encoding, kept working but hidden: `--format` is the export format
    p.add_argument("--fmt", dest="encoding", choices=tuple(ENCODINGS), help=argparse.SUPPRESS)
    p.add_argument(
        "--unconstrained", action="store_true", help="no grammar or numeric rules (for comparison)"
    )
    p.add_argument(
        "--semantic",
        metavar="PATH",
        help="traces whose calls the semantic rules allow (default: the adapter's training graphs)",
    )
    p.add_argument(
        "--novel-calls",
        action="store_true",
        help="allow calls never seen in the reference (mc/db/mq calls still get no children)",
    )
    p.add_argument(
        "--model", metavar="DIR", help="base model directory (default: embedded SmolLM2)"
    )
    p.add_argument(
        "--adapter",
        metavar="DIR",
        help="LoRA adapter (default: the shipped adapter; 'none' for none)",
    )
    p.add_argument("--format", default="jsonl", choices=EXPORT_FORMATS, help="export format")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output file, or a directory (graphs.<ext> inside)",
    )
    register_ray_and_send(
        p,
        "generate on Ray actors (no address: a local cluster; 'auto' or HOST:6379 joins one); "
        "shards and manifest.json go to shards/ beside the output, a rerun resumes",
    )
    p.add_argument("--start", metavar="TIME", help=START_HELP + "; with --send, default now")
    p.set_defaults(func=cmd_generate)


def load_requests(args: argparse.Namespace) -> list[tuple[Constraints, int]]:
    """(constraints, n) pairs from --requests or from the flags, each within the documented
    limits; errors name the flag (or the file and request) and the value."""
    if args.requests:
        requests = _requests_file(Path(args.requests), args.n)
    elif not args.service:
        raise UsageError(
            "give --service (and optionally --num-edges, --depth, --latency) or --requests FILE"
        )
    else:
        c = constraints_from_flags(
            args.service,
            args.num_edges,
            args.depth,
            args.latency,
            args.n,
            high_latency=args.high_latency,
            include_calls=args.include_call,
            uncommon_call=args.uncommon_call,
        )
        requests = [(c, args.n)]
    total = sum(n for _, n in requests)
    if total > MAX_GRAPHS_PER_RUN:
        raise UsageError(
            f"{args.requests}: asks for {total} graphs in all; at most {MAX_GRAPHS_PER_RUN} per run"
        )
    return requests


def check_args(args: argparse.Namespace) -> tuple[list[tuple[Constraints, int]], Path]:
    """Every flag, file and the output path, checked before torch is imported or a model loaded:
    a bad value is refused in a second, not after minutes of loading or generating."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0: no limit), got {args.top_k}")
    args.start_ns = start_ns(args.start)  # `now` is read once, here
    if not 1 <= args.n <= MAX_GRAPHS_PER_RUN:
        raise UsageError(f"-n must be from 1 to {MAX_GRAPHS_PER_RUN}, got {args.n}")
    requests = load_requests(args)
    check_model_flags(args.model, args.adapter)
    if args.semantic:
        from ..traces import trace_files

        trace_files(args.semantic)
    check_attributes_plannable(args, requests)
    target = check_output_writable(output_path(args.out, args.format))
    _check_ray_and_send(args)
    return requests, target


def check_attributes_plannable(
    args: argparse.Namespace, requests: list[tuple[Constraints, int]]
) -> None:
    """Requested attributes planned against the reference generation will use (the --semantic
    traces, or the adapter's reference.json), before torch is imported: an impossible request is
    refused naming its flag (or file and request) and the value."""
    if not any(c.has_attributes for c, _ in requests):
        return
    from ..attributes import attribute_plans
    from ..reference import REFERENCE_FILE, Reference

    reference = None
    if args.semantic:
        from ..traces import load_traces

        reference = Reference.from_graphs(load_traces(args.semantic))
    else:
        adapter = resolve_adapter(args.adapter)
        if adapter is not None and (Path(adapter) / REFERENCE_FILE).is_file():
            reference = Reference.load(Path(adapter) / REFERENCE_FILE)
    for i, (c, _) in enumerate(requests):
        try:
            attribute_plans([c], reference, args.encoding)
        except ConstraintError as exc:
            where = f"{args.requests}: request {i}" if args.requests else flag_name(exc.field)
            raise UsageError(f"{where}: {exc}") from None


def _check_ray_and_send(args: argparse.Namespace) -> None:
    check_ray_and_send(args)
    if args.send is not None and args.format != "jsonl":  # the file is read back to send it
        raise UsageError(f"--send needs --format jsonl, got --format {args.format}")


def _requests_file(path: Path, default_n: int) -> list[tuple[Constraints, int]]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data: Any = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise UsageError(
            f"{path}: not valid {path.suffix[1:] or 'JSON'}: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected a non-empty list of requests")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise UsageError(f"{path}: request {i} is not a mapping")
        item = dict(item)
        n = item.pop("n", default_n)
        try:
            c = Constraints.from_dict(item)
            check_request_size(c, n)
        except ConstraintError as exc:
            raise UsageError(f"{path}: request {i}: {exc}") from None
        out.append((c, n))
    return out


def output_path(out: str, fmt: str) -> Path:
    ext = {"jsonl": "jsonl", "alibaba-csv": "csv"}.get(fmt, "json")
    path = Path(out)
    return path / f"graphs.{ext}" if path.is_dir() or out.endswith("/") else path


def cmd_generate(args: argparse.Namespace) -> int:
    requests, target = check_args(args)  # before torch is imported
    if args.ray is not None:
        status = _generate_on_ray(args, requests, target)
    else:
        status = _generate_here(args, requests, target)
    if status == 0 and args.send:
        return _send_file(target, args)
    return status


def _generate_on_ray(
    args: argparse.Namespace, requests: list[tuple[Constraints, int]], target: Path
) -> int:
    """`--ray`: shards in `shards/` beside the output, then the merged output. Without --seed a
    rerun takes the seed of the job already in the folder, so it resumes."""
    from ..distributed import JobOptions, run_distributed, write_merged

    folder = target.parent / "shards"
    seed = args.seed if args.seed is not None else _folder_seed(folder)
    options = JobOptions(
        temperature=args.temperature,
        top_k=args.top_k,
        constrained=not args.unconstrained,
        fmt=args.encoding,
        novel_calls=args.novel_calls,
        model=args.model,
        adapter="default" if args.adapter is None else resolve_adapter(args.adapter),
        semantic=args.semantic,
    )  # fmt: skip
    constraints = [c for c, n in requests for _ in range(n)]
    report = run_distributed(
        constraints,
        seed=seed,
        out_dir=folder,
        workers=args.workers,
        actors_per_gpu=args.actors_per_gpu,
        address=None if args.ray == "local" else args.ray,
        options=options,
    )
    count = write_merged(folder, target, args.format, base_epoch_ns=args.start_ns)
    print(
        f"requested {report.graphs}, valid {report.valid}, seed {seed}; {len(report.ran)} "
        f"shards run on {report.workers} actors in {report.seconds:.1f} s, "
        f"{len(report.skipped)} finished before; {count} written -> {target} (shards: {folder})"
    )
    return 0


def _folder_seed(folder: Path) -> int:
    from ..distributed.manifest import job_seed

    seed = job_seed(folder)
    return seed if seed is not None else random.SystemRandom().randrange(2**31)


def _send_file(target: Path, args: argparse.Namespace) -> int:
    from ..exports.send import send_graphs
    from .send import valid_graphs

    graphs = list(valid_graphs(target))
    start = "now" if args.start_ns is None else _ns_datetime(args.start_ns)
    report = send_graphs(graphs, args.send, protocol=args.protocol, rate=args.rate, start=start)
    print(report.summary())
    return 0 if not report.traces_failed else 1


def _generate_here(
    args: argparse.Namespace, requests: list[tuple[Constraints, int]], target: Path
) -> int:
    from ..decoding.models import load_model

    reference = None
    if args.semantic:
        from ..reference import Reference
        from ..traces import load_traces

        reference = Reference.from_graphs(load_traces(args.semantic))
    lm = load_model(args.model, resolve_adapter(args.adapter))
    constraints = [c for c, n in requests for _ in range(n)]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    tally = _Tally(len(constraints))
    progress = GraphProgress(len(constraints))
    with _graph_sink(target, args.format, args.start_ns) as sink:
        try:
            for k in range(0, len(constraints), CHUNK):
                chunk = constraints[k : k + CHUNK]
                run = _generate_chunk(
                    args, lm, reference, chunk, seed, k, lambda done, k=k: progress(k + done)
                )
                sink(run.generations)
                tally.add(run)
        except KeyboardInterrupt:
            if not tally.done:
                raise  # nothing finished: the target is left as it was
            tally.interrupted = True
        finally:
            progress.close()
    print(tally.summary(target))
    if tally.interrupted:
        print(
            f"tracegrammar: interrupted: kept the {tally.done} finished graphs of "
            f"{tally.requested} in {target}",
            file=sys.stderr,
        )
        return 130
    return 0


def _generate_chunk(
    args: argparse.Namespace,
    lm: Any,
    reference: Any,
    chunk: list[Constraints],
    seed: int,
    k: int,
    progress: Callable[[int], None] | None = None,
) -> Any:
    from ..decoding.driver import run_generation

    return run_generation(
        chunk,
        1,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=chunk_seed(seed, k // CHUNK),
        model=lm,
        constrained=not args.unconstrained,
        fmt=args.encoding,
        reference=reference,
        novel_calls=args.novel_calls,
        progress=progress or False,
    )


def _ns_datetime(ns: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


@contextmanager
def _graph_sink(
    target: Path, fmt: str, base_epoch_ns: int | None = None
) -> Iterator[Callable[[list[Any]], None]]:
    """A function taking each chunk's generations. JSON Lines are appended to a temporary file
    beside `target` at once, renamed into place at the end (or after Ctrl-C, with what was
    finished); the one-document formats collect the valid graphs and are written at the end.
    With a base (`--start`) every record is stamped with it, and exports start there."""
    if fmt == "jsonl":
        with atomic_writer(target) as fh:

            def append(generations: list[Any]) -> None:
                for g in generations:
                    record = stamp_record(generation_record(g), base_epoch_ns)
                    fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                fh.flush()

            yield append
        return
    from .. import exports

    graphs: list[CallGraph] = []
    yield lambda generations: graphs.extend(g.graph for g in generations if g.valid)
    exports.write(graphs, target, fmt, base_epoch_ns=base_epoch_ns)


@dataclass
class _Tally:
    """Counts over the chunks, for the progress lines and the closing summary."""

    requested: int
    done: int = 0
    valid: int = 0
    passes: int = 0
    sampled: int = 0
    forced: int = 0
    interrupted: bool = False
    start: float = field(default_factory=time.perf_counter)

    def add(self, run: Any) -> None:
        self.done += len(run.generations)
        self.valid += sum(g.valid for g in run.generations)
        s = run.stats
        self.passes += s.forward_passes
        self.sampled += s.sampled_tokens
        self.forced += s.forced_tokens

    def summary(self, target: Path) -> str:
        seconds = time.perf_counter() - self.start
        share = self.forced / (self.forced + self.sampled) if self.forced + self.sampled else 0.0
        return (
            f"requested {self.requested}, valid {self.valid}, {seconds:.1f} s, "
            f"{self.valid / seconds if seconds else 0:.3f} valid graphs/s; "
            f"{self.passes} forward passes, {self.sampled} sampled + {self.forced} forced "
            f"tokens ({100 * share:.0f}% forced) -> {target}"
        )
