"""A job's folder: one JSON Lines file per shard (written atomically, so a file that is there is
complete) and `manifest.json` (the job, and per shard its range, seeds, counts and status).

The shard files are the truth about what is finished: a rerun skips a shard whose file is there
with the right number of lines, whatever the manifest says (it may be older: it is rewritten at
most every few seconds and at the end). A manifest of a different job (other requests, seed,
options or shard size) is refused rather than mixed with this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputPathError
from ..io import atomic_writer, check_output_writable, graph_from_dict, stamp_record
from .plan import Shard, chunk_seed
from .worker import ShardResult

MANIFEST = "manifest.json"
FORMAT = "tracegrammar-shards/1"
#: Seconds between manifest rewrites while a job runs (each shard file is written at once).
SAVE_EVERY_S = 2.0


@dataclass
class Manifest:
    folder: Path
    job: dict[str, Any]
    shards: list[Shard]
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    saved_at: float = 0.0

    @classmethod
    def open(cls, folder: str | Path, job: dict[str, Any], shards: list[Shard]) -> Manifest:
        """This job's manifest in `folder` (a new one if there is none); a different job's is
        refused, naming what differs."""
        folder = Path(folder)
        path = check_output_writable(folder / MANIFEST)
        manifest = cls(folder, job, shards)
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputPathError(path, f"not a readable manifest ({str(exc)[:100]})") from None
            if not isinstance(old, dict) or old.get("format") != FORMAT:
                raise OutputPathError(path, f"not a {FORMAT} manifest; not replaced")
            differs = sorted(k for k in job.keys() | old.get("job", {}).keys()
                             if job.get(k) != old.get("job", {}).get(k))  # fmt: skip
            if differs:
                raise OutputPathError(
                    path,
                    f"holds another job (its {', '.join(differs)} differ); rerun that job "
                    f"or choose another folder",
                )
            for entry in old.get("shards", []):
                if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                    manifest.entries[entry["index"]] = entry
        for s in shards:
            entry = manifest.entries.setdefault(s.index, {})
            entry.update(index=s.index, start=s.start, stop=s.stop, file=s.file)
            entry["status"] = "done" if manifest.finished(s) else "pending"
            entry.setdefault("attempts", 0)
            entry["seeds"] = [chunk_seed(job["seed"], p.chunk) for p in s.pieces(job["seed"])]
        return manifest

    def finished(self, shard: Shard) -> bool:
        """The shard's file is there with one line per graph (it is written atomically)."""
        path = self.folder / shard.file
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            return sum(1 for _ in fh) == shard.size

    def pending(self) -> list[Shard]:
        return [s for s in self.shards if self.entries[s.index]["status"] != "done"]

    def write_shard(self, result: ShardResult) -> None:
        with atomic_writer(self.folder / result.shard.file) as fh:
            for record in result.records:
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.entries[result.shard.index].update(
            status="done",
            graphs=len(result.records),
            valid=result.valid,
            seconds=round(result.seconds, 3),
            worker=result.worker,
            **result.stats,
        )

    def attempt(self, shard: Shard) -> int:
        entry = self.entries[shard.index]
        entry["attempts"] += 1
        entry["status"] = "running"
        return int(entry["attempts"])

    def fail(self, shard: Shard, error: str) -> None:
        self.entries[shard.index].update(status="failed", error=error[:500])

    def save(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self.saved_at < SAVE_EVERY_S:
            return
        doc = {
            "format": FORMAT,
            "job": self.job,
            "shards": [self.entries[s.index] for s in self.shards],
        }
        with atomic_writer(self.folder / MANIFEST) as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        self.saved_at = now

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            status = self.entries[s.index]["status"]
            out[status] = out.get(status, 0) + 1
        return out


def job_seed(folder: str | Path) -> int | None:
    """The seed of the job whose manifest is in `folder` (None: no readable manifest): a rerun
    without a seed takes it, so it resumes that job."""
    try:
        doc = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        seed = doc["job"]["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def read_records(folder: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a finished job, in request order (the merged view of its shards)."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputPathError(path, f"not a readable manifest ({str(exc)[:100]})") from None
    for entry in doc["shards"]:
        if entry.get("status") != "done":
            raise OutputPathError(path, f"shard {entry['index']} is not finished: rerun the job")
        with open(folder / entry["file"], encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)


def write_merged(
    folder: str | Path,
    target: str | Path,
    fmt: str = "jsonl",
    *,
    base_epoch_ns: int | None = None,
) -> int:
    """The job's graphs in one file, as single-process `generate` writes it: JSON Lines keep
    every record (the invalid ones too); the other formats hold the valid graphs. Returns the
    number of records (jsonl) or graphs written. `base_epoch_ns` (`--start`): as `generate`."""
    if fmt == "jsonl":
        count = 0
        with atomic_writer(target) as fh:
            for record in read_records(folder):
                record = stamp_record(record, base_epoch_ns)
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                count += 1
        return count
    from .. import exports

    graphs = [graph_from_dict(r) for r in read_records(folder) if r.get("valid")]
    exports.write(graphs, target, fmt, base_epoch_ns=base_epoch_ns)
    return len(graphs)
