"""`tracegrammar bench infill`: infilling accuracy against the masked truth, and how many of the
graphs the loader drops come back valid.

Cases: for each task (destination, type, start, finish, a whole call between two layers) `n`
validation graphs of `recipe_split(data)` (graphs the shipped adapter never saw) are drawn with
the seed, one maskable call of each is masked (`infilling.mask`), and every method fills it:

- `frequency`: the allowed value most common in that context in the training split;
- `constrained`: the model choosing among the allowed values (`decoding.infill.ModelChooser`);
- `combined`: the same, a destination's or type's score being the model's log-likelihood plus the
  frequency prior's log-probability (`infilling.log_prior`: a product of the two); it reuses the
  `constrained` chooser's scores (a shared memo), so the model runs once for both;
- `unconstrained`: the model's greedy answer to the same prompt, no mask (`free_answer`).

The semantic rules are the adapter's reference (else the training split's). A value is correct
when it equals the truth exactly; for a whole call the summary gives each field, the call's
(destination, type) and all four fields. Valid: the filled graph passes the oracle (and no call of
a leaf type has children).

Every method fills the same cases, so each is compared with `frequency` case by case
(`evaluation.paired`): accuracy with its 95% Wilson interval, the discordant cases, the exact
McNemar p-value and a paired bootstrap interval of the difference. Each record also says how many
values were allowed and whether the truth was among them: a single allowed value is the same for
every constrained method, and a truth the semantic rules do not allow caps their accuracy.

Recovery: the graphs `load_traces(data, keep_incomplete=True)` keeps that the default loader
drops (unknown names, one missing call), each infilled with `recover_with` (validity does not
depend on who picks among the allowed values); a graph no value can make valid is counted with
its reason.

Writes OUT/records.jsonl (one line per case and method), OUT/summary.json and OUT/summary.md.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..infilling import (
    TASKS,
    Chooser,
    Frequencies,
    FrequencyChooser,
    InfillError,
    IntRange,
    Part,
    allowed,
    check_parts,
    eligible,
    fill,
    mask,
    missing_parts,
    parse_answer,
    set_value,
    truth,
    with_sources,
)
from ..io import atomic_writer
from ..reference import Reference
from ..types import ROOT_ID, CallGraph
from .paired import paired, wilson
from .tables import machine, table_lines

METHODS: tuple[str, ...] = ("frequency", "constrained", "combined", "unconstrained")
#: The papers' reported accuracy (§4.5 of the second paper): attributes (type or destination)
#: "over 70%", a missing call 66%.
PAPER = {"destination": "> 70%", "type": "> 70%", "call": "66%"}


@dataclass(frozen=True)
class InfillOptions:
    data: str = "../shared/data"
    out: str = "bench/results/infill"
    n: int = 20  # cases per task
    seed: int = 0
    methods: tuple[str, ...] = METHODS
    tasks: tuple[str, ...] = TASKS
    recover: bool = True
    recover_with: str = "frequency"
    time_limit: float = 0  # seconds after which no new case starts (0: none)
    model: str | None = None
    adapter: str | None = None
    threads: int = 0  # torch CPU threads (0: torch's default)


def draw_cases(
    graphs: list[CallGraph], n: int, seed: int, tasks: tuple[str, ...] = TASKS
) -> list[tuple[CallGraph, Part]]:
    """`n` (graph, masked part) cases per task, drawn with `seed`, interleaved (one case of
    every task, then the next), so a run stopped by its time limit has every task alike. A task's
    cases do not depend on which other tasks are drawn."""
    per_task: list[list[tuple[CallGraph, Part]]] = []
    for kind in tasks:
        cases: list[tuple[CallGraph, Part]] = []
        rng = random.Random(f"{seed}:{kind}")
        order = list(range(len(graphs)))
        rng.shuffle(order)
        picked = 0
        for i in order:
            ids = eligible(graphs[i], kind)
            if not ids:
                continue
            cases.append((graphs[i], Part(rng.choice(ids), kind)))
            picked += 1
            if picked == n:
                break
        per_task.append(cases)
    return [c for k in range(n) for cases in per_task if k < len(cases) for c in [cases[k]]]


def is_valid(graph: CallGraph, reference: Reference) -> bool:
    from ..oracle import check

    if graph.missing or check(graph):
        return False
    return not any(
        e.type in reference.leaf_types and e.rpc_id in graph.children for e in graph.edges
    )


def run_case(
    method: str,
    chooser: Chooser | None,
    lm: Any,
    graph: CallGraph,
    part: Part,
    reference: Reference,
) -> dict[str, Any]:
    masked = mask(graph, part)
    want = truth(graph, part)
    got: dict[str, Any] = {}
    valid = False
    error = None
    if method == "unconstrained":
        from ..decoding.infill import free_answer

        text = free_answer(lm, masked, part)
        try:
            got = parse_answer(part, text)
        except InfillError:
            error = f"not an answer: {text[:60]!r}"
        if got:
            filled = masked
            for name, value in got.items():
                filled = set_value(filled, part.rpc_id, name, value)
            valid = is_valid(with_sources(filled), reference)
    else:
        assert chooser is not None
        try:
            filled = fill(masked, missing_parts(masked), reference, chooser)
            got = {f: getattr(filled.by_id[part.rpc_id], f) for f in part.fields}
            valid = is_valid(filled, reference)
        except InfillError as exc:
            error = str(exc)
    return {
        "method": method,
        "task": part.kind,
        "service": graph.service,
        "rpc_id": part.rpc_id,
        "truth": want,
        "got": got,
        "correct": {f: got.get(f) == want[f] for f in part.fields},
        "valid": valid,
        "error": error,
    }


def allowed_values(
    graph: CallGraph, part: Part, reference: Reference, freq: Frequencies
) -> dict[str, Any]:
    """For a one-field case: how many values the rules allow there and whether the truth is one
    of them (empty for a whole call, whose later fields depend on the earlier choices)."""
    if part.kind == "call":
        return {}
    options = allowed(with_sources(mask(graph, part)), part.rpc_id, part.kind, reference, freq)
    want = truth(graph, part)[part.kind]
    size = options.hi - options.lo + 1 if isinstance(options, IntRange) else len(options)
    return {"allowed": max(size, 0), "truth_allowed": want in options}


def _outcome(r: dict[str, Any]) -> bool:
    """A case's 0/1 outcome: its field right (for a whole call: destination and type)."""
    c = r["correct"]
    return bool(c["destination"] and c["type"]) if r["task"] == "call" else bool(c[r["task"]])


