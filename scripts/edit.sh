#!/usr/bin/env bash
# The main job: set up the embedded ComfyUI engine (first run: a few minutes) and run an object
# edit headless with "workflows/api/Blended - Object editing.api.json".
#   bash scripts/edit.sh --image photo.png --mask mask.png --prompt "a bowl of cherries" [--out results/]
# The latent path on your own SD1.5/SDXL checkpoint ("workflows/api/Blended - SD1.5 or SDXL edit.api.json"):
#   bash scripts/edit.sh --checkpoint model.safetensors --image photo.png --mask mask.png --prompt "..."
# A shipped latent template with its own files (Flux, ...): --template "Blended - Flux.1 dev edit" --models-dir DIR
# More options (models folder, batch size, steps, seed): bash scripts/edit.sh --help
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/scripts/setup/setup_comfy.sh" >&2
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$repo/.venv/bin/python" -m scripts.cli.run_edit "$@"
