#!/usr/bin/env bash
# The jobs of a lent accelerator machine, from what `prepare.sh` put in .device/ (see README.md
# beside this file for the calls that carry it there).
#
#   bash bench/device/run.sh receive          # a call that only carries: which parts are there
#   bash bench/device/run.sh JOB [JOB ...]    # set up once, then each job in turn
#
# JOB is one of (SECONDS: that job's own time limit, cut to what is left of BUDGET_S, default
# 570, so the command ends inside a 600-second device call; each job leaves its results in $OUT):
#   train:RECIPE[:SECONDS]  tracegrammar train on RECIPE (a training/*.yaml) with the carried
#                           data; OUT/adapter-NAME.tgz.* (the adapter, in parts of 15 MiB),
#                           OUT/train-NAME.log; killed at SECONDS (default 480), the run's
#                           checkpoints stay in .device/train/NAME and the same job resumes
#   throughput[:SECONDS]    bench/gpu_throughput.py at widths 256 and 1024 with the real
#                           default model, 8 generator processes sharing the GPU, then one:
#                           OUT/throughput/ (default 300)
#   fidelity:ADAPTER[:SECONDS]  tracegrammar bench fidelity of ADAPTER (a folder: adapters/default,
#                           .device/train/strong) with the baseline and the floor beside it,
#                           1000 graphs each, resuming from .device/fidelity-NAME;
#                           OUT/fidelity-NAME.tgz (default 240)
#   grid[:SECONDS]          tracegrammar bench validity, the papers' whole grid, layer format
#                           with adapters/default then tabular with adapters/tabular; resumes
#                           from .device/grid-*; OUT/grid.tgz (default 540)
#
# Set-up: the wheels that the machine's image lacks are installed in /tmp (skipped when the
# python already imports them), and the base is joined, checked and converted
# (bench/device/base.py unpack) into TRACEGRAMMAR_CACHE (default /tmp/tracegrammar-cache).
# PY (default python3), OUT and DEVICE_DIR (default .device) may be set; TRAIN_ARGS,
# FIDELITY_ARGS, THROUGHPUT_ARGS and GRID_ARGS add flags to their job (a dry run on a CPU: see README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
DEV=${DEVICE_DIR:-.device}
OUT=${OUT:-/tmp/tracegrammar-out}
BUDGET_S=${BUDGET_S:-570}  # the whole command, set-up included: a device call runs 600 s at most
mkdir -p "$OUT"
if [ "${1:-}" = receive ]; then
  exec "$PY" bench/device/base.py status --device-dir "$DEV"
fi
[ $# -gt 0 ] || { echo "usage: $0 receive | JOB [JOB ...]" >&2; exit 2; }
for job in "$@"; do  # refuse a bad job before any set-up
  case "$job" in
    train:*.yaml | train:*.yaml:[0-9]* | fidelity:?* | throughput | throughput:[0-9]* | grid | grid:[0-9]*) ;;
    *) echo "run.sh: unknown job '$job' (train:RECIPE[:SECONDS], fidelity:ADAPTER[:SECONDS], throughput[:SECONDS], grid[:SECONDS])" >&2; exit 2 ;;
  esac
done

start=$SECONDS
site=/tmp/tracegrammar-site
if ! "$PY" -c 'import lark, llguidance, outlines, gguf' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$DEV"/whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TRACEGRAMMAR_CACHE=${TRACEGRAMMAR_CACHE:-/tmp/tracegrammar-cache}
"$PY" bench/device/base.py unpack --device-dir "$DEV"
"$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)'
echo "set-up: $((SECONDS - start)) s"

# the folder $2 as OUT/$1.tgz, in parts of 15 MiB (what comes back is at most 16 MiB a file)
pack() {
  tar -czf - -C "$(dirname "$2")" "$(basename "$2")" | split -b 15M -d - "$OUT/$1.tgz."
  ls -la "$OUT" | grep -F "$1.tgz." || true
}

for job in "$@"; do
  IFS=: read -r kind arg secs <<<"$job"
  t0=$SECONDS
  case "$kind" in
    train) want=${secs:-480} ;;
    fidelity) want=${secs:-240} ;;
    throughput) want=${arg:-300} ;;
    grid) want=${arg:-540} ;;
  esac
  # every job ends inside the call: its own limit, or what is left of BUDGET_S (less 20 s to pack)
  left=$((BUDGET_S - (SECONDS - start) - 20))
  if [ "$left" -lt 30 ]; then
    echo "== $job: skipped (${left} s left of the ${BUDGET_S} s budget)"
    continue
  fi
  lim=$((want < left ? want : left))
  case "$kind" in
    train)
      name=$(basename "$arg" .yaml)
      dir="$DEV/train/$name"
      echo "== train $arg -> $dir (limit $lim s)"
      rc=0
      # shellcheck disable=SC2086
      timeout "$lim" "$PY" -m tracegrammar.training --config "$arg" --out "$dir" \
        --data "$DEV/data" ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/train-$name.log" || rc=$?
      if [ -f "$dir/adapter_model.safetensors" ] && [ ! -d "$dir/checkpoints" ]; then
        pack "adapter-$name" "$dir"
      else
        echo "train $name: not finished (rc $rc); its checkpoints stay in $dir: run the same job again to resume"
      fi
      ;;
    fidelity)
      name=$(basename "$arg")
      dir="$DEV/fidelity-$name"
      echo "== fidelity of $arg -> $dir (limit $lim s)"
      # shellcheck disable=SC2086
      timeout "$((lim - 10))" "$PY" -m tracegrammar bench fidelity --data "$DEV/data" \
        --adapter "$arg" --sources default,baseline,floor --graphs 1000 --chunk 250 \
        --out "$dir" ${FIDELITY_ARGS:-} || true
      timeout 60 "$PY" -m tracegrammar bench fidelity --data "$DEV/data" --adapter "$arg" \
        --sources default,baseline,floor --out "$dir" --summary-only || true
      pack "fidelity-$name" "$dir"
      ;;
    throughput)
      echo "== throughput (limit $lim s)"
      # shellcheck disable=SC2086
      timeout "$lim" "$PY" bench/gpu_throughput.py --data "$DEV/data" --widths 256,1024 \
        --processes 8,1 --budget-s "$((lim / 2))" --out "$OUT/throughput" \
        ${THROUGHPUT_ARGS:-} || true
      ;;
    grid)
      echo "== grid (limit $lim s: layer format first, then tabular)"
      # shellcheck disable=SC2086
      timeout "$((lim * 2 / 3))" "$PY" -m tracegrammar bench validity --data "$DEV/data" \
        --out "$DEV/grid-layer" --encodings layer --workers 12 \
        --time-limit "$((lim / 2))" ${GRID_ARGS:-} || true
      rest=$((lim - (SECONDS - t0) - 10))
      if [ "$rest" -gt 60 ]; then
        # shellcheck disable=SC2086
        timeout "$rest" "$PY" -m tracegrammar bench validity --data "$DEV/data" \
          --out "$DEV/grid-tabular" --encodings tabular --adapter adapters/tabular \
          --workers 12 --time-limit "$((rest * 2 / 3))" ${GRID_ARGS:-} || true
      fi
      rm -rf "$DEV/grid" && mkdir -p "$DEV/grid"
      cp -r "$DEV"/grid-layer "$DEV"/grid-tabular "$DEV/grid/" 2>/dev/null || true
      pack grid "$DEV/grid"
      ;;
  esac
  echo "== $kind: $((SECONDS - t0)) s"
done
echo "all jobs: $((SECONDS - start)) s; results in $OUT"