def compare(records: list[dict[str, Any]], baseline: str = "frequency") -> dict[str, Any]:
    """Per task, every method against `baseline` on the cases both filled (`paired.paired`),
    and for one-field tasks the cases with one allowed value and those whose truth is allowed."""
    by: dict[tuple[str, str], dict[int, bool]] = defaultdict(dict)
    about: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if "case" not in r:
            continue
        by[(r["task"], r["method"])][r["case"]] = _outcome(r)
        if "allowed" in r:
            about[r["task"]][r["case"]] = r
    out: dict[str, Any] = {}
    for (task, method), outcomes in sorted(by.items()):
        base = by.get((task, baseline))
        if method == baseline or not base:
            continue
        cases = sorted(set(outcomes) & set(base))
        if cases:
            got = [outcomes[k] for k in cases]
            out.setdefault(task, {})[method] = paired(got, [base[k] for k in cases])
    for task, rows in about.items():
        out.setdefault(task, {})["cases"] = {
            "n": len(rows),
            "one_allowed": sum(r["allowed"] == 1 for r in rows.values()),
            "truth_allowed": sum(r["truth_allowed"] for r in rows.values()),
        }
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task and method: cases, valid, exact accuracy per field (and, for a whole call, of
    its (destination, type) and of all four fields) with the accuracy's 95% Wilson interval,
    mean absolute error of times."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["method"])].append(r)
    out: dict[str, Any] = {}
    for (task, method), rows in sorted(groups.items()):
        n = len(rows)
        entry: dict[str, Any] = {"n": n, "valid": sum(r["valid"] for r in rows) / n}
        fields = list(rows[0]["correct"])
        for f in fields:
            entry[f"acc_{f}"] = sum(r["correct"][f] for r in rows) / n
            if f in ("start", "finish"):
                errs = [
                    abs(r["got"][f] - r["truth"][f])
                    for r in rows
                    if isinstance(r["got"].get(f), int)
                ]
                entry[f"mae_{f}"] = sum(errs) / len(errs) if errs else None
        if task == "call":
            entry["acc_edge"] = (
                sum(r["correct"]["destination"] and r["correct"]["type"] for r in rows) / n
            )
            entry["acc_all"] = sum(all(r["correct"].values()) for r in rows) / n
        entry["accuracy"] = entry["acc_edge"] if task == "call" else entry[f"acc_{task}"]
        entry["accuracy_ci"] = list(wilson(round(entry["accuracy"] * n), n))
        out.setdefault(task, {})[method] = entry
    return out


