#!/usr/bin/env bash
# Sets up the test environment (first run: a few minutes) and runs the whole test suite offline.
# BLENDED_COMFY_ENGINE=<a ComfyUI checkout> runs it on that engine instead of the CI one (0.3.75): the
# checkout's own packages are installed once into a layer over the venv
# (scripts/setup/install_engine_layer.sh) and put on PYTHONPATH, which every subprocess inherits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup/install_deps.sh --tests .venv
if [ -n "${BLENDED_COMFY_ENGINE:-}" ]; then
  layer="$(bash scripts/setup/install_engine_layer.sh "$BLENDED_COMFY_ENGINE" .venv)"
  export PYTHONPATH="$layer${PYTHONPATH:+:$PYTHONPATH}"
  echo "[test] engine: $BLENDED_COMFY_ENGINE, its packages from $layer" >&2
fi
export HF_HUB_OFFLINE=1 BLENDED_OFFLINE=1
exec .venv/bin/python -m pytest -ra "$@"
