"""Usefulness: train a downstream model on synthetic graphs and on real ones, test both on the
real validation graphs (train on synthetic, test on real); the gap between the two is the score.

Two tasks from the papers:

- `high_latency`: is a graph's latency >= the 90th percentile of its service's latencies in the
  real training graphs? (Services with fewer than MIN_SERVICE_GRAPHS training graphs use the
  90th percentile of all training latencies: a percentile of 1-4 values says nothing.) The
  features describe the structure only (`structure_features`: sizes, widths, call types,
  fan-out; never a time), so the task asks whether a generator ties shapes to latency as real
  systems do. Logistic regression, standardized, balanced class weights (about 1 graph in 10
  is positive; unweighted, predicting "never" wins on accuracy and learns nothing).
- `critical_component`: in the spirit of FIRM, per call: is this the call on the critical path
  with the largest exclusive time (its own time minus the time its children cover)? One call
  per graph is. Features are per-call latency ratios and position (`call_features`) that do not
  contain the exclusive time itself. A linear SVM, standardized, balanced class weights. Graphs
  with one call are left out (their only call is trivially the answer).

Labels of synthetic training graphs come from the synthetic graphs themselves, with the same
real-data thresholds. A training set with one class only cannot fit a classifier; its model
then predicts that class (reported as such). scikit-learn is imported only when a task runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..types import CALL_TYPES, ROOT_ID, CallGraph, Edge
from .bootstrap import RESAMPLES, bootstrap_many

HIGH_LATENCY_QUANTILE = 0.9
MIN_SERVICE_GRAPHS = 5
MAX_DEPTH_FEATURE = 6  # calls per depth 1..6 (deeper calls count at 6)
SEED = 0
TASKS: tuple[str, ...] = ("high_latency", "critical_component")


# ------------------------------------------------------------------------------------------------
# task (a): high latency from structure
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyThresholds:
    """The per-service high-latency threshold, fitted on real training graphs."""

    per_service: Mapping[str, float]
    overall: float

    @classmethod
    def fit(cls, graphs: Sequence[CallGraph]) -> LatencyThresholds:
        by_service: dict[str, list[int]] = {}
        for g in graphs:
            by_service.setdefault(g.service, []).append(g.latency)
        if not by_service:
            raise ValueError("no training graphs to fit latency thresholds on")
        q = HIGH_LATENCY_QUANTILE
        overall = float(np.quantile([g.latency for g in graphs], q))
        per = {
            s: float(np.quantile(v, q))
            for s, v in by_service.items()
            if len(v) >= MIN_SERVICE_GRAPHS
        }
        return cls(per, overall)

    def label(self, graph: CallGraph) -> int:
        return int(graph.latency >= self.per_service.get(graph.service, self.overall))


def structure_features(graph: CallGraph) -> list[float]:
    """Numbers of a graph's shape that hold no time: size, depth, calls per depth, mean
    children per depth, call-type counts, max fan-out, leaves, distinct microservices."""
    per_depth = [0.0] * MAX_DEPTH_FEATURE
    for e in graph.edges:
        per_depth[min(e.depth, MAX_DEPTH_FEATURE) - 1] += 1
    widths = [
        per_depth[d + 1] / per_depth[d] if per_depth[d] else 0.0
        for d in range(MAX_DEPTH_FEATURE - 1)
    ]
    types = [sum(e.type == t for e in graph.edges) for t in CALL_TYPES]
    fan_out = max((len(k) for k in graph.children.values()), default=0)
    names = {n for e in graph.edges for n in (e.source, e.destination)}
    return [
        graph.num_edges, graph.depth, *per_depth, *widths, *types, fan_out,
        graph.num_edges - len(graph.children), len(names),
    ]  # fmt: skip


def high_latency_data(
    graphs: Sequence[CallGraph], thresholds: LatencyThresholds
) -> tuple[np.ndarray, np.ndarray]:
    width = 2 * MAX_DEPTH_FEATURE + len(CALL_TYPES) + 4  # of structure_features
    x = np.array([structure_features(g) for g in graphs], dtype=float).reshape(len(graphs), width)
    y = np.array([thresholds.label(g) for g in graphs], dtype=int)
    return x, y


# ------------------------------------------------------------------------------------------------
# task (b): critical component
# ------------------------------------------------------------------------------------------------


def critical_path(graph: CallGraph) -> list[Edge]:
    """FIRM's critical path: from a call, its child that finishes last is on the path, then the
    child that finishes last before that one starts (it had to end first), and so on; the path
    continues down each of them. In pre-order."""
    path: list[Edge] = []

    def walk(edge: Edge) -> None:
        path.append(edge)
        chain: list[Edge] = []
        for kid in sorted(graph.children.get(edge.rpc_id, ()), key=lambda k: (-k.finish, k.start)):
            if not chain or kid.finish <= chain[-1].start:
                chain.append(kid)
        for kid in reversed(chain):  # in time order
            walk(kid)

    root = graph.by_id.get(ROOT_ID)
    if root is not None:
        walk(root)
    return path


def exclusive_time(graph: CallGraph, edge: Edge) -> int:
    """The call's time not covered by any of its children (children clipped to the call)."""
    spans = sorted(
        (max(k.start, edge.start), min(k.finish, edge.finish))
        for k in graph.children.get(edge.rpc_id, ())
    )
    covered, reach = 0, edge.start
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return (edge.finish - edge.start) - covered


