"""`bench validity` resumes from records.jsonl even after a kill cut its last line short."""

from __future__ import annotations

import json

import pytest

from tracegrammar.errors import InputError
from tracegrammar.evaluation.validity import read_records

A, B = {"num_edges": 1, "depth": 1}, {"num_edges": 2, "depth": 2}


def _lines(*records: dict) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.mark.parametrize("cut", [1, 5, len(json.dumps(B)) - 1])
def test_truncated_last_line_is_cut_and_appends_stay_clean(tmp_path, cut):
    path = tmp_path / "records.jsonl"
    path.write_bytes(_lines(A) + json.dumps(B).encode()[:cut])
    assert read_records(path) == [A]
    with open(path, "a", encoding="utf-8") as fh:  # what the bench does next
        fh.write(json.dumps(B) + "\n")
    assert read_records(path) == [A, B]


def test_unterminated_complete_last_line_is_kept(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(_lines(A) + json.dumps(B).encode())
    assert read_records(path) == [A, B]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(A) + "\n")
    assert read_records(path) == [A, B, A]


@pytest.mark.parametrize("bad", [b"{broken\n", b"[1]\n", b"\xff\n"])
def test_bad_middle_line_names_the_line(tmp_path, bad):
    path = tmp_path / "records.jsonl"
    path.write_bytes(_lines(A) + bad + _lines(B))
    with pytest.raises(InputError, match=r"records\.jsonl:2: not a benchmark record"):
        read_records(path)
