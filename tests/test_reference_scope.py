"""The reference and its call scopes: which calls a request may make, how deep they can go, and
which call types are leaves."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from tracegrammar import CallGraph, Edge, Reference
from tracegrammar.constraints import MS_RE, SERVICE_RE
from tracegrammar.grammar import format_definitions
from tracegrammar.oracle import RPC_ID_RE
from tracegrammar.reference import CallScope
from tracegrammar.rules import UNBOUNDED
from tracegrammar.types import USER

from .strategies import call_graphs


def _graph(service: str, *edges: tuple[str, str, str, str]) -> CallGraph:
    return CallGraph(service, tuple(Edge(r, s, d, t, 0, 1) for r, s, d, t in edges))


# S_1: USER -> A (http) -> B (rpc) -> C (mc); S_2: USER -> A (http) -> D (db)
S1 = _graph("S_1", ("0", USER, "MS_1", "http"), ("0.1", "MS_1", "MS_2", "rpc"),
            ("0.1.1", "MS_2", "MS_3", "mc"))  # fmt: skip
S2 = _graph("S_2", ("0", USER, "MS_1", "http"), ("0.1", "MS_1", "MS_4", "db"))
REF = Reference.from_graphs([S1, S2])


def test_leaf_types_are_the_types_never_seen_with_children():
    assert REF.leaf_types == {"mc", "db"}


@pytest.mark.parametrize(
    ("service", "source", "expected"),
    [
        ("S_1", "MS_1", {"MS_2": ("rpc",)}),  # the service's own calls from that caller
        ("S_2", "MS_1", {"MS_4": ("db",)}),
        ("S_2", "MS_2", {"MS_3": ("mc",)}),  # S_2 never called from MS_2: every service's calls
        ("S_9", "MS_1", {"MS_2": ("rpc",), "MS_4": ("db",)}),  # unknown service: all calls
        (None, "MS_1", {"MS_2": ("rpc",), "MS_4": ("db",)}),
    ],
)
def test_calls_back_off_from_the_service_to_every_service(service, source, expected):
    assert dict(REF.scope(service).calls_from(source) or {}) == expected


@pytest.mark.parametrize(
    ("service", "name", "levels"),
    [
        ("S_1", USER, 3),  # MS_1 -> MS_2 -> MS_3 (a leaf call ends the chain)
        ("S_2", USER, 2),  # MS_1 -> MS_4 (db): no level below a db call
        ("S_1", "MS_3", 0),  # calls nothing
        (None, USER, 3),
    ],
)
def test_reach_counts_levels_and_stops_at_leaf_calls(service, name, levels):
    assert REF.scope(service).reach(name) == levels


def test_a_leaf_call_type_ends_a_chain_even_to_a_caller():
    ref = Reference.from_graphs(
        [
            _graph(
                "S_1",
                ("0", USER, "MS_1", "http"),
                ("0.1", "MS_1", "MS_2", "rpc"),
                ("0.1.1", "MS_2", "MS_5", "rpc"),
            ),
            _graph("S_2", ("0", USER, "MS_1", "http"), ("0.1", "MS_1", "MS_2", "mc")),
        ]
    )
    assert ref.scope("S_2").reach(USER) == 2  # MS_2 calls out, but S_2 only reaches it by mc
    assert ref.scope("S_1").reach(USER) == 3


def test_cycles_are_unbounded_and_novel_scope_is_unrestricted():
    loop = _graph("S_1", ("0", USER, "MS_1", "http"), ("0.1", "MS_1", "MS_1", "rpc"),
                  ("0.1.1", "MS_1", "MS_1", "rpc"))  # fmt: skip
    ref = Reference.from_graphs([loop])
    assert ref.scope("S_1").reach(USER) == UNBOUNDED
    novel = CallScope(None, leaves=REF.leaf_types)
    assert novel.calls_from("MS_1") is None and novel.reach("MS_42") == UNBOUNDED
    assert novel.call_reach("MS_42", "mc") == 0 and novel.call_reach("MS_42", "rpc") == UNBOUNDED


@given(graph=call_graphs())
def test_save_load_roundtrip(tmp_path_factory, graph):
    path = tmp_path_factory.mktemp("ref") / "reference.json"
    ref = Reference.from_graphs([graph])
    ref.save(path)
    assert Reference.load(path) == ref


def test_load_reads_the_older_plain_list_and_refuses_junk(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps([[USER, "MS_1", "http"]]))
    assert Reference.load(old).calls == {(USER, "MS_1", "http")}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "tracegrammar.reference/2", "calls": [["x"]]}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        Reference.load(bad)
    with pytest.raises(ValueError, match=r"nothing\.json"):
        Reference.load(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    ("terminal", "pattern"),
    [("MS", MS_RE), ("SERVICE", SERVICE_RE), ("RPC_ID", RPC_ID_RE)],
)
def test_python_patterns_are_the_grammars_terminals(terminal, pattern):
    """The regexes the oracle and constraints use and the grammar's terminals are one pattern
    (grammars/common.lark is the source; these copies are held to it)."""
    defs = dict(format_definitions("tabular"))
    assert defs[terminal] == f"{terminal}: /{pattern.pattern}/"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("MS_0", True), ("MS_99999", True), ("MS_100000", False), ("MS_01", False),
     ("a" * 64, True), ("a" * 63, False)],
)  # fmt: skip
def test_microservice_names_are_bounded(name, ok):
    assert bool(MS_RE.fullmatch(name)) is ok
