"""The reference's per-service statistics for the requested attributes: graphs per service, the
90th percentile of root latency, and how many of a service's graphs contain each call."""

from __future__ import annotations

import json

from tracegrammar import CallGraph, Edge, Reference
from tracegrammar.reference import percentile
from tracegrammar.resources import shipped_adapter
from tracegrammar.types import USER


def _graph(latency: int, *calls: tuple[str, str, str, str]) -> CallGraph:
    edges = [Edge(r, s, d, t, 0, latency if r == "0" else 1) for r, s, d, t in calls]
    return CallGraph("S_1", tuple(edges))


ROOT = ("0", USER, "MS_1", "http")
# ten graphs of S_1 with latencies 10..100; MS_1 -> MS_2 in all but one, MS_1 -> MS_3 in one
GRAPHS = [
    _graph(
        10 * (i + 1),
        ROOT,
        ("0.1", "MS_1", "MS_3" if i == 0 else "MS_2", "rpc"),
        ("0.2", "MS_1", "MS_2", "rpc"),
    )
    for i in range(10)
]
REF = Reference.from_graphs(GRAPHS)


def test_counts_and_shares():
    assert REF.has_attribute_stats
    assert REF.service_graphs("S_1") == 10
    assert REF.service_graphs("S_9") == 0
    assert REF.call_share("S_1", ("MS_1", "MS_2", "rpc")) == 1.0  # counted once per graph
    assert REF.call_share("S_1", ("MS_1", "MS_3", "rpc")) == 0.1
    assert REF.uncommon_calls("S_1") == frozenset()  # 10% is not under 10%
    assert REF.uncommon_calls("S_1", below=0.11) == {("MS_1", "MS_3", "rpc")}


def test_p90_is_the_nearest_rank():
    assert REF.latency_p90("S_1") == 90
    assert REF.latency_p90("S_9") is None
    assert percentile([5], 90) == 5
    assert percentile(range(1, 101), 90) == 90


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "reference.json"
    REF.save(path)
    assert Reference.load(path) == REF


def test_old_reference_files_still_load(tmp_path):
    path = tmp_path / "reference.json"
    REF.save(path)
    data = json.loads(path.read_text())
    del data["service_stats"], data["service_call_graphs"]
    path.write_text(json.dumps(data))
    old = Reference.load(path)
    assert old.calls == REF.calls and not old.has_attribute_stats
    assert old.latency_p90("S_1") is None


def test_the_shipped_reference_has_the_statistics():
    ref = Reference.load(shipped_adapter() / "reference.json")
    assert ref.has_attribute_stats
    assert sum(n for _, n, _ in ref.service_stats) == 1954  # the training split's graphs
