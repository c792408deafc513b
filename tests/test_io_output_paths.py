"""Output paths: a write replaces only a regular file at the named path, never a link, device,
FIFO or folder; temporaries carry the writer's pid and those of dead writers are cleaned; the
training folder loses only temporaries its own writers made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracegrammar.errors import InputError, OutputPathError
from tracegrammar.io import (
    atomic_writer,
    check_output_writable,
    remove_stale_temporaries,
    temp_prefix,
)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    return int(proc.stdout)


def _target(tmp_path: Path, kind: str) -> tuple[Path, Path | None]:
    """An existing non-regular thing at the target; the second path is what must stay intact."""
    target = tmp_path / "out.jsonl"
    if kind == "symlink":
        victim = tmp_path / "precious.txt"
        victim.write_text("keep me")
        target.symlink_to(victim)
        return target, victim
    if kind == "dangling_symlink":
        target.symlink_to(tmp_path / "nowhere")
        return target, None
    if kind == "fifo":
        os.mkfifo(target)
        return target, None
    if kind == "directory":
        target.mkdir()
        (target / "inside").write_text("keep me")
        return target, target / "inside"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["symlink", "dangling_symlink", "fifo", "directory"])
def test_non_regular_target_is_refused_and_kept(tmp_path, kind):
    target, victim = _target(tmp_path, kind)
    before = os.lstat(target)
    with (
        pytest.raises(OutputPathError, match="not a regular file; not replaced") as info,
        atomic_writer(target) as fh,
    ):
        fh.write("x")
    assert str(target) in str(info.value) and isinstance(info.value, InputError)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if victim is not None:
        assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []


def test_device_target_is_refused(tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    with pytest.raises(OutputPathError, match=r"/dev/null: is a device"):
        check_output_writable("/dev/null")


def test_regular_target_is_replaced(tmp_path):
    target = tmp_path / "a" / "out.txt"
    with atomic_writer(target) as fh:
        fh.write("one")
    with atomic_writer(target) as fh:
        fh.write("two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["out.txt"]


def test_parent_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(OutputPathError, match=r"file/out\.txt: "),
        atomic_writer(tmp_path / "file" / "out.txt") as fh,
    ):
        fh.write("x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_writable(folder / "out.txt")
    finally:
        folder.chmod(0o700)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "out.jsonl"
    dead = tmp_path / f".out.jsonl.tg{_dead_pid()}-abc123.tmp"
    alive = tmp_path / f".out.jsonl.tg{os.getppid()}-abc123.tmp"  # pytest's parent lives
    other_target = tmp_path / f".other.jsonl.tg{_dead_pid()}-abc123.tmp"
    foreign = [tmp_path / ".out.jsonl.abc.tmp", tmp_path / ".final-x", tmp_path / "keep.tmp"]
    for p in (dead, alive, other_target, *foreign):
        p.write_text("partial")
    with atomic_writer(target) as fh:
        mine = [p.name for p in tmp_path.iterdir() if p.name.startswith(temp_prefix("out.jsonl"))]
        assert len(mine) == 1 and mine[0].endswith(".tmp")
        fh.write("x")
    assert not dead.exists()
    assert alive.exists() and other_target.exists() and all(p.exists() for p in foreign)


def test_stale_cleanup_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data").write_text("keep")
    link = tmp_path / f".x.tg{_dead_pid()}-abc.tmp"
    link.symlink_to(victim)
    assert remove_stale_temporaries(tmp_path) == []
    assert (victim / "data").read_text() == "keep" and link.is_symlink()


def test_training_folder_keeps_unrelated_temporaries(tmp_path):
    from tracegrammar.training.checkpoint import CHECKPOINTS, remove_temporaries

    out = tmp_path / "adapter"
    (out / CHECKPOINTS).mkdir(parents=True)
    unrelated = [out / ".notes.tmp", out / ".final-mine", out / CHECKPOINTS / ".tmp-mine"]
    for p in unrelated:
        p.mkdir() if "final" in p.name or "tmp-" in p.name else p.write_text("mine")
    ours = [
        out / f".final.tg{_dead_pid()}-k2j3.tmp",
        out / CHECKPOINTS / f".step-00000002.tg{_dead_pid()}-x9.tmp",
        out / f".loss.csv.tg{_dead_pid()}-q1.tmp",
    ]
    for p in ours:
        p.mkdir() if "loss" not in p.name else p.write_text("partial")
    remove_temporaries(out)
    assert all(p.exists() for p in unrelated) and not any(p.exists() for p in ours)


def test_killed_model_conversion_is_cleaned(tmp_path, monkeypatch):
    from tracegrammar.decoding import models

    try:
        models.default_gguf_path()
    except models.ModelError:
        pytest.skip("the default model wheel is not installed")
    monkeypatch.setenv("TRACEGRAMMAR_CACHE", str(tmp_path))
    stale = tmp_path / f".{models.DEFAULT_NAME}.abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_text("half")
    monkeypatch.setattr(
        models, "_convert_gguf", lambda g, out, tok=None: (out / "config.json").write_text("{}")
    )
    assert models.default_model_dir(progress=False) == tmp_path / models.DEFAULT_NAME
    assert not stale.exists() and (tmp_path / f".{models.DEFAULT_NAME}.lock").exists()


def test_full_disk_is_an_output_path_error_and_leaves_nothing(tmp_path):
    import errno

    target = tmp_path / "out.jsonl"
    target.write_text("earlier\n")
    with (
        pytest.raises(OutputPathError, match=r"out\.jsonl: not written: no space left"),
        atomic_writer(target) as fh,
    ):
        fh.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "earlier\n" and os.listdir(tmp_path) == ["out.jsonl"]
