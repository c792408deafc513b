"""Rebuild adapters/default/reference.json from the adapter's training split, exactly as
`tracegrammar train` writes it (`training.artifacts.write_final`: `Reference.from_graphs` of the
training graphs; the shipped adapter's recipe: all three sample folders, val_fraction 0.1,
split_seed 0, i.e. `training.datasets.recipe_split`).

    python scripts/rebuild_reference.py [--data ../shared/data] [--out adapters/default/reference.json]

Checks that the calls, per-service calls and leaf types come out identical to the file being
replaced (the semantic rules of the shipped adapter must not move), then writes it with the
per-service statistics of the requested attributes added.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tracegrammar.reference import Reference
from tracegrammar.training.datasets import recipe_split

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "adapters" / "default" / "reference.json"))
    ap.add_argument("--force", action="store_true", help="write even if the calls differ")
    args = ap.parse_args(argv)
    split = recipe_split(args.data)
    new = Reference.from_graphs(split.train)
    out = Path(args.out)
    if out.exists() and not args.force:
        old = Reference.load(out)
        same = (old.calls, old.service_calls, old.leaf_types) == (
            new.calls,
            new.service_calls,
            new.leaf_types,
        )
        if not same:
            print(
                f"{out}: calls differ from the rebuilt ones; not written (--force)", file=sys.stderr
            )
            return 1
    new.save(out)
    print(
        f"{out}: {len(new.calls)} calls, {len(new.service_stats)} services, "
        f"{len(new.service_call_graphs)} service calls with counts, from {len(split.train)} "
        f"training graphs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
