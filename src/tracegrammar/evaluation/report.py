"""The fidelity benchmark's summary: `summary.json` and `summary.md` in the output folder, computed
from its files alone (records, graphs, meta), so `--summary-only` gives the same summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_writer
from .bootstrap import RESAMPLES, Interval
from .fidelity import META, RECORDS, SOURCES, finished, read_graphs, read_lines
from .scoring import METRICS, Real, diagnostics, real_context, score
from .tables import table_lines
from .usefulness import usefulness

LABELS = {
    "validity": "validity (valid / asked)", "semantic": "calls all seen in training", "kl": "KL top-100",
    "js": "JS top-100", "emd_in_degree": "EMD in-degree", "emd_out_degree": "EMD out-degree",
    "emd_response_time": "EMD response time", "hh10": "heavy hitters @10",
    "hh50": "heavy hitters @50", "memorized_exact": "memorized (exact)",
    "memorized_structure": "memorized (structure)",
}  # fmt: skip
LOWER_IS_BETTER = {"kl", "js", "emd_in_degree", "emd_out_degree", "emd_response_time"}
DEFINITIONS = (
    "Definitions (`tracegrammar.metrics`): validity is the share of requests whose graph passes "
    "the oracle; every other number is over the valid graphs. Calls all seen: share of graphs "
    "whose every (source, destination, type) call is in the training split. KL(real || synthetic) "
    "and Jensen-Shannon (nats) over the 100 most frequent real calls, smoothing 1e-6. EMD: "
    "Wasserstein-1 after min-max scaling by the real range (response time on log1p). Heavy "
    "hitters @K: share of the real top-K most-called microservices in the synthetic top-K. "
    "Memorized: share identical to a training graph (exact: with times; structure: names, types "
    "and ids). Intervals: 95% percentile bootstrap over the source's graphs (the real side "
    "fixed); the KL of a resample is biased upward (duplicates hide calls), so its interval can "
    "sit above the point value. Real: the validation split. s / valid graph: generation time over "
    "valid graphs (for the model: `run_generation`'s wall time, without loading the model), on "
    "the machine named above, shared with whatever else ran there."
)


def summarize(out: Path, data: str | Path) -> dict[str, Any]:
    """Everything the summary says, as JSON-serialisable data."""
    from ..training.datasets import recipe_split

    meta_path = out / META
    if not meta_path.is_file():
        raise ValueError(f"--out {out}: no {META}: nothing was run there")
    meta = json.loads(meta_path.read_text())
    records = finished(read_lines(out / RECORDS)[0])
    names = [s for s in _ordered({s for s, _ in records})]
    split = recipe_split(data)
    real = Real(tuple(split.validation), tuple(split.train))
    graphs = {s: read_graphs(out, s) for s in names}
    sources = {}
    resamples = meta.get("bootstrap", RESAMPLES)
    for s in names:
        recs = [r for (name, _), r in records.items() if name == s]
        sources[s] = _source_summary(real, graphs[s], recs, resamples)
    return {
        "meta": meta,
        "sources": sources,
        "real_diagnostics": diagnostics(real, real.validation),
        "real_context": real_context(real),
        "usefulness": usefulness(
            split.train, split.validation, {s: graphs[s] for s in names}, resamples=resamples
        ),
    }


def _ordered(names: set[str]) -> list[str]:
    """Table order: SOURCES' order, then any source recorded but no longer in the table."""
    return [s for s in SOURCES if s in names] + sorted(names - set(SOURCES))


def _source_summary(
    real: Real, graphs: list[Any], recs: list[dict[str, Any]], resamples: int
) -> dict[str, Any]:
    asked = sum(r["asked"] for r in recs)
    valid = sum(r["valid"] for r in recs)
    wall = sum(r["wall_s"] for r in recs)
    passes = [r["forward_passes"] for r in recs if r.get("forward_passes") is not None]
    steps = sum(r.get("masked_steps") or 0 for r in recs)
    mass = sum(r.get("masked_mass") or 0.0 for r in recs)
    scores = score(real, graphs, asked, resamples=resamples)
    return {
        "chunks": len(recs),
        "asked": asked,
        "valid": valid,
        "accurate": sum(r["accurate"] for r in recs),
        "wall_s": wall,
        "wall_s_per_valid": wall / valid if valid else None,
        "forward_passes_per_valid": sum(passes) / valid if valid and passes else None,
        "masked_mass": mass / steps if steps else None,
        "metrics": {k: (v.as_dict() if v else None) for k, v in scores.items()},
        "diagnostics": diagnostics(real, graphs),
    }


