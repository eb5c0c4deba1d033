#!/usr/bin/env bash
# Checks the pack's comfy.* imports, calls and patches against another ComfyUI with
# comfy-import-guard (a test dependency), offline:
#   bash scripts/dev/check_comfy_api.sh /path/to/ComfyUI-git-clone [git ref, default HEAD]
# The clone needs its git objects, not a checkout. tests/test_comfy_api_guard.py runs the same
# check against the ComfyUI 0.3.75 the tests use. COMFY_IMPORT_GUARD=<path> runs another install of the tool.
set -euo pipefail
clone="$(cd "${1:?usage: check_comfy_api.sh COMFYUI_GIT_CLONE [REF]}" && pwd)"
ref="${2:-HEAD}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache" "$work/install/custom_nodes/comfyui-blended-diffusion"
ln -s "$clone" "$work/cache/ComfyUI"  # the layout of the tool's own cache
cp -r "$repo/__init__.py" "$repo/pyproject.toml" "$repo/blended" "$repo/nodes" \
  "$work/install/custom_nodes/comfyui-blended-diffusion/"
echo "ComfyUI $(git -C "$clone" show "$ref:comfyui_version.py" 2>/dev/null | sed -n 's/^__version__ = //p') at $(git -C "$clone" rev-parse --short "$ref")"
exec "${COMFY_IMPORT_GUARD:-$repo/.venv/bin/comfy-import-guard}" check --comfy-dir "$work/install" --cache-dir "$work/cache" \
  --offline --no-update --target "$ref" --strict
