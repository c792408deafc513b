#!/usr/bin/env bash
# Prepare what a lent accelerator machine (no network; its image has torch, transformers, peft,
# networkx, numpy, pyyaml, tqdm) lacks, in .device/ (git-ignored through .git/info/exclude, never
# committed): the project's missing dependencies as Python 3.12 wheels (whl/), the base model's
# config and tokenizer (base/), a copy of the trace samples (data/: read from ../shared/data,
# never added to the repository) and the base's GGUF, compressed and cut in two parts (gguf-1/,
# gguf-2/, with base/weights.json: bench/device/base.py), since a call carries at most 64 MiB.
# Then make the calls of bench/device/README.md; this prints what each carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/whl .device/base .device/data
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
# one version of each, as installed here; pure-Python ones and the compiled ones for cp312
pkgs=(outlines outlines_core llguidance lark genson diskcache pydantic pydantic_core
      typing-inspection jsonschema jsonschema-specifications referencing rpds-py gguf
      annotated-types typing-extensions)
pins=()
for p in "${pkgs[@]}"; do pins+=("$p==$($PY -c "import importlib.metadata as m; print(m.version('$p'))")"); done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 -d .device/whl "${pins[@]}"
base="$($PY -c 'from tracegrammar.decoding.models import default_model_dir; print(default_model_dir())')"
for f in config.json generation_config.json tokenizer.json tokenizer_config.json \
         special_tokens_map.json chat_template.jinja; do
  [ -f "$base/$f" ] && cp "$base/$f" .device/base/
done
cp -r ../shared/data/. .device/data/
size() { du -cb "$@" | tail -1 | cut -f1; }
# the wheels travel beside the first part, the base's files and the data beside the second:
# the first part is smaller by the difference, so that both calls carry about the same
balance=$(( $(size .device/whl) - $(size .device/base .device/data) ))
PYTHONPATH=src $PY bench/device/base.py pack --out .device --parts 2 --balance "$balance"
# what each call carries, with the working tree that travels every time (tracked files and
# untracked ones git does not ignore): each must stay under the 64 MiB a call may carry
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- | tail -1 | cut -f1)
status=0
report() {
  local bytes=$((tree + $(size "$@")))
  local carry; carry=$(printf '".%s", ' "${@#.}"); carry="[${carry%, }]"
  printf '%s: carry=%s, %.1f MiB with the working tree\n' "$label" "$carry" "$(echo "$bytes / 1048576" | bc -l)"
  if [ "$bytes" -gt $((62 * 1048576)) ]; then echo "  over 62 MiB: too close to the limit" >&2; status=1; fi
}
label="call 1 (bash bench/device/run.sh receive)" report .device/whl .device/gguf-1
label="call 2 (bash bench/device/run.sh JOB ...)" report .device/gguf-2 .device/base .device/data
exit $status
