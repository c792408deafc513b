#!/usr/bin/env bash
# Set up (idempotent), then run the main job. Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA="${TRACEGRAMMAR_DATA:-../shared/data}"
.venv/bin/tracegrammar data stats "$DATA"
.venv/bin/tracegrammar data show "$DATA/alibaba-v2022-tracellm" --index 0 "$@"
