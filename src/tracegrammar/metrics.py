"""Every quality metric of the brief, defined once and reused by tests, benchmarks and `eval`.

Pure numpy (no scipy, no torch) so importing this module is cheap; matplotlib is imported only by
`plot`. Three groups:

- Request outcomes (`validity`, `instruction_accuracy`, `semantic_validity`) score a sequence of
  `Outcome(graph, constraints)`: what was asked for and what came back (`graph=None` when the
  output was unfinished or did not parse, which counts as invalid).
- Distribution similarity of synthetic to real graphs (`call_distribution_divergence`,
  `normalized_emd` of degrees and response times, `heavy_hitter_overlap`), computed from
  `Features` so each graph is walked once.
- Memorization against the training graphs (`memorization`).

`evaluate` bundles them all into one JSON-serialisable dict; `plot` draws the comparisons.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .constraints import Constraints
from .errors import InputError
from .oracle import check
from .reference import Call, Reference
from .types import USER, CallGraph

#: K values of the heavy-hitter comparison (the paper's Figure 4b range).
HEAVY_HITTER_KS: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
TOP_CALLS = 100
SMOOTHING = 1e-6

# ------------------------------------------------------------------------------------------------
# request outcomes: validity, instruction accuracy, semantic validity
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One generation request and its result.

    `graph` is None when the output was unfinished or could not be parsed (it counts as invalid
    everywhere). `constraints` is what was requested; None means nothing beyond a valid graph.
    """

    graph: CallGraph | None
    constraints: Constraints | None = None


OutcomeLike = Outcome | tuple[CallGraph | None, Constraints | None]


def _outcomes(results: Iterable[OutcomeLike]) -> list[Outcome]:
    out = [r if isinstance(r, Outcome) else Outcome(*r) for r in results]
    if not out:
        raise InputError("no generation results to score")
    return out


def _is_valid(o: Outcome) -> bool:
    return o.graph is not None and not check(o.graph)


def validity(results: Iterable[OutcomeLike]) -> float:
    """Share of requests whose graph passes every structural rule of the oracle.

    Only the graph is checked (`check(graph)`), not the request: a well-formed graph of the wrong
    size is valid but not accurate. Raises ValueError on an empty sequence (no requests: no rate).
    """
    items = _outcomes(results)
    return sum(_is_valid(o) for o in items) / len(items)


def instruction_accuracy(results: Iterable[OutcomeLike]) -> float:
    """Share of requests whose graph is valid AND has what was requested: exact num_edges, exact
    depth, root finish <= latency, and the requested service (`check(graph, constraints)` empty).
    With `constraints=None` this is validity."""
    items = _outcomes(results)
    ok = sum(o.graph is not None and not check(o.graph, o.constraints) for o in items)
    return ok / len(items)


def semantic_validity(results: Iterable[OutcomeLike], reference: Reference) -> float:
    """Share of the VALID graphs (denominator: valid graphs only) whose every (source, destination,
    type) call is in `reference`. 0.0 when no graph is valid (nothing to credit)."""
    valid = [o.graph for o in _outcomes(results) if o.graph is not None and _is_valid(o)]
    if not valid:
        return 0.0
    return sum(all(c in reference for c in g.calls()) for g in valid) / len(valid)


# ------------------------------------------------------------------------------------------------
# features: what the distribution metrics are computed from
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """Per-call and per-microservice samples of a set of graphs.

    - `calls`: count of each (source, destination, type) call over all graphs.
    - `destinations`: calls received by each microservice over all graphs (heavy hitters).
    - `in_degree` / `out_degree`: one value per microservice per graph, the node degrees of that
      graph's microservice multigraph (`CallGraph.service_graph()`: one arc per call). USER is the
      caller of the root call, not a microservice, and is left out.
    - `response_time`: log1p(finish - start) of every call (ms).
    """

    graphs: int
    calls: Mapping[Call, int]
    destinations: Mapping[str, int]
    in_degree: np.ndarray
    out_degree: np.ndarray
    response_time: np.ndarray


def features(graphs: Iterable[CallGraph]) -> Features:
    calls: Counter[Call] = Counter()
    dests: Counter[str] = Counter()
    ins: list[int] = []
    outs: list[int] = []
    rts: list[int] = []
    n = 0
    for g in graphs:
        n += 1
        gin: Counter[str] = Counter()
        gout: Counter[str] = Counter()
        for e in g.edges:
            calls[(e.source, e.destination, e.type)] += 1
            dests[e.destination] += 1
            gin[e.destination] += 1
            gout[e.source] += 1
            rts.append(e.finish - e.start)
        for ms in (gin.keys() | gout.keys()) - {USER}:
            ins.append(gin[ms])
            outs.append(gout[ms])
    return Features(
        graphs=n,
        calls=calls,
        destinations=dests,
        in_degree=np.asarray(ins, dtype=float),
        out_degree=np.asarray(outs, dtype=float),
        response_time=np.log1p(np.asarray(rts, dtype=float)),
    )