def critical_call(graph: CallGraph) -> str:
    """Rpc id of the critical-path call with the largest exclusive time (ties: the first on the
    path)."""
    path = critical_path(graph)
    if not path:
        raise ValueError("graph has no root call")
    return max(path, key=lambda e: exclusive_time(graph, e)).rpc_id  # max keeps the first


def call_features(graph: CallGraph, edge: Edge) -> list[float]:
    """Per-call features: response time over the root's, depth, type one-hot, children, start
    within the parent and share of the parent's time (the root: 0 and 1)."""
    root = graph.by_id[ROOT_ID]
    rt = edge.finish - edge.start
    parent = graph.by_id.get(edge.parent_id or "")
    if parent is None:
        rel_start, share = 0.0, 1.0
    else:
        span = max(parent.finish - parent.start, 1)
        rel_start, share = (edge.start - parent.start) / span, rt / span
    return [
        rt / max(root.finish - root.start, 1), edge.depth,
        *(float(edge.type == t) for t in CALL_TYPES),
        len(graph.children.get(edge.rpc_id, ())), rel_start, share,
    ]  # fmt: skip


def critical_data(graphs: Sequence[CallGraph]) -> tuple[np.ndarray, np.ndarray]:
    rows: list[list[float]] = []
    labels: list[int] = []
    for g in graphs:
        if g.num_edges < 2 or ROOT_ID not in g.by_id:
            continue
        target = critical_call(g)
        for e in g.edges:
            rows.append(call_features(g, e))
            labels.append(int(e.rpc_id == target))
    width = 5 + len(CALL_TYPES)  # of call_features, for an empty matrix
    return np.array(rows, dtype=float).reshape(len(rows), width), np.array(labels, dtype=int)


# ------------------------------------------------------------------------------------------------
# training and scoring
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskScore:
    task: str
    source: str
    train_graphs: int
    train_rows: int
    accuracy: float
    balanced_accuracy: float
    single_class: bool  # the training set had one class: the model predicts it
    predicted: np.ndarray = field(repr=False, compare=False)  # on the test rows

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "predicted"}