def write_summary(out: Path, data: str | Path) -> dict[str, Any]:
    summary = summarize(out, data)
    with atomic_writer(out / "summary.json") as fh:
        json.dump(summary, fh, indent=1)
    with atomic_writer(out / "summary.md") as fh:
        fh.write(markdown(summary))
    return summary


# ------------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------------


def markdown(summary: dict[str, Any]) -> str:
    meta, sources = summary["meta"], summary["sources"]
    names = list(sources)
    counts = ", ".join(f"{s} {sources[s]['asked']}" for s in names)
    lines = [
        "# Fidelity to the validation split",
        "",
        f"Model: `{meta['model']}`; T={meta['temperature']}; prompts: the {meta['prompts']} "
        f"validation graphs'{_limit(meta)} (service, num_edges, depth, latency), repeated; "
        f"asked per source: "
        f"{counts}; {meta['chunk']} prompts per chunk (chunk k: seed k); {meta['bootstrap']} "
        f"bootstrap resamples; machine: {'; '.join(meta['machines'])}; {meta['date']}.",
        "",
        *(f"- `{s}`: {SOURCES[s].about}" for s in names if s in SOURCES),
        "",
        "## Distribution metrics (95% bootstrap intervals)",
        "",
    ]
    rows = [[LABELS[m], *(_cell(sources[s], m) for s in names)] for m in METRICS]
    rows.append(["instruction accuracy", *(_share(sources[s], "accurate") for s in names)])
    rows.append(["s / valid graph", *(_num(sources[s]["wall_s_per_valid"]) for s in names)])
    rows.append(
        [
            "forward passes / valid graph",
            *(_num(sources[s]["forward_passes_per_valid"]) for s in names),
        ]
    )
    rows.append(
        [
            "model probability on masked tokens, per sampled step",
            *(_num(sources[s].get("masked_mass"), 3) for s in names),
        ]
    )
    lines += table_lines(["metric", *names], rows)
    lines += ["", "Lower is better for KL, JS and the EMDs; higher for heavy hitters.", ""]
    lines += ["## Per-field diagnostics", ""]
    lines += diagnostics_table(summary)
    lines += ["", *context_lines(summary.get("real_context"))]
    lines += ["", "## Usefulness: train on synthetic, test on real validation graphs", ""]
    lines += usefulness_table(summary["usefulness"])
    lines += ["", DEFINITIONS, ""]
    return "\n".join(lines)


def diagnostics_table(summary: dict[str, Any]) -> list[str]:
    cols = {"real (validation)": summary["real_diagnostics"]}
    cols.update({s: v["diagnostics"] for s, v in summary["sources"].items()})
    depths = sorted({d for c in cols.values() for d in c.get("width_by_depth", {})}, key=int)
    fields: list[tuple[str, Any]] = [
        ("destinations seen in training", lambda d: _pct(d.get("known_destinations"))),
        ("call-type TV distance to real", lambda d: _num(d.get("type_tvd"), 3)),
        *(
            (f"response time {q} (ms)", lambda d, q=q: _num(d.get("rt_ms", {}).get(q)))
            for q in ("p50", "p90", "p99")
        ),
        *(
            (
                f"children per call at depth {k}",
                lambda d, k=k: _num(d.get("width_by_depth", {}).get(k), 2),
            )
            for k in depths
        ),
        ("mc/db/mq calls with children", lambda d: d.get("leaf_with_children", "-")),
        ("longest microservice name (chars)", lambda d: d.get("longest_name", "-")),
        ("memorized (exact), graphs of one call", lambda d: _pct(d.get("memorized_one_call"))),
        ("memorized (exact), graphs of 2+ calls", lambda d: _pct(d.get("memorized_more_calls"))),
    ]
    rows = [[label, *(get(c) for c in cols.values())] for label, get in fields]
    return table_lines(["field", *cols], rows)