def _as_features(data: Features | Iterable[CallGraph]) -> Features:
    return data if isinstance(data, Features) else features(data)


def top_k(counts: Mapping[Any, int], k: int) -> list[Any]:
    """The k most frequent keys; ties broken by the key's natural order (deterministic)."""
    return [key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


# ------------------------------------------------------------------------------------------------
# call distribution: KL and Jensen-Shannon over the real top-100 calls
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    """KL(real || synthetic) and Jensen-Shannon (nats) over `support` calls; `coverage` is the
    share of synthetic calls that fall in that support (the rest are ignored by both numbers)."""

    kl: float
    js: float
    support: int
    coverage: float


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """sum p ln(p/q) for probability vectors (terms with p = 0 contribute 0)."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """(KL(p||m) + KL(q||m)) / 2 with m = (p + q) / 2: symmetric, finite, at most ln 2."""
    m = (p + q) / 2
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def smoothed(counts: np.ndarray, eps: float = SMOOTHING) -> np.ndarray:
    """Normalise counts, add `eps` to every probability, renormalise (all-zero counts: uniform)."""
    total = counts.sum()
    p = counts / total if total > 0 else np.zeros_like(counts, dtype=float)
    p = p + eps
    return p / p.sum()


def call_distribution_divergence(
    real: Features | Iterable[CallGraph],
    synthetic: Features | Iterable[CallGraph],
    top: int = TOP_CALLS,
    eps: float = SMOOTHING,
) -> Divergence:
    """How far the synthetic call mix is from the real one, on the calls that matter most.

    The support is the `top` most frequent real (source, destination, type) calls (ties by the
    call tuple; fewer when real has fewer distinct calls). p = real counts on the support,
    normalised over it; q = synthetic counts on the same support, normalised over it (synthetic
    calls outside it are dropped). Both get `eps` added to every probability and are renormalised
    (`smoothed`), so KL is finite when synthetic misses a call. KL = sum p ln(p/q) (natural log);
    JS = (KL(p||m) + KL(q||m)) / 2 with m = (p + q) / 2.
    """
    r, s = _as_features(real), _as_features(synthetic)
    support = top_k(r.calls, top)
    if not support:
        raise InputError("real graphs have no calls")
    p = smoothed(np.array([r.calls[c] for c in support], dtype=float), eps)
    q_counts = np.array([s.calls.get(c, 0) for c in support], dtype=float)
    q = smoothed(q_counts, eps)
    total = sum(s.calls.values())
    coverage = float(q_counts.sum() / total) if total else 0.0
    return Divergence(kl_divergence(p, q), js_divergence(p, q), len(support), coverage)


# ------------------------------------------------------------------------------------------------
# normalized earth mover's distance
# ------------------------------------------------------------------------------------------------


def wasserstein1(u: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray) -> float:
    """Exact Wasserstein-1 distance between two 1-D empirical distributions (equal weights).

    W1 = integral |F(x) - G(x)| dx; both empirical CDFs are step functions that only change at
    sample points, so the integral is a finite sum over the gaps between the merged sorted points.
    """
    a = np.sort(np.asarray(u, dtype=float))
    b = np.sort(np.asarray(v, dtype=float))
    if a.size == 0 or b.size == 0:
        raise InputError("Wasserstein distance needs two non-empty samples")
    points = np.sort(np.concatenate([a, b]))
    gaps = np.diff(points)
    fa = np.searchsorted(a, points[:-1], side="right") / a.size
    fb = np.searchsorted(b, points[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * gaps))


def normalized_emd(
    real: Sequence[float] | np.ndarray, synthetic: Sequence[float] | np.ndarray
) -> float:
    """W1 after min-max scaling both samples by the REAL sample's range, so the numbers of
    different fields (degrees, log response times) are comparable: 0 is identical, 1 is a shift
    by the whole real range. A real sample with zero range is not scaled (divisor 1)."""
    r = np.asarray(real, dtype=float)
    if r.size == 0:
        raise InputError("normalized EMD needs a non-empty real sample")
    span = float(r.max() - r.min())
    scale = span if span > 0 else 1.0
    lo = float(r.min())
    return wasserstein1((r - lo) / scale, (np.asarray(synthetic, dtype=float) - lo) / scale)


EMD_FIELDS: tuple[str, ...] = ("in_degree", "out_degree", "response_time")


def emd_report(
    real: Features | Iterable[CallGraph], synthetic: Features | Iterable[CallGraph]
) -> dict[str, float]:
    """Normalized EMD of in-degree, out-degree and log1p response time."""
    r, s = _as_features(real), _as_features(synthetic)
    return {f: normalized_emd(getattr(r, f), getattr(s, f)) for f in EMD_FIELDS}


# ------------------------------------------------------------------------------------------------
# heavy hitters
# ------------------------------------------------------------------------------------------------


def heavy_hitter_overlap(
    real: Features | Iterable[CallGraph],
    synthetic: Features | Iterable[CallGraph],
    ks: Sequence[int] = HEAVY_HITTER_KS,
) -> dict[int, float]:
    """K -> |topK(real) ∩ topK(synthetic)| / min(K, distinct real microservices).

    Microservices are ranked by calls received (as destination), ties by name. When the real data
    has fewer than K distinct microservices, topK(real) is all of them and the divisor shrinks to
    that number, so a synthetic set with the real ranking still scores 1.0 (and the score reads:
    the share of real microservices the synthetic top-K recovers).
    """
    r, s = _as_features(real), _as_features(synthetic)
    if not r.destinations:
        raise InputError("real graphs have no calls")
    out: dict[int, float] = {}
    for k in ks:
        mine = set(top_k(r.destinations, k))
        theirs = set(top_k(s.destinations, k))
        out[k] = len(mine & theirs) / min(k, len(r.destinations))
    return out


# ------------------------------------------------------------------------------------------------
# memorization
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Memorization:
    """Share of generated graphs equal to some training graph: `exact` (`graph_hash`: service,
    calls and times) and `structure` (service, rpc ids, names and types; times ignored)."""

    exact: float
    structure: float


def structure_hash(graph: CallGraph) -> str:
    """A digest of a graph without its times: what a copied shape with re-drawn times shares."""
    text = (
        graph.service
        + "\n"
        + "\n".join(f"{e.rpc_id} {e.source} {e.destination} {e.type}" for e in graph.edges)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def memorized(
    generated: Iterable[CallGraph], training: Iterable[CallGraph]
) -> list[tuple[bool, bool]]:
    """Per generated graph, (exact, structure): is it a copy of some training graph, with and
    without its times. `memorization` is the mean of these flags; the flags themselves let a
    bootstrap resample generated graphs without hashing the training graphs again."""
    from .traces import graph_hash

    exact: set[str] = set()
    shape: set[str] = set()
    for g in training:
        exact.add(graph_hash(g))
        shape.add(structure_hash(g))
    return [(graph_hash(g) in exact, structure_hash(g) in shape) for g in generated]


def memorization(generated: Iterable[CallGraph], training: Iterable[CallGraph]) -> Memorization:
    flags = memorized(generated, training)
    if not flags:
        raise InputError("no generated graphs to compare")
    return Memorization(
        exact=sum(e for e, _ in flags) / len(flags),
        structure=sum(s for _, s in flags) / len(flags),
    )


# ------------------------------------------------------------------------------------------------
# everything at once
# ------------------------------------------------------------------------------------------------


def evaluate(
    real: Iterable[CallGraph],
    synthetic: Iterable[CallGraph],
    training: Iterable[CallGraph] | None = None,
    *,
    top: int = TOP_CALLS,
    eps: float = SMOOTHING,
    ks: Sequence[int] = HEAVY_HITTER_KS,
) -> dict[str, Any]:
    """All metrics of synthetic vs real graphs, as a JSON-serialisable dict.

    Validity and semantic validity score the synthetic graphs as given (no request attached);
    the reference set is the training graphs' calls, or the real ones without training data.
    Distribution metrics use every synthetic graph given; they are None when synthetic has no
    calls, and memorization is None without training graphs. Raises ValueError without real
    calls.
    """
    real_g, syn_g = list(real), list(synthetic)
    train_g = list(training) if training is not None else None
    r, s = features(real_g), features(syn_g)
    if not r.calls:
        raise InputError("real data has no call graphs")
    reference = Reference.from_graphs(train_g if train_g is not None else real_g)
    report: dict[str, Any] = {
        "graphs": {"real": r.graphs, "synthetic": s.graphs, "training": _len(train_g)},
        "calls": {"real": sum(r.calls.values()), "synthetic": sum(s.calls.values())},
        "validity": None,
        "semantic_validity": None,
        "semantic_reference": "training" if train_g is not None else "real",
        "call_divergence": None,
        "emd": None,
        "heavy_hitters": None,
        "memorization": None,
    }
    if syn_g:
        outcomes = [Outcome(g) for g in syn_g]
        report["validity"] = validity(outcomes)
        report["semantic_validity"] = semantic_validity(outcomes, reference)
    if s.calls:
        div = call_distribution_divergence(r, s, top, eps)
        report["call_divergence"] = {**asdict(div), "top": top, "eps": eps}
        report["emd"] = emd_report(r, s)
        report["heavy_hitters"] = {str(k): v for k, v in heavy_hitter_overlap(r, s, ks).items()}
    if train_g is not None and syn_g:
        report["memorization"] = asdict(memorization(syn_g, train_g))
    return report


def _len(items: list[CallGraph] | None) -> int | None:
    return None if items is None else len(items)


def format_report(report: Mapping[str, Any]) -> str:
    """A compact, aligned table of an `evaluate` report (None shows as '-')."""
    rows: list[tuple[str, Any]] = [
        ("graphs real/synthetic", f"{report['graphs']['real']}/{report['graphs']['synthetic']}"),
        ("validity", report["validity"]),
        (f"semantic validity (vs {report['semantic_reference']})", report["semantic_validity"]),
    ]
    div = report.get("call_divergence") or {}
    rows += [
        (f"KL(real||syn) top-{div.get('top', TOP_CALLS)} calls", div.get("kl")),
        ("JS top calls", div.get("js")),
        ("synthetic calls in top support", div.get("coverage")),
    ]
    rows += [(f"norm. EMD {f}", (report.get("emd") or {}).get(f)) for f in EMD_FIELDS]
    rows += [(f"heavy hitters K={k}", v) for k, v in (report.get("heavy_hitters") or {}).items()]
    mem = report.get("memorization") or {}
    rows += [("memorized exact", mem.get("exact")), ("memorized structure", mem.get("structure"))]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {_fmt(value)}" for name, value in rows)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------


def plot(
    real: Features | Iterable[CallGraph],
    synthetic: Features | Iterable[CallGraph],
    out_dir: str | Path,
    *,
    top: int = 30,
    ks: Sequence[int] = HEAVY_HITTER_KS,
) -> list[Path]:
    """Write PNGs comparing real and synthetic: CDFs of in-degree, out-degree and log1p response
    time, frequencies of the real top calls, heavy-hitter overlap vs K. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, s = _as_features(real), _as_features(synthetic)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_plot_cdf(plt, r, s, f, out / f"cdf_{f}.png") for f in EMD_FIELDS]
    paths.append(_plot_top_calls(plt, r, s, top, out / "top_calls.png"))
    if r.destinations and s.destinations:
        paths.append(
            _plot_heavy_hitters(plt, heavy_hitter_overlap(r, s, ks), out / "heavy_hitters.png")
        )
    return paths


