"""Cost of one batched forward pass of the default model by pass width, for the two choices the
decoder makes below the model (measured side by side in one run, interleaved):

- how the next-token logits are kept: `logits_to_keep=1` (transformers' usual int: a strided
  slice of the last position) or `logits_to_keep=tensor([W - 1])` (an index: a contiguous copy);
- the attention: transformers' SDPA (repeats grouped key/value heads for any masked pass of more
  than one token) or `tracegrammar_sdpa` (grouped heads attended in place on a CPU).

Each pass continues rows that already hold `--past` cached positions, with one padded position
per row as in the decoder's batches, and feeds W new tokens per row.

    .venv/bin/python bench/pass_cost.py [--rows 24,6,1] [--widths 1,2,4,8,16,32] [--past 100]

Writes bench/results/pass_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from common import machine, write
from tracegrammar.decoding.attention import NAME
from tracegrammar.decoding.batch import last_position
from tracegrammar.decoding.driver import default_adapter_dir
from tracegrammar.decoding.models import load_model
from tracegrammar.evaluation.tables import table_lines

VARIANTS = {
    "transformers defaults (keep=1, sdpa)": (False, "sdpa"),
    "index keep, sdpa": (True, "sdpa"),
    "index keep, grouped sdpa (decoder)": (True, NAME),
}
BASELINE, DECODER = "transformers defaults (keep=1, sdpa)", "index keep, grouped sdpa (decoder)"


def prefill(model: torch.nn.Module, rows: int, past: int) -> tuple[object, torch.Tensor]:
    ids = torch.randint(100, 20000, (rows, past))
    mask = torch.ones((rows, past), dtype=torch.long)
    mask[:, 0] = 0  # one padded position per row, as in the decoder's left-padded batches
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    return out.cache, mask


def one_pass(model, cache, mask, width: int, index_keep: bool) -> float:
    rows = mask.shape[0]
    ids = torch.randint(100, 20000, (rows, width))
    attention = torch.cat([mask, torch.ones((rows, width), dtype=torch.long)], dim=1)
    positions = (attention.cumsum(dim=1) - 1)[:, -width:]
    keep = last_position(width, torch.device("cpu")) if index_keep else 1
    cache = copy.deepcopy(cache)
    start = time.perf_counter()
    with torch.inference_mode():
        model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=keep,
        )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="24,6,1")
    ap.add_argument("--widths", default="1,2,4,8,16,32")
    ap.add_argument("--past", type=int, default=100)
    ap.add_argument("--reps", type=int, default=6)
    args = ap.parse_args()
    rows_list = [int(x) for x in args.rows.split(",")]
    widths = [int(x) for x in args.widths.split(",")]
    model = load_model(None, default_adapter_dir(), device="cpu").model
    results = []
    for rows in rows_list:
        cache, mask = prefill(model, rows, args.past)
        for width in widths:
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            names = list(VARIANTS)
            for rep in range(args.reps):  # interleaved, order rotated: drift hits all alike
                for name in names[rep % len(names) :] + names[: rep % len(names)]:
                    index_keep, attn = VARIANTS[name]
                    model.set_attn_implementation(attn)
                    times[name].append(one_pass(model, cache, mask, width, index_keep))
            row = {"rows": rows, "width": width}
            row.update({name: statistics.median(ts) * 1000 for name, ts in times.items()})
            results.append(row)
            print(row, flush=True)
    host = machine()
    write(
        "pass_cost",
        {"machine": host, "args": vars(args), "results": results},
        _markdown(results, args, host),
    )


def _markdown(results: list[dict], args: argparse.Namespace, host: dict) -> str:
    cols = list(VARIANTS)
    lines = [
        f"# Cost of one forward pass by width (default model, {args.past} cached positions)",
        "",
        f"Machine: {host}",
        "",
        f"`.venv/bin/python bench/pass_cost.py --rows {args.rows} --widths {args.widths} "
        f"--past {args.past}`: median of {args.reps} passes, the variants interleaved in rotating "
        "order; ms per pass.",
        "",
    ]
    lines += table_lines(
        ["rows", "new tokens per row", *cols, "defaults / decoder"],
        [
            [
                r["rows"],
                r["width"],
                *(f"{r[c]:.0f}" for c in cols),
                f"{r[BASELINE] / r[DECODER]:.2f}",
            ]
            for r in results
        ],
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