def context_lines(ctx: dict[str, Any] | None) -> list[str]:
    """What the real data lets a metric reach (`scoring.real_context`), in words."""
    if not ctx:
        return []
    out = [
        f"What the real data allows: {_pct(ctx['train_repeated'])} of the "
        f"{ctx['train_graphs']} training graphs have an exact copy elsewhere in the training "
        f"split (real traffic repeats whole graphs); the validation split has none by "
        f"construction (the split is by graph hash), so exact memorization has no real-vs-real "
        f"floor. Of the {ctx['one_call_prompts']} one-call validation prompts, "
        f"{ctx['one_call_prompts_copyable']} match a one-call training graph in service and "
        f"latency: the prompt fixes the times, and the realistic call is often the training "
        f"graph's."
    ]
    for k, h in ctx["heavy_hitters"].items():
        cut = (
            f"{h['tied_at_cutoff']} real microservices have that count and {h['tied_in_top']} of "
            f"them are in the top-{k}, picked by name"
            if h["tied_at_cutoff"] > h["tied_in_top"]
            else "no tie is cut"
        )
        out.append(
            f"Heavy hitters @{k}: {_pct(h['in_training'])} of the real top-{k} microservices are "
            f"named in the training split (the most a source keeping to training calls can "
            f"recover); the {k}th has {h['cutoff_calls']} calls ({cut})."
        )
    return [" ".join(out)]


def usefulness_table(rows: list[dict[str, Any]]) -> list[str]:
    cells = [
        [
            r["task"],
            r["source"],
            r.get("train_graphs", 0),
            _pct(r.get("accuracy")),
            _pct(r.get("balanced_accuracy")),
            f"{_pct(r.get('real_accuracy'))} / {_pct(r.get('real_balanced_accuracy'))}",
            _gap(r, "gap") + (" (one class: constant)" if r.get("single_class") else ""),
            _gap(r, "balanced_gap"),
        ]
        for r in rows
    ]
    head = ["task", "trained on", "graphs", "accuracy", "balanced acc.",
            "real-trained (same count): acc. / bal.", "accuracy gap to real (points)",
            "balanced gap (points)"]  # fmt: skip
    notes = [
        "",
        "high_latency: graph latency >= its service's 90th percentile in the real training split "
        "(the global one for services with < 5 training graphs), from structure alone (logistic "
        "regression). critical_component: per call, the critical-path call with the largest "
        "exclusive time (linear SVM on per-call latency ratios and position; graphs with one "
        "call left out). Balanced accuracy 50% = a constant guess. Gaps: source minus the model "
        "trained on as many real training graphs, with a paired 95% bootstrap interval over the "
        "test rows (how much gap the test set alone can make); the real model's sample is not "
        "the floor source's, so the floor's gap is what another real sample of the same size "
        "makes. Accuracy rewards predicting the majority class (about 86% of validation graphs "
        "are not high-latency): compare balanced accuracy.",
    ]
    return table_lines(head, cells) + notes


def _gap(row: dict[str, Any], key: str) -> str:
    iv = (row.get("intervals") or {}).get(key)
    if row.get(key) is None or iv is None:
        return "-"
    if iv["low"] is None:
        return _pts(row[key])
    return f"{_pts(row[key])} [{_pts(iv['low'])}, {_pts(iv['high'])}]"


def _limit(meta: dict[str, Any]) -> str:
    return f" with at most {meta['max_edges']} calls" if meta.get("max_edges") else ""


def _cell(source: dict[str, Any], metric: str) -> str:
    value = source["metrics"].get(metric)
    if value is None:
        return "-"
    return Interval(**value).format(4 if metric.startswith("emd") else 2)


def _share(source: dict[str, Any], key: str) -> str:
    return f"{source[key]}/{source['asked']}" if source["asked"] else "-"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}"