def _plot_cdf(plt: Any, r: Features, s: Features, field: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in (("real", getattr(r, field)), ("synthetic", getattr(s, field))):
        if values.size:
            xs = np.sort(values)
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=name)
    label = "log1p(response time ms)" if field == "response_time" else field.replace("_", "-")
    ax.set_xlabel(label)
    ax.set_ylabel("share of values <= x (CDF)")
    ax.set_title(
        f"{label}: real vs synthetic (EMD {normalized_emd(getattr(r, field), getattr(s, field)):.3f})"
        if getattr(r, field).size and getattr(s, field).size
        else label
    )
    ax.legend()
    return _save(plt, fig, path)


def _plot_top_calls(plt: Any, r: Features, s: Features, top: int, path: Path) -> Path:
    support = top_k(r.calls, top)
    pr = np.array([r.calls[c] for c in support], dtype=float)
    ps = np.array([s.calls.get(c, 0) for c in support], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6, len(support) * 0.3), 3.5))
    x = np.arange(len(support))
    ax.bar(x - 0.2, pr / max(pr.sum(), 1), width=0.4, label="real")
    ax.bar(x + 0.2, ps / max(ps.sum(), 1), width=0.4, label="synthetic")
    ax.set_xlabel(f"real top-{len(support)} (source, destination, type) calls, most frequent first")
    ax.set_ylabel("share of calls on these")
    ax.set_title("call mix: real vs synthetic")
    ax.legend()
    return _save(plt, fig, path)


def _plot_heavy_hitters(plt: Any, overlap: Mapping[int, float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ks = sorted(overlap)
    ax.plot(ks, [overlap[k] for k in ks], marker="o")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    for k in ks:
        ax.annotate(f"{overlap[k]:.2f}", (k, overlap[k]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("K (most-called microservices)")
    ax.set_ylabel("top-K overlap, real vs synthetic")
    ax.set_title("heavy hitters")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write the figure atomically (a full disk never leaves a truncated PNG)."""
    from .io import write_figure

    try:
        fig.tight_layout()
        return write_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