def dropped_by_default(graph: CallGraph) -> bool:
    """Whether the default loader drops this incomplete graph: a missing call, or an unknown
    value on the root or on a call with children (an unknown leaf it removes instead)."""
    return any(
        p.kind == "call" or p.rpc_id == ROOT_ID or p.rpc_id in graph.children
        for p in missing_parts(graph)
    )


def recover(data: str, reference: Reference, chooser: Chooser) -> dict[str, Any]:
    """The incomplete graphs `keep_incomplete` keeps, infilled: how many come back valid, for
    those the default loader drops and for those it keeps with unknown leaves removed."""
    from ..traces import LoadReport, load_traces

    report = LoadReport()
    incomplete = [g for g in load_traces(data, keep_incomplete=True, report=report) if g.missing]
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for g in incomplete:
        side = "dropped" if dropped_by_default(g) else "leaf_only"
        counts[side] += 1
        if any(p.kind == "call" for p in missing_parts(g)):
            counts["with_missing_call"] += 1
        try:
            filled = fill(g, check_parts(g), reference, chooser)
        except InfillError as exc:
            reasons[_reason(str(exc))] += 1
            continue
        counts[f"{side}_valid"] += is_valid(filled, reference)
    return {
        "incomplete": len(incomplete),
        "dropped_by_default": counts["dropped"],
        "dropped_valid_after_infill": counts["dropped_valid"],
        "with_missing_call": counts["with_missing_call"],
        "leaf_only": counts["leaf_only"],
        "leaf_only_valid_after_infill": counts["leaf_only_valid"],
        "not_infillable": dict(reasons),
        "still_dropped": dict(sorted(report.dropped.items())),
    }


def _reason(message: str) -> str:
    if "known times leave" in message:
        return "known times contradict each other"
    if "more than the" in message:
        return "too many missing parts"
    if "no destination" in message:
        return "no destination fits"
    if "no type" in message:
        return "no call type fits"
    return message.split(": ", 1)[-1][:60]


def rewrite_recovery(out: str | Path, data: str) -> None:
    """Recompute the recovery section of a finished run (it does not depend on the model when
    `recover_with` is frequency) and write its summary again."""
    from ..training.datasets import recipe_split

    path = Path(out) / "summary.json"
    summary = json.loads(path.read_text())
    split = recipe_split(data)
    chooser = FrequencyChooser(Frequencies.from_graphs(split.train))
    summary["recovery"] = recover(data, Reference.from_graphs(split.train), chooser)
    with atomic_writer(path) as fh:
        json.dump(summary, fh, indent=1)
    with atomic_writer(Path(out) / "summary.md") as fh:
        fh.write("\n".join(summary_lines(summary)) + "\n")


