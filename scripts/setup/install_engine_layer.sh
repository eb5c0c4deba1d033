#!/usr/bin/env bash
# Installs what another ComfyUI checkout needs beyond the test venv (its own pinned frontend, workflow
# templates, embedded docs, comfy-kitchen, comfy-aimdo, torchaudio, simpleeval, ...; all from PyPI) into
# a layer folder over the venv, and prints that folder. scripts/test.sh puts it on PYTHONPATH when
# BLENDED_COMFY_ENGINE names a checkout, so the test process and every server, worker and `python -m`
# child it starts see the engine's packages first and the venv's (torch, numpy, the pack's) for the rest.
# The venv itself is not touched: the CI engine (0.3.75) keeps running on it unchanged.
# Idempotent: a finished layer is stamped, and its folder name carries a hash of the checkout's
# requirements.txt and of this script, so a second run costs seconds and a new pin gets a new layer.
#   usage: scripts/setup/install_engine_layer.sh CHECKOUT [VENV_DIR]   (default VENV_DIR: .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout="${1:?usage: scripts/setup/install_engine_layer.sh CHECKOUT [VENV_DIR]}"
venv="${2:-.venv}"
requirements="$checkout/requirements.txt"
if [ ! -f "$checkout/main.py" ] || [ ! -f "$requirements" ]; then
  echo "[set-up] $checkout is not a ComfyUI checkout (needs main.py and requirements.txt): point" \
       "BLENDED_COMFY_ENGINE at the folder that holds them" >&2
  exit 2
fi
python="$venv/bin/python"
key="$(cat "$requirements" scripts/setup/install_engine_layer.sh scripts/setup/engine_layer.py | sha1sum | cut -c1-12)"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$checkout/comfyui_version.py" 2>/dev/null || true)"
layer="$(cd "$venv" && pwd)/engine-layers/comfyui-${version:-unknown}-$key"
if [ -f "$layer/.complete" ]; then echo "$layer"; exit 0; fi

source scripts/setup/setup_output.sh
echo "[set-up] first run for $checkout: its packages go into $layer (later runs skip this)" >&2
partial="$layer.partial"
rm -rf "$partial"
mkdir -p "$partial"
# Asked with the partial layer first on sys.path, as the tests will see it.
helper() { PYTHONPATH="$partial" "$python" scripts/setup/engine_layer.py "$@"; }
todo="$(helper requirements "$requirements")"
optional="$(helper optional "$requirements" | tr '\n' ' ')"
[ -z "$optional" ] || echo "[set-up] left out (optional in $requirements, the tests use none): $optional" >&2
# --no-deps: pip resolves a --target install without the venv and would put torch in the layer;
# each round installs what the helper still finds missing, until nothing is.
for round in 1 2 3 4 5 6; do
  [ -n "$todo" ] || break
  step "round $round: $(echo "$todo" | tr '\n' ' ')" \
    "$python" -m pip install -q --no-deps --no-warn-conflicts --target "$partial" $todo
  todo="$(helper missing "$partial")"
done
if [ -n "$todo" ]; then
  echo "[set-up] FAILED: still missing after 6 rounds: $todo (install them into $partial by hand)" >&2
  exit 1
fi
rm -rf "$layer"
mv "$partial" "$layer"
touch "$layer/.complete"
echo "[set-up] engine layer ready: $layer" >&2
echo "$layer"