def _classifier(task: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if task == "high_latency":
        model = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    else:
        model = LinearSVC(class_weight="balanced", random_state=seed)
    return make_pipeline(StandardScaler(), model)


def task_data(
    task: str, graphs: Sequence[CallGraph], thresholds: LatencyThresholds
) -> tuple[np.ndarray, np.ndarray]:
    if task == "high_latency":
        return high_latency_data(graphs, thresholds)
    if task == "critical_component":
        return critical_data(graphs)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def run_task(
    task: str,
    source: str,
    train: Sequence[CallGraph],
    test: tuple[np.ndarray, np.ndarray],
    thresholds: LatencyThresholds,
    seed: int = SEED,
) -> TaskScore | None:
    """Train on `train` (graphs), score on `test` (features, labels). None without training rows."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    x, y = task_data(task, train, thresholds)
    x_test, y_test = test
    if not len(y):
        return None
    single = len(set(y.tolist())) == 1
    model = None if single else _classifier(task, seed).fit(x, y)
    predicted = np.full(len(y_test), y[0]) if model is None else model.predict(x_test)
    return TaskScore(
        task, source, len(train), len(y),
        float(accuracy_score(y_test, predicted)),
        float(balanced_accuracy_score(y_test, predicted)), single, predicted,
    )  # fmt: skip


def usefulness(
    real_train: Sequence[CallGraph],
    real_test: Sequence[CallGraph],
    sources: Mapping[str, Sequence[CallGraph]],
    seed: int = SEED,
    resamples: int = RESAMPLES,
) -> list[dict[str, Any]]:
    """Every task on every source, each next to a model trained on as many real training graphs
    (a seeded sample; all of them if the source has more): one row per (task, source) with
    accuracy, balanced accuracy, the real model's, and the gaps (source - real), each with a 95%
    bootstrap interval over the test rows (both models scored on the same resample, so the gap's
    interval is paired: it shows how much of a gap the test set alone can make)."""
    thresholds = LatencyThresholds.fit(real_train)
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        test = task_data(task, real_test, thresholds)
        real_at: dict[int, TaskScore | None] = {}
        for name, graphs in sources.items():
            n = min(len(graphs), len(real_train))
            if n not in real_at:
                sample = _sample(real_train, n, seed)
                real_at[n] = run_task(task, "real", sample, test, thresholds, seed)
            mine = run_task(task, name, graphs, test, thresholds, seed)
            rows.append(_row(task, name, mine, real_at[n], test[1], resamples))
    return rows


def _sample(graphs: Sequence[CallGraph], n: int, seed: int) -> list[CallGraph]:
    """n real training graphs for the real-trained model. The stream differs from the fidelity
    bench's `floor` source (a seed-0 shuffle), so the floor's row shows the gap another real
    sample of the same size makes: the noise floor of the gap."""
    picks = np.random.default_rng([seed, 7919]).permutation(len(graphs))[:n]
    return [graphs[i] for i in sorted(picks)]


def _row(
    task: str,
    name: str,
    mine: TaskScore | None,
    real: TaskScore | None,
    y_test: np.ndarray,
    resamples: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task, "source": name}
    row.update(mine.as_dict() if mine else {"train_graphs": 0, "accuracy": None})
    if mine is None or real is None or not len(y_test):
        return row
    intervals = bootstrap_many(
        list(range(len(y_test))), lambda idx: _compare(y_test, mine, real, idx), resamples=resamples
    )
    row.update({k: _finite(v.value) for k, v in intervals.items()})
    row["intervals"] = {
        k: {part: _finite(x) for part, x in v.as_dict().items()} for k, v in intervals.items()
    }
    return row


def _finite(x: float) -> float | None:
    """NaN (undefined) as None, so the summary stays strict JSON."""
    return None if np.isnan(x) else x


def _compare(
    y_test: np.ndarray, mine: TaskScore, real: TaskScore, idx: Sequence[int]
) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    pick = np.asarray(idx)
    y = y_test[pick]
    acc = float(np.mean(mine.predicted[pick] == y))
    real_acc = float(np.mean(real.predicted[pick] == y))
    # a resample with one class only (tiny test sets) has no balanced accuracy to speak of
    if len(set(y.tolist())) < 2:
        bal = real_bal = float("nan")
    else:
        bal = float(balanced_accuracy_score(y, mine.predicted[pick]))
        real_bal = float(balanced_accuracy_score(y, real.predicted[pick]))
    return {
        "accuracy": acc, "balanced_accuracy": bal, "real_accuracy": real_acc,
        "real_balanced_accuracy": real_bal, "gap": acc - real_acc, "balanced_gap": bal - real_bal,
    }  # fmt: skip