def run_infill(opts: InfillOptions, label: str) -> int:
    from ..training.datasets import recipe_split

    t0 = time.time()
    split = recipe_split(opts.data)
    freq = Frequencies.from_graphs(split.train)
    lm = None
    reference: Reference | None = None
    needs_model = any(m != "frequency" for m in opts.methods) or opts.recover_with == "model"
    if needs_model:
        import torch

        from ..decoding.models import load_model

        if opts.threads:
            torch.set_num_threads(opts.threads)

        lm = load_model(opts.model, opts.adapter)
        reference = lm.reference()
    if reference is None:
        reference = Reference.from_graphs(split.train)
    choosers: dict[str, Chooser | None] = {"frequency": FrequencyChooser(freq)}
    if lm is not None:
        from ..decoding.infill import ModelChooser

        model_chooser = ModelChooser(lm, freq)
        choosers["constrained"] = model_chooser
        choosers["combined"] = ModelChooser(lm, freq, prior=True, memo=model_chooser.memo)
        choosers["unconstrained"] = None
    cases = draw_cases(list(split.validation), opts.n, opts.seed, opts.tasks)
    records = []
    started = time.time()
    stopped_at = None
    for k, (graph, part) in enumerate(cases):
        if opts.time_limit and time.time() - started > opts.time_limit:
            stopped_at = k
            break
        about = allowed_values(graph, part, reference, freq)
        for method in opts.methods:
            t = time.time()
            record = run_case(method, choosers[method], lm, graph, part, reference)
            records.append({"case": k, **record, **about, "seconds": round(time.time() - t, 3)})
        print(f"\rcase {k + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    recovery = None
    if opts.recover:
        who = choosers["constrained" if opts.recover_with == "model" else "frequency"]
        assert who is not None
        recovery = recover(opts.data, reference, who)
    summary = {
        "model": label,
        "options": asdict(opts),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.time() - t0, 1),
        "cases_run": len(cases) if stopped_at is None else stopped_at,
        "cases_drawn": len(cases),
        "train_graphs": len(split.train),
        "validation_graphs": len(split.validation),
        "tasks": summarise(records),
        "paired": compare(records),
        "recovery": recovery,
    }
    out = Path(opts.out)
    with atomic_writer(out / "records.jsonl") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    with atomic_writer(out / "summary.json") as fh:
        json.dump(summary, fh, indent=1)
    with atomic_writer(out / "summary.md") as fh:
        fh.write("\n".join(summary_lines(summary)) + "\n")
    print("\n".join(summary_lines(summary)))
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def summary_lines(s: dict[str, Any]) -> list[str]:
    methods = [m for m in METHODS if m in s["options"]["methods"]]
    lines = [
        "# Infilling: accuracy against the masked truth",
        "",
        f"Model {s['model']}; {s['options']['n']} cases per task from the validation split "
        f"({s['validation_graphs']} graphs; frequencies from {s['train_graphs']} training "
        f"graphs), seed {s['options']['seed']}; machine: {s['machine']}; {s['date']}; "
        f"{s['seconds']} s.",
        "",
        *(
            [
                f"Stopped by the time limit ({s['options']['time_limit']} s) after "
                f"{s['cases_run']} of {s['cases_drawn']} cases (cases alternate between tasks).",
                "",
            ]
            if s.get("cases_run", 0) < s.get("cases_drawn", 0)
            else []
        ),
        "Exact-match accuracy [95% Wilson interval] (valid: the filled graph passes the oracle). "
        "For a whole call the accuracy is its (destination, type); times are exact to the "
        "millisecond.",
        "",
    ]
    rows = []
    for task in TASKS:
        by = s["tasks"].get(task)
        if not by:
            continue
        cells = []
        for m in methods:
            e = by.get(m)
            cells.append("-" if e is None else f"{_accuracy(e)} ({_pct(e['valid'])} valid)")
        n = max(e["n"] for e in by.values())
        rows.append([task, n, *cells, PAPER.get(task, "-")])
    lines += table_lines(["task", "n", *methods, "paper"], rows)
    call = s["tasks"].get("call")
    if call:
        lines += ["", "A whole missing call, field by field:", ""]
        crow = []
        for m in methods:
            e = call.get(m)
            if e is None:
                continue
            crow.append(
                [
                    m,
                    *(_pct(e[f"acc_{f}"]) for f in ("destination", "type", "start", "finish")),
                    _pct(e["acc_all"]),
                ]
            )
        lines += table_lines(["method", "destination", "type", "start", "finish", "all four"], crow)
    lines += _paired_lines(s.get("paired") or {})
    maes = []
    for task in ("start", "finish"):
        by = s["tasks"].get(task, {})
        maes.append([task, *(_mae(by.get(m), task) for m in methods)])
    lines += ["", "Mean absolute error of times (ms):", ""]
    lines += table_lines(["task", *methods], maes)
    r = s.get("recovery")
    if r:
        lines += [
            "",
            "## Graphs the loader drops, infilled",
            "",
            f"`load_traces(keep_incomplete=True)` keeps {r['incomplete']} incomplete graphs. "
            f"{r['dropped_by_default']} of them the default loader drops (an unknown value on "
            f"the root or on a call with children, or a missing call: {r['with_missing_call']}); "
            f"after infilling (values chosen by {s['options']['recover_with']}) "
            f"**{r['dropped_valid_after_infill']} of those {r['dropped_by_default']} pass the "
            f"oracle**. The other {r['leaf_only']} the default loader keeps with their unknown "
            f"leaves removed; infilled whole, {r['leaf_only_valid_after_infill']} pass. Not "
            f"infillable: {r['not_infillable'] or 'none'}. Dropped even with keep_incomplete "
            f"(several missing calls are `disconnected`): {r['still_dropped']}.",
        ]
    return lines


