"""`tracegrammar bench validity`, `fidelity`, `infill` and `attributes`: the flags, their checks,
and the frozen options the benchmarks run on (`evaluation.validity`, `evaluation.fidelity`,
`evaluation.infill`, `evaluation.attributes`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..context_prior import PRIOR_MODES
from ..errors import UsageError
from ..evaluation.fidelity import CHUNK, GRAPHS, SLOW_GRAPHS, SOURCES, FidelityOptions
from ..evaluation.grid import MODES, Cell
from ..evaluation.validity import ValidityOptions, plan
from ..grammar import ENCODINGS
from .common import (
    check_model_flags,
    comma_choices,
    comma_floats,
    comma_list,
    model_label,
    resolve_adapter,
)


def register_bench(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(
        metavar="BENCH", required=True, help="which benchmark (BENCH --help: its flags)"
    )
    register_validity(sub.add_parser("validity", help="validity over the num_edges x depth grid"))
    register_fidelity(
        sub.add_parser("fidelity", help="every source side by side against the validation split")
    )
    register_infill_bench(
        sub.add_parser("infill", help="infilling accuracy against the masked truth")
    )
    register_attributes_bench(
        sub.add_parser(
            "attributes", help="instruction accuracy of requested attributes over temperatures"
        )
    )
    register_workload_bench(
        sub.add_parser("workload", help="context-task compliance and window realism")
    )


# ------------------------------------------------------------------------------------------------
# bench attributes
# ------------------------------------------------------------------------------------------------


def register_attributes_bench(p: argparse.ArgumentParser) -> None:
    from ..evaluation.attributes import ATTRIBUTES, MODES, AttributeOptions

    d = AttributeOptions()
    p.add_argument("--data", default=d.data, help=f"real traces (default {d.data})")
    p.add_argument("--n", type=int, default=d.n, help=f"prompts per attribute (default {d.n})")
    p.add_argument(
        "--temperatures", type=comma_floats, default=list(d.temperatures),
        help="comma-separated (default 0.2,0.5,0.8,1.0)",
    )  # fmt: skip
    p.add_argument(
        "--modes", type=comma_list, default=list(MODES),
        help=f"comma-separated (default {','.join(MODES)})",
    )  # fmt: skip
    p.add_argument(
        "--attributes", type=comma_list, default=list(ATTRIBUTES),
        help=f"comma-separated (default {','.join(ATTRIBUTES)})",
    )  # fmt: skip
    p.add_argument(
        "--encoding", default=d.encoding,
        help=f"layer or layer_instruct (default {d.encoding}: the prompt states the request)",
    )  # fmt: skip
    p.add_argument(
        "--max-edges", type=int, default=d.max_edges,
        help=f"prompts from validation graphs with at most this many calls ({d.max_edges})",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the prompt draw and sampling")
    p.add_argument(
        "--time-limit", type=float, default=0,
        help="seconds after which no new (temperature, mode) run starts (0: none)",
    )  # fmt: skip
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    p.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    p.set_defaults(func=cmd_attributes_bench)


def cmd_attributes_bench(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation.attributes import AttributeOptions, check_options, run_attributes
    from .common import check_model_flags

    check_model_flags(args.model, args.adapter)
    opts = AttributeOptions(
        data=args.data,
        out=args.out,
        n=args.n,
        temperatures=tuple(args.temperatures),
        modes=tuple(args.modes),
        attributes=tuple(args.attributes),
        encoding=args.encoding,
        max_edges=args.max_edges,
        seed=args.seed,
        time_limit=args.time_limit,
        model=args.model,
        adapter=resolve_adapter(args.adapter),
    )
    try:
        check_options(opts)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    return run_attributes(opts, model_label(opts.model, opts.adapter))


# ------------------------------------------------------------------------------------------------
# bench workload
# ------------------------------------------------------------------------------------------------


def register_workload_bench(p: argparse.ArgumentParser) -> None:
    from ..evaluation.workload import WorkloadBenchOptions

    d = WorkloadBenchOptions()
    p.add_argument("--data", default=d.data, help=f"timestamped traces (default {d.data})")
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"window picks, sampling ({d.seed})")
    p.add_argument(
        "--temperatures", type=comma_floats, default=list(d.temperatures),
        help="compliance temperatures (default 0.2,0.5,0.8,1.0)",
    )  # fmt: skip
    p.add_argument(
        "--compliance-windows", type=int, default=d.compliance_windows,
        help=f"real windows per temperature and mode ({d.compliance_windows})",
    )  # fmt: skip
    p.add_argument(
        "--compliance-s", type=float, default=d.compliance_s,
        help=f"length of a compliance window, s ({d.compliance_s:g})",
    )  # fmt: skip
    p.add_argument(
        "--compliance-traces", type=int, default=d.compliance_traces,
        help=f"a compliance window's first traces at most ({d.compliance_traces})",
    )  # fmt: skip
    p.add_argument(
        "--max-include", type=int, default=d.max_include,
        help=f"required ids per compliance request at most ({d.max_include})",
    )  # fmt: skip
    p.add_argument(
        "--realism-windows", type=int, default=d.realism_windows,
        help=f"target windows for realism ({d.realism_windows})",
    )  # fmt: skip
    p.add_argument(
        "--realism-s", type=float, default=d.realism_s,
        help=f"length of a realism window, s ({d.realism_s:g})",
    )  # fmt: skip
    p.add_argument("--temperature", type=float, default=d.temperature, help="realism temperature")
    p.add_argument(
        "--priors", type=comma_choices(PRIOR_MODES), default=list(d.priors),
        help="the model's realism rows: how contexts sample services and arrivals "
        f"(default {','.join(d.priors)})",
    )  # fmt: skip
    p.add_argument(
        "--baseline-draws", type=int, default=d.baseline_draws,
        help=f"baseline windows drawn per target, for its spread ({d.baseline_draws})",
    )  # fmt: skip
    p.add_argument("--max-traces", type=int, default=d.max_traces, help="per window, at most")
    p.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    p.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    p.set_defaults(func=cmd_workload_bench)


def cmd_workload_bench(args: argparse.Namespace) -> int:
    from ..evaluation.workload import WorkloadBenchOptions, check_options, run_workload_bench
    from .common import check_model_flags

    check_model_flags(args.model, args.adapter)
    opts = WorkloadBenchOptions(
        data=args.data,
        out=args.out,
        seed=args.seed,
        temperatures=tuple(args.temperatures),
        compliance_windows=args.compliance_windows,
        compliance_s=args.compliance_s,
        compliance_traces=args.compliance_traces,
        max_include=args.max_include,
        realism_windows=args.realism_windows,
        realism_s=args.realism_s,
        temperature=args.temperature,
        max_traces=args.max_traces,
        priors=tuple(args.priors),
        baseline_draws=args.baseline_draws,
        model=args.model,
        adapter=resolve_adapter(args.adapter),
    )
    check_options(opts)
    summary = run_workload_bench(opts)
    print(f"wrote {opts.out}/summary.md ({summary['wall_s']:.0f} s)")
    return 0


# ------------------------------------------------------------------------------------------------
# bench infill
# ------------------------------------------------------------------------------------------------


def register_infill_bench(p: argparse.ArgumentParser) -> None:
    from ..evaluation.infill import METHODS, TASKS, InfillOptions

    d = InfillOptions()
    p.add_argument("--data", default=d.data, help="real traces")
    p.add_argument("--n", type=int, default=d.n, help="cases per task")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed of the masked cases")
    p.add_argument(
        "--methods", type=comma_list, default=list(METHODS),
        help=f"infilling methods, comma-separated, from {', '.join(METHODS)}",
    )  # fmt: skip
    p.add_argument(
        "--tasks", type=comma_list, default=list(TASKS),
        help=f"comma-separated tasks to draw cases for (default {','.join(TASKS)})",
    )  # fmt: skip
    p.add_argument(
        "--no-recover", action="store_true",
        help="skip infilling the graphs the loader drops",
    )  # fmt: skip
    p.add_argument(
        "--recover-with", default=d.recover_with,
        help="who picks the dropped graphs' values: frequency (default) or model",
    )  # fmt: skip
    p.add_argument(
        "--time-limit", type=float, default=0,
        help="seconds after which no new case starts; the summary says how many ran (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=0,
        help="torch CPU threads (0: torch's default; 1 is fastest when other work shares the cores)",
    )  # fmt: skip
    p.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    p.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    p.set_defaults(func=cmd_infill_bench)


def cmd_infill_bench(args: argparse.Namespace) -> int:
    from ..evaluation.infill import InfillOptions, check_options, run_infill

    check_model_flags(args.model, args.adapter)
    opts = InfillOptions(
        data=args.data,
        out=args.out,
        n=args.n,
        seed=args.seed,
        methods=tuple(args.methods),
        tasks=tuple(args.tasks),
        recover=not args.no_recover,
        recover_with=args.recover_with,
        time_limit=args.time_limit,
        model=args.model,
        adapter=resolve_adapter(args.adapter),
        threads=args.threads,
    )
    check_options(opts)
    uses_model = opts.methods != ("frequency",) or opts.recover_with == "model"
    label = model_label(opts.model, opts.adapter) if uses_model else "none (frequency baseline)"
    return run_infill(opts, label)


# ------------------------------------------------------------------------------------------------
# bench validity
# ------------------------------------------------------------------------------------------------


def register_validity(v: argparse.ArgumentParser) -> None:
    defaults = ValidityOptions()
    v.add_argument(
        "--data", default=defaults.data, help="real traces for prompts and the reference set"
    )
    v.add_argument("--out", default=defaults.out, help="output folder (resumes if present)")
    v.add_argument("--samples", type=int, default=defaults.samples, help="samples per cell")
    v.add_argument(
        "--cells", type=int, default=0, help="a seeded random subset of this many cells (0: all)"
    )
    v.add_argument(
        "--only",
        type=parse_cells,
        help="just these cells, as NUM_EDGESxDEPTH separated by commas (e.g. 14x6,20x5)",
    )
    v.add_argument(
        "--max-edges", type=int, default=defaults.max_edges, help="largest num_edges of the grid"
    )
    v.add_argument(
        "--max-depth", type=int, default=defaults.max_depth, help="largest depth of the grid"
    )
    v.add_argument(
        "--temperatures", type=comma_floats, default=list(defaults.temperatures),
        help="sampling temperatures, comma-separated",
    )  # fmt: skip
    v.add_argument(
        "--modes", type=comma_choices(MODES), default=list(MODES),
        help=f"decoding modes, comma-separated, from {', '.join(MODES)}",
    )  # fmt: skip
    v.add_argument(
        "--encodings",
        type=comma_choices(tuple(ENCODINGS)),
        default=list(defaults.encodings),
        help="text encodings, comma-separated",
    )
    # the earlier name of --encodings, kept working but hidden
    v.add_argument(
        "--formats",
        dest="encodings",
        type=comma_choices(tuple(ENCODINGS)),
        help=argparse.SUPPRESS,
    )
    v.add_argument("--seed", type=int, default=0, help="random seed (cells, prompts, sampling)")
    v.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    v.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    v.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes running cells side by side, each with its own model",
    )
    v.add_argument(
        "--time-limit",
        type=float,
        default=0,
        help="seconds after which no new cell starts (unfinished cells are left for a rerun)",
    )
    v.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing: write the summary again from the records in --out, keeping the "
        "machine they were measured on",
    )
    v.set_defaults(func=cmd_validity)


def validity_options(args: argparse.Namespace) -> ValidityOptions:
    return ValidityOptions(
        data=args.data,
        out=args.out,
        samples=args.samples,
        cells=args.cells,
        only=tuple(args.only or ()),
        max_edges=args.max_edges,
        max_depth=args.max_depth,
        temperatures=tuple(args.temperatures),
        modes=tuple(args.modes),
        encodings=tuple(args.encodings),
        seed=args.seed,
        model=args.model,
        adapter=resolve_adapter(args.adapter),
        workers=args.workers,
        time_limit=args.time_limit,
    )


def cmd_validity(args: argparse.Namespace) -> int:
    from ..evaluation.validity import rewrite_summary, run_validity

    if args.summary_only:
        return rewrite_summary(Path(args.out))
    opts = validity_options(args)
    check_validity(opts)
    return run_validity(opts, model_label(opts.model, opts.adapter))


def check_validity(opts: ValidityOptions) -> None:
    """Every bad option fails here, in one line, before data, torch or a model is loaded."""
    for flag, value, least in (("--samples", opts.samples, 1), ("--cells", opts.cells, 0),
                               ("--max-edges", opts.max_edges, 1),
                               ("--max-depth", opts.max_depth, 1),
                               ("--workers", opts.workers, 1)):  # fmt: skip
        if value < least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    for flag, values in (("--temperatures", opts.temperatures), ("--modes", opts.modes),
                         ("--encodings", opts.encodings)):  # fmt: skip
        if not values:
            raise UsageError(f"{flag}: name at least one")
    bad = [t for t in opts.temperatures if not (math.isfinite(t) and t >= 0)]
    if bad:
        raise UsageError(f"--temperatures: each must be a finite number >= 0, got {bad[0]}")
    if not opts.time_limit >= 0:
        raise UsageError(f"--time-limit must be >= 0 (0: none), got {opts.time_limit}")
    plan(opts)  # --only cells off the grid
    if not Path(opts.data).exists():
        raise UsageError(f"--data {opts.data}: no such file or folder")
    if Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise UsageError(f"--out {opts.out}: exists and is not a folder")
    check_model_flags(opts.model, opts.adapter)


def parse_cells(text: str) -> list[Cell]:
    """`14x6,20x5` -> the cells (num_edges 14, depth 6) and (20, 5)."""
    try:
        return [Cell(*(int(x) for x in item.split("x"))) for item in comma_list(text)]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected cells as NUM_EDGESxDEPTH separated by commas, got {text!r}"
        ) from None


# ------------------------------------------------------------------------------------------------
# bench fidelity
# ------------------------------------------------------------------------------------------------


def register_fidelity(f: argparse.ArgumentParser) -> None:
    f.add_argument("--data", default="../shared/data", help="real traces")
    f.add_argument("--graphs", type=int, default=GRAPHS, help="graphs per fast source")
    f.add_argument(
        "--slow-graphs", type=int, default=SLOW_GRAPHS,
        help="graphs per slow source: global, novel, unconstrained",
    )  # fmt: skip
    f.add_argument(
        "--sources", type=comma_list, default=list(SOURCES),  # checked by check_fidelity: one line
        help="sources, comma-separated, in table order",
    )  # fmt: skip
    f.add_argument(
        "--max-edges", type=int, default=0,
        help="prompts only from validation graphs with at most this many calls (default 0: all)",
    )  # fmt: skip
    f.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    f.add_argument("--chunk", type=int, default=CHUNK, help="prompts per call")
    f.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    f.add_argument("--out", default="bench/results/fidelity", help="output folder (resumes)")
    f.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    f.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    f.add_argument(
        "--summary-only", action="store_true",
        help="generate nothing: write the summary again from the files in --out (and --data)",
    )  # fmt: skip
    f.set_defaults(func=cmd_fidelity)


def check_fidelity(args: argparse.Namespace) -> None:
    """Every bad option fails here, in one line, before data, torch or a model is loaded."""
    for flag, value in (("--graphs", args.graphs), ("--slow-graphs", args.slow_graphs),
                        ("--chunk", args.chunk), ("--bootstrap", args.bootstrap)):  # fmt: skip
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if args.max_edges < 0:
        raise UsageError(f"--max-edges must be >= 0 (0: all), got {args.max_edges}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if not args.sources:
        raise UsageError("--sources: name at least one source")
    bad = [s for s in args.sources if s not in SOURCES]
    if bad:
        raise UsageError(f"--sources: unknown source {bad[0]!r}; choose from {', '.join(SOURCES)}")
    if not Path(args.data).exists():
        raise UsageError(f"--data {args.data}: no such file or folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    check_model_flags(args.model, args.adapter)


def cmd_fidelity(args: argparse.Namespace) -> int:
    from ..evaluation.fidelity import rewrite_summary, run_fidelity

    check_fidelity(args)
    if args.summary_only:
        return rewrite_summary(Path(args.out), args.data)
    opts = FidelityOptions(
        data=args.data,
        out=args.out,
        graphs=args.graphs,
        slow_graphs=args.slow_graphs,
        sources=tuple(args.sources),
        max_edges=args.max_edges,
        temperature=args.temperature,
        chunk=args.chunk,
        bootstrap=args.bootstrap,
        model=args.model,
        adapter=resolve_adapter(args.adapter),
    )
    return run_fidelity(opts, model_label(opts.model, opts.adapter))
