"""The requested attributes on `Constraints`: normalised, validated, and round-tripped through
`as_dict`/`from_dict` with defaults omitted (old requests and outputs unchanged)."""

from __future__ import annotations

import pytest

from tracegrammar import Constraints
from tracegrammar.errors import ConstraintError


def test_defaults_are_omitted_from_as_dict():
    c = Constraints("S_1", 4, 2, 30)
    assert c.as_dict() == {"service": "S_1", "num_edges": 4, "depth": 2, "latency": 30}
    assert not c.has_attributes


def test_attributes_round_trip():
    c = Constraints(
        "S_01",
        high_latency=True,
        include_calls=(("USER", "MS_007", "http"), ["MS_7", "MS_2", "rpc"]),
        uncommon_call=True,
    )
    assert c.include_calls == (("USER", "MS_7", "http"), ("MS_7", "MS_2", "rpc"))
    d = c.as_dict()
    assert d == {
        "service": "S_1",
        "high_latency": True,
        "include_calls": [["USER", "MS_7", "http"], ["MS_7", "MS_2", "rpc"]],
        "uncommon_call": True,
    }
    assert Constraints.from_dict(d) == c
    assert c.has_attributes


def test_calls_as_comma_strings():
    c = Constraints.from_dict({"service": "S_1", "include_calls": ["MS_1, MS_2 ,db"]})
    assert c.include_calls == (("MS_1", "MS_2", "db"),)


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        ((("MS_1", "MS_2", "grpc"),), "call type must be one of"),
        ((("MS_1", "USER", "rpc"),), "destination must be a microservice name"),
        ((("ms_1", "MS_2", "rpc"),), "source must be USER or a microservice name"),
        ((("MS_1", "MS_2", "rpc"), ("MS_01", "MS_2", "rpc")), "listed twice"),
        ((("MS_1", "MS_2"),), "SOURCE,DESTINATION,TYPE"),
        ("MS_1,MS_2,rpc", "must be a list of calls"),
    ],
)
def test_bad_calls_are_refused_naming_the_field(calls, message):
    with pytest.raises(ConstraintError, match=message) as info:
        Constraints("S_1", include_calls=calls)
    assert info.value.field == "include_calls"


@pytest.mark.parametrize("name", ["high_latency", "uncommon_call"])
def test_flags_must_be_booleans(name):
    with pytest.raises(ConstraintError, match=f"{name} must be true or false") as info:
        Constraints("S_1", **{name: 1})
    assert info.value.field == name
