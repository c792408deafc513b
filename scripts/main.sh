#!/usr/bin/env bash
# Set up (idempotent), then run the main job: generate call graphs with the embedded default
# model (SmolLM2-135M-Instruct + the shipped LoRA adapter), constrained, and export them.
# Override with TRACEGRAMMAR_ARGS, e.g. TRACEGRAMMAR_ARGS="--num-edges 12 --depth 4 -n 8".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT="${TRACEGRAMMAR_OUT:-out}"
mkdir -p "$OUT"
# shellcheck disable=SC2086
.venv/bin/tracegrammar generate --service S_32048416 --num-edges 8 --depth 3 --latency 60 -n 4 \
  --seed 0 ${TRACEGRAMMAR_ARGS:-} --out "$OUT/graphs.jsonl"
.venv/bin/tracegrammar export "$OUT/graphs.jsonl" --format otlp-json --out "$OUT/graphs.otlp.json"
.venv/bin/tracegrammar draw "$OUT/graphs.jsonl" --index 0 --out "$OUT/graph0.png"
echo "main: wrote $OUT/graphs.jsonl, $OUT/graphs.otlp.json, $OUT/graph0.png"
