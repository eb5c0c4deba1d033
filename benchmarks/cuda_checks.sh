#!/usr/bin/env bash
# Everything that needs a GPU, as one run: tests/test_cuda.py and the CUDA sections of the memory and
# sampler benchmarks. Written for the device machine (python3 with CUDA torch; the pack's pure-Python
# requirements carried as wheels in .whl/, see benchmarks/RESULTS.md), usable on any CUDA box:
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
timeout "${MEMORY_S:-200}" $PY benchmarks/bench_memory.py --device cuda 2>&1 | tee "$OUT/bench_memory.log"
timeout "${SAMPLER_S:-150}" $PY benchmarks/bench_sampler.py --device cuda 2>&1 | tee "$OUT/bench_sampler.log"
