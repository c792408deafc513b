"""`tracegrammar bench workload`: the context task (a window's graph contexts), constrained vs
unconstrained, and the realism of generated windows against real ones.

Compliance. Requests come from real windows of `compliance_s` seconds of the data (timestamped
traces): the window's length and trace count, and up to `max_include` of its services (those the
model's reference knows) as required ids, the papers' instruction. At each temperature the model
writes every window constrained (context grammar and window rules) and unconstrained (free until
`</window>` or a token budget); a window complies when it has exactly the requested lines, every
arrival inside the window and in order, and every required id (the papers' count, window and ids).
The papers report 71.8-93.2% for their context task.

Realism. The timestamped traces are split in time: the first half fits the baseline (and is the
real-vs-real floor), windows of `realism_s` seconds of the second half are the targets (up to
`realism_windows` of them, each its first `max_traces` traces). For each target window (its
length and trace count, no required ids) the model (constrained, at `temperature`, once per
`priors` mode: `decoding.context.PRIOR_MODES`) and the baseline write a window; each source's
windows are pooled and compared with the pooled target windows: service-mix Jensen-Shannon
divergence (smoothed counts over the union of services), normalized EMD of the arrival position
in the window (arrival / length), and the mean coefficient of variation of per-tenth arrival
counts (burstiness) next to the targets'. The model's service prior is the baseline's service
mix (`ProbabilisticBaseline.service_mix` of the first half): both draw from the same counts. The
baseline is cheap, so it draws `baseline_draws` times (seeds seed, seed+1, ...): the spread of its
measures over draws is how much one draw's numbers move by chance. The floor is as many of the
first half's windows of the same length.

Writes OUT/records.jsonl, OUT/summary.json and OUT/summary.md.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..context_prior import PRIOR_MODES
from ..errors import InputError
from ..io import atomic_writer
from ..metrics import js_divergence, normalized_emd, smoothed
from ..workloads import RealWindow, WindowContext, WindowRequest, real_windows, stamped
from .tables import machine, table_lines

#: The papers' context-generation instruction compliance (first paper), lowest and highest.
PAPER_COMPLIANCE = (0.718, 0.932)
TEMPERATURES = (0.2, 0.5, 0.8, 1.0)
DEFAULT_DATA = "../shared/data/alibaba-v2022-rpc-casper/alibaba_v2022_rpc_naive_accurate_2.csv"
BINS = 10


@dataclass(frozen=True)
class WorkloadBenchOptions:
    data: str = DEFAULT_DATA
    out: str = "bench/results/workload"
    seed: int = 0
    temperatures: tuple[float, ...] = TEMPERATURES
    #: windows per temperature and mode, their length (s), required ids per request at most
    compliance_windows: int = 4
    compliance_s: float = 1.0
    #: a compliance window's first traces at most (the free model writes up to its budget)
    compliance_traces: int = 6
    max_include: int = 2
    #: target windows for realism, their length (s), and the model's temperature there
    realism_windows: int = 2
    realism_s: float = 5.0
    temperature: float = 0.8
    max_traces: int = 40
    #: how the model's contexts sample services and arrivals, one realism row each
    priors: tuple[str, ...] = ("data", "product", "off")
    baseline_draws: int = 20
    model: str | None = None
    adapter: str | None = None


def check_options(opts: WorkloadBenchOptions) -> None:
    if not Path(opts.data).exists():
        raise InputError(f"--data {opts.data}: no such file")
    for name in ("compliance_windows", "compliance_traces", "realism_windows", "max_traces"):
        if getattr(opts, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(opts, name)}")
    if opts.compliance_s <= 0 or opts.realism_s <= 0:
        raise InputError("window lengths must be > 0 s")
    if opts.baseline_draws < 1:
        raise InputError(f"--baseline-draws must be >= 1, got {opts.baseline_draws}")
    bad = [p for p in opts.priors if p not in PRIOR_MODES]
    if bad:
        raise InputError(f"--priors must be among {','.join(PRIOR_MODES)}, got {bad[0]!r}")


def _pick(windows: list[RealWindow], k: int, rng: random.Random) -> list[RealWindow]:
    return sorted(rng.sample(windows, min(k, len(windows))), key=lambda w: w.start)


def _trim(w: RealWindow, most: int) -> RealWindow:
    return RealWindow(w.start, w.end, w.contexts[:most]) if most else w


def compliance_requests(
    windows: list[RealWindow], known: frozenset[str] | None, max_include: int, rng: random.Random
) -> list[WindowRequest]:
    out = []
    for w in windows:
        services = sorted({c.service for c in w.contexts if known is None or c.service in known})
        include = rng.sample(services, min(max_include, len(services)))
        out.append(WindowRequest(w.start, w.end, len(w.contexts), tuple(sorted(include))))
    return out


# ------------------------------------------------------------------------------------------------
# realism measures
# ------------------------------------------------------------------------------------------------


def service_js(real: list[WindowContext], synthetic: list[WindowContext]) -> float:
    names = sorted({c.service for c in real} | {c.service for c in synthetic})
    index = {s: i for i, s in enumerate(names)}
    p, q = np.zeros(len(names)), np.zeros(len(names))
    for c in real:
        p[index[c.service]] += 1
    for c in synthetic:
        q[index[c.service]] += 1
    return js_divergence(smoothed(p), smoothed(q))


def positions(windows: list[tuple[float, list[WindowContext]]]) -> list[float]:
    """Arrivals as a share of their window's length (0 start, 1 end)."""
    return [c.at / (length * 1000) for length, cs in windows for c in cs]