def _accuracy(e: dict[str, Any]) -> str:
    ci = e.get("accuracy_ci")
    return _pct(e["accuracy"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")


def _paired_lines(p: dict[str, Any]) -> list[str]:
    """The paired comparison with the frequency baseline, and what bounds the constrained
    methods (single allowed values, truths the rules do not allow)."""
    rows = []
    for task in TASKS:
        for m in METHODS:
            c = p.get(task, {}).get(m)
            if c is None:
                continue
            d = c["difference"]
            rows.append(
                [
                    task,
                    m,
                    c["n"],
                    _pct(c["accuracy"]),
                    _pct(c["baseline_accuracy"]),
                    c["b"],
                    c["c"],
                    f"{100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]",
                    f"{c['p_mcnemar']:.3g}",
                ]
            )
    if not rows:
        return []
    head = ["task", "method", "n", "accuracy", "frequency", "only it right", "only frequency right"]
    lines = [
        "",
        "Each method against the frequency baseline on the same cases: the cases only one of the "
        "two gets right, the accuracy difference in points with its 95% paired bootstrap interval, "
        "and the exact McNemar p-value (two-sided).",
        "",
        *table_lines([*head, "difference (points)", "McNemar p"], rows),
    ]
    bounds = [
        f"{task}: {c['n']} cases, {c['one_allowed']} with a single allowed value (every "
        f"constrained method fills it alike), {c['truth_allowed']} with the truth among the "
        f"allowed values (the most any constrained method can get right)"
        for task in TASKS
        if (c := p.get(task, {}).get("cases"))
    ]
    if bounds:
        lines += ["", "What the allowed values leave to choose:", ""]
        lines += [f"- {b}" for b in bounds]
    return lines


def _mae(entry: dict[str, Any] | None, task: str) -> str:
    if entry is None or entry.get(f"mae_{task}") is None:
        return "-"
    return f"{entry[f'mae_{task}']:.1f}"


def check_options(opts: InfillOptions) -> None:
    if opts.n < 1:
        raise InputError(f"--n must be >= 1, got {opts.n}")
    if not Path(opts.data).exists():
        raise InputError(f"--data {opts.data}: no such file or folder")
    if Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise InputError(f"--out {opts.out}: exists and is not a folder")
    bad = [m for m in opts.methods if m not in METHODS]
    if bad or not opts.methods:
        raise InputError(f"--methods: unknown {bad[0] if bad else '(none)'}; choose from {METHODS}")
    if opts.threads < 0:
        raise InputError(f"--threads must be >= 0, got {opts.threads}")
    if not opts.time_limit >= 0:
        raise InputError(f"--time-limit must be >= 0, got {opts.time_limit}")
    bad = [t for t in opts.tasks if t not in TASKS]
    if bad or not opts.tasks:
        raise InputError(f"--tasks: unknown {bad[0] if bad else '(none)'}; choose from {TASKS}")
    if opts.recover_with not in ("frequency", "model"):
        raise InputError(f"--recover-with must be frequency or model, got {opts.recover_with!r}")
