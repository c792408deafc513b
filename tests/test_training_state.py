"""The loss history is typed (`LossPoint`), and both of its file forms are as before: loss.csv
byte for byte, and the `[step, train, val]` rows of a checkpoint's state.json (so a checkpoint of
an earlier version still resumes)."""

from __future__ import annotations

import json

from tracegrammar.training.artifacts import read_loss_csv, write_loss_csv
from tracegrammar.training.state import LossPoint, RunState, last_losses

HISTORY = [LossPoint(1, 2.5, None), LossPoint(2, 1.25, 1.5), LossPoint(3, 1.0)]


def test_loss_csv_format(tmp_path):
    path = tmp_path / "loss.csv"
    write_loss_csv(path, HISTORY)
    assert path.read_bytes() == (
        b"step,train_loss,val_loss\r\n1,2.500000,\r\n2,1.250000,1.500000\r\n3,1.000000,\r\n"
    )
    assert read_loss_csv(path) == [(1, 2.5, None), (2, 1.25, 1.5), (3, 1.0, None)]


def test_state_json_keeps_the_row_form():
    state = RunState(step=3, epoch=1, batch=0, wall_time_s=9.5, history=list(HISTORY))
    doc = json.loads(json.dumps(state.as_json()))
    assert doc == {
        "step": 3,
        "epoch": 1,
        "batch": 0,
        "wall_time_s": 9.5,
        "history": [[1, 2.5, None], [2, 1.25, 1.5], [3, 1.0, None]],
    }
    # what an earlier version wrote (more keys: the run's metadata) reads back the same
    assert RunState.from_json({"kind": "checkpoint", "base": "x", **doc}) == state


def test_last_losses():
    assert last_losses(HISTORY, window=2) == ((1.25 + 1.0) / 2, 1.5)
    assert last_losses([]) == (None, None)