def burstiness(windows: list[tuple[float, list[WindowContext]]]) -> float:
    """Mean over windows of the coefficient of variation of arrivals per tenth of the window
    (0: even; a Poisson process gives about 1/sqrt(mean per tenth))."""
    cvs = []
    for length, cs in windows:
        if not cs:
            continue
        counts = np.bincount(
            [min(int(c.at / (length * 1000) * BINS), BINS - 1) for c in cs], minlength=BINS
        )
        cvs.append(float(counts.std() / counts.mean()))
    return float(np.mean(cvs)) if cvs else float("nan")


def realism_row(
    name: str,
    target: list[tuple[float, list[WindowContext]]],
    source: list[tuple[float, list[WindowContext]]],
) -> dict[str, Any]:
    real = [c for _, cs in target for c in cs]
    syn = [c for _, cs in source for c in cs]
    return {
        "source": name,
        "traces": len(syn),
        "services": len({c.service for c in syn}),
        "service_js": service_js(real, syn) if syn else None,
        "arrival_emd": normalized_emd(positions(target), positions(source)) if syn else None,
        "burstiness": burstiness(source),
        "target_burstiness": burstiness(target),
    }


#: The realism row of each prior mode of the model.
MODEL_ROWS = {
    "data": "model (data prior)",
    "product": "model x prior",
    "off": "model (no prior)",
}
SPREAD_MEASURES = {
    "service_js": "service JS",
    "arrival_emd": "arrival EMD",
    "burstiness": "burstiness",
}


def baseline_spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, lowest and highest of each measure over the baseline's draws."""
    out: dict[str, Any] = {"draws": len(rows)}
    for key in SPREAD_MEASURES:
        values = [r[key] for r in rows if r[key] is not None and r[key] == r[key]]
        if values:
            out[key] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
    return out


def command_line() -> str:
    """The command as a user types it: `tracegrammar` and the arguments."""
    return " ".join(["tracegrammar", *sys.argv[1:]])


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


