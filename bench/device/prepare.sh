#!/usr/bin/env bash
# Prepare what a GPU run needs that a bare accelerator machine (no network; its image has torch,
# transformers, peft, networkx) lacks, in .device/ (git-ignored through .git/info/exclude, never
# committed): the project's missing dependencies as Python 3.12 wheels, the base model's config
# and tokenizer (4 MB; its weights do not fit the 64 MiB a run may carry, see gpu_throughput.py)
# and a copy of the trace samples (read from ../shared/data, never added to the repository).
# Then run the one command of bench/device/README.md with `.device` carried.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/whl .device/base .device/data
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
# one version of each, as installed here; pure-Python ones and the compiled ones for cp312
pkgs=(outlines outlines_core llguidance lark genson diskcache pydantic pydantic_core
      typing-inspection jsonschema jsonschema-specifications referencing rpds-py)
pins=()
for p in "${pkgs[@]}"; do pins+=("$p==$($PY -c "import importlib.metadata as m; print(m.version('$p'))")"); done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 -d .device/whl "${pins[@]}"
base="$($PY -c 'from tracegrammar.decoding.models import default_model_dir; print(default_model_dir())')"
cp "$base"/config.json "$base"/tokenizer.json "$base"/tokenizer_config.json .device/base/
cp "$base"/generation_config.json .device/base/ 2>/dev/null || true
cp -r ../shared/data/alibaba-casper-sample .device/data/
du -sh .device
echo "prepared .device/; now run the command in bench/device/README.md with carry=[\".device\"]"