def run_workload_bench(opts: WorkloadBenchOptions, log: Any = print) -> dict[str, Any]:
    from ..baseline import ProbabilisticBaseline
    from ..decoding.context import known_services, write_windows
    from ..decoding.models import load_model
    from ..traces import load_traces

    check_options(opts)
    t0 = time.perf_counter()
    rng = random.Random(opts.seed)
    graphs = stamped(load_traces(opts.data))
    if len(graphs) < 4:
        raise InputError(f"--data {opts.data}: fewer than 4 traces with arrival times")
    lm = load_model(opts.model, opts.adapter)
    known = known_services(lm.reference())
    records: list[dict[str, Any]] = []

    # -- compliance ---------------------------------------------------------------------------
    small = [_trim(w, opts.compliance_traces) for w in real_windows(graphs, opts.compliance_s)]
    requests = compliance_requests(
        _pick(small, opts.compliance_windows, rng), known, opts.max_include, rng
    )
    compliance: list[dict[str, Any]] = []
    for temperature in opts.temperatures if requests else ():
        for constrained in (True, False):
            t = time.perf_counter()
            results, stats = write_windows(
                requests, lm, temperature=temperature, seed=opts.seed, constrained=constrained
            )
            for r in results:
                records.append(
                    {
                        "part": "compliance",
                        "temperature": temperature,
                        "constrained": constrained,
                        "traces": r.request.num_traces,
                        "include": list(r.request.include),
                        "lines": len(r.contexts),
                        "violations": list(r.violations),
                        "compliant": r.compliant,
                        "text": r.text[:4000],
                    }
                )
            row = {
                "temperature": temperature,
                "constrained": constrained,
                "windows": len(results),
                "compliant": sum(r.compliant for r in results) / len(results),
                "count": sum("count" not in r.violations for r in results) / len(results),
                "window": sum(
                    not {"window", "order"} & set(r.violations) for r in results
                ) / len(results),
                "include": sum("include" not in r.violations for r in results) / len(results),
                "wall_s": time.perf_counter() - t,
                "forward_passes": stats.forward_passes,
            }  # fmt: skip
            compliance.append(row)
            log(
                f"compliance T={temperature} {'constrained' if constrained else 'free'}: "
                f"{row['compliant']:.0%} ({row['wall_s']:.0f} s)"
            )

    # -- realism ------------------------------------------------------------------------------
    half = graphs[len(graphs) // 2].timestamp
    assert half is not None
    first = [g for g in graphs if g.timestamp is not None and g.timestamp < half]
    second = [g for g in graphs if g.timestamp is not None and g.timestamp >= half]
    pool = real_windows(second, opts.realism_s)
    targets = _pick([_trim(w, opts.max_traces) for w in pool], opts.realism_windows, rng)
    floor_windows = [_trim(w, opts.max_traces) for w in real_windows(first, opts.realism_s)]
    realism: list[dict[str, Any]] = []
    spread: dict[str, Any] = {}
    if targets:
        target = [(opts.realism_s, list(w.contexts)) for w in targets]
        wanted = [WindowRequest(w.start, w.end, len(w.contexts)) for w in targets]
        baseline = ProbabilisticBaseline.fit(first)
        draws = [
            [
                (opts.realism_s, baseline.window_contexts(r, (opts.seed + d) * 1_000_003 + i))
                for i, r in enumerate(wanted)
            ]
            for d in range(opts.baseline_draws)
        ]
        spread = baseline_spread([realism_row("baseline", target, w) for w in draws])
        sources: dict[str, list[tuple[float, list[WindowContext]]]] = {
            "real (first half)": [
                (opts.realism_s, list(w.contexts)) for w in _pick(floor_windows, len(targets), rng)
            ],
            "baseline": draws[0],
        }
        for prior in opts.priors:
            t = time.perf_counter()
            results, _ = write_windows(
                wanted,
                lm,
                temperature=opts.temperature,
                seed=opts.seed,
                prior=prior,
                service_counts=baseline.service_mix,
            )
            log(f"realism: model ({prior}) windows in {time.perf_counter() - t:.0f} s")
            sources[MODEL_ROWS[prior]] = [(opts.realism_s, list(r.contexts)) for r in results]
        for name, windows in sources.items():
            row = realism_row(name, target, windows)
            realism.append(row)
            for length, cs in windows:
                records.append(
                    {
                        "part": "realism",
                        "source": name,
                        "length_s": length,
                        "contexts": [asdict(c) for c in cs],
                    }
                )
        records.extend(
            {"part": "realism", "source": "target", "length_s": length, "contexts": [asdict(c) for c in cs]}
            for length, cs in target
        )  # fmt: skip

    summary = {
        "options": asdict(opts),
        "model": lm.name,
        "known_services": len(known) if known else None,
        "data_traces": len(graphs),
        "data_span_s": (graphs[-1].timestamp or 0) - (graphs[0].timestamp or 0),
        "compliance": compliance,
        "paper_compliance": PAPER_COMPLIANCE,
        "realism": realism,
        "baseline_spread": spread,
        "target_pool": {"windows": len(pool), "traces": sum(len(w.contexts) for w in pool)},
        "targets": [
            {"start": w.start, "length_s": opts.realism_s, "traces": len(w.contexts)}
            for w in targets
        ],
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.perf_counter() - t0,
        "command": command_line(),
    }
    out = Path(opts.out)
    with atomic_writer(out / "records.jsonl") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    with atomic_writer(out / "summary.json") as fh:
        json.dump(summary, fh, indent=1)
    with atomic_writer(out / "summary.md") as fh:
        fh.write("\n".join(summary_lines(summary)) + "\n")
    return summary


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


def typed_command(command: str) -> str:
    """A recorded command as a user types it: `tracegrammar` for the path of the program (runs
    recorded before `command_line` kept `python path/to/__main__.py ...`)."""
    words = command.split(" ")
    if words and (words[0].endswith("__main__.py") or words[0].endswith("/tracegrammar")):
        words[0] = "tracegrammar"
    return " ".join(words)


def writer_lines(o: dict[str, Any]) -> list[str]:
    """What wrote the model's context lines in a run with options `o`."""
    if "priors" not in o:  # a run from before the data priors
        return [
            "What writes a context line: the base model under the context grammar and the "
            "window rules, every field (this run predates the data priors: the model alone, "
            "what `prior=off` does now)."
        ]
    return [
        "What writes a context line: the base model under the context grammar and the window "
        'rules writes num_edges, depth and latency; by default (`prior=data`: rows "model (data '
        "prior)\" and the compliance table) the service is drawn digit by digit from the data's "
        "service mix (graphs per service: the adapter's reference counts for the compliance "
        "table, the baseline's first-half counts for the realism rows, so there the baseline "
        "and the model draw from the same counts) and the arrival from a Poisson process "
        'filling the window, each within what the rules allow. "model x prior" samples those '
        "two fields from the model's distribution (at the temperature) times the prior's, "
        '"model (no prior)" from the model alone (tracegrammar.decoding.context, '
        "tracegrammar.context_prior)."
    ]


def summary_lines(s: dict[str, Any]) -> list[str]:
    o = s["options"]
    lines = [
        "# Workloads: the context task and window realism",
        "",
        f"Model {s['model']} (its adapter was never trained on the context task); data "
        f"{Path(o['data']).name} "
        f"({s['data_traces']} timestamped traces over {s['data_span_s']:.0f} s); seed "
        f"{o['seed']}; machine: {s['machine']}; {s['date']}; {s['wall_s']:.0f} s.",
        "",
        f"Command: `{typed_command(s['command'])}`",
        "",
        *writer_lines(o),
        "",
        "## Context-task compliance",
        "",
    ]
    if not s["compliance"]:
        lines.append("Not measured in this run (`--compliance-windows 0`).")
    else:
        lines += [
            f"{o['compliance_windows']} real windows of {o['compliance_s']:g} s per row (their "
            f"trace count, at most their first {o['compliance_traces']}; up to "
            f"{o['max_include']} of their services as required ids). Compliant: "
            "exactly the requested lines, every arrival in the window and in order, every "
            f"required id. The papers report {PAPER_COMPLIANCE[0]:.1%}-{PAPER_COMPLIANCE[1]:.1%}.",
            "",
        ]
    rows = [
        [
            f"{r['temperature']:g}",
            "constrained" if r["constrained"] else "unconstrained",
            r["windows"],
            _pct(r["compliant"]),
            _pct(r["count"]),
            _pct(r["window"]),
            _pct(r["include"]),
            f"{r['wall_s']:.0f}",
        ]
        for r in s["compliance"]
    ]
    if rows:
        lines += table_lines(
            ["T", "mode", "windows", "compliant", "count", "times", "ids", "wall s"], rows
        )
    lines += [
        "",
        "## Realism of a generated window",
        "",
        f"{len(s['targets'])} target windows of {o['realism_s']:g} s from the second half of the "
        f"data ({sum(t['traces'] for t in s['targets'])} traces, at most {o['max_traces']} per "
        "window: the first ones); each source writes windows of the same length and count, "
        "pooled"
        + (
            f" (the second half holds {s['target_pool']['windows']} windows of this length, "
            f"{s['target_pool']['traces']} traces: the data's limit). "
            if "target_pool" in s
            else ". "
        )
        + "Service JS: Jensen-Shannon divergence (nats, at most 0.693) of the service mix; arrival "
        "EMD: normalized EMD of arrival position in the window; burstiness: mean coefficient of "
        "variation of arrivals per tenth of a window (targets in the last column). Lower JS and "
        "EMD are closer. The baseline is fitted on the first half; the floor is real windows of "
        f"the first half. Model at T={o['temperature']:g}, constrained.",
        "",
    ]
    rows = [
        [
            r["source"],
            r["traces"],
            r["services"],
            _num(r["service_js"]),
            _num(r["arrival_emd"]),
            _num(r["burstiness"]),
            _num(r["target_burstiness"]),
        ]
        for r in s["realism"]
    ]
    lines += table_lines(
        ["source", "traces", "services", "service JS", "arrival EMD", "burstiness", "target"],
        rows,
    )
    spread = s.get("baseline_spread") or {}
    if spread.get("draws", 0) > 1:
        parts = [
            f"{name} {_num(spread[key]['mean'])} ({_num(spread[key]['min'])}-"
            f"{_num(spread[key]['max'])})"
            for key, name in SPREAD_MEASURES.items()
            if key in spread
        ]
        lines += [
            "",
            f"The baseline over {spread['draws']} draws (mean, lowest-highest; the row above is "
            f"the first): {'; '.join(parts)}. A model row inside that range is as close as the "
            "baseline up to chance.",
        ]
    return lines
