"""Benchmark: seconds for N best-of-N samples on 1 process vs 3 (a ComfyUI-Distributed master and two
workers), the loopback cluster of tests/test_distributed.py. Prints figures measured in one run;
never asserts on time.

    BLENDED_VENDOR_DIR=<folder with the snapshot> python -m benchmarks.bench_distributed [--steps 25] [--repeats 3]

Tiny random models (tests/support/tiny_unet.py, tests/support/tiny_clip.py) on a 64x48 test photo, CPU, each server
with OMP_NUM_THREADS=1. Per repeat, with fresh seeds (nothing comes from ComfyUI's cache):
- ``1 process, 1 sample``: the template queued on the master alone (plain /prompt), batch 1;
- ``1 process, 3 samples``: the same with batch_size 3 (what one GPU does for best-of-3);
- ``3 processes, 3 samples``: the template on the master's /distributed/queue, batch 1 per process.
Seconds are from queueing to the master's history entry, so they include the workers' PNG transfer and
the ranking. The medians are printed with their ratios to ``1 process, 3 samples``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from scripts.engine import comfy_distributed
from scripts.engine.comfy_engine import execution_error, set_inputs
from tests.support.comfy_harness import TINY_ADM, TINY_CLIP, prepare_tiny_pixel

ROOT = Path(__file__).resolve().parents[1]


def graph(seed: int, steps: str, batch: int) -> dict:
    g = comfy_distributed.template()
    set_inputs(g, "BlendedDiffusionModelLoader", model_name=TINY_ADM)
    set_inputs(g, "BlendedCLIPLoader", clip_name=TINY_CLIP)
    set_inputs(g, "BlendedSampler", steps=steps, skip_timesteps=0, batch_size=batch)
    set_inputs(g, "DistributedSeed", seed=seed)
    set_inputs(g, "BlendedRankResults", top_k=8)
    return g


def timed(server, queue) -> float:
    start = time.monotonic()
    prompt_id = queue()
    entry = server.wait(prompt_id, timeout=900)
    error = execution_error(entry)
    if error is not None:
        raise SystemExit(f"{error['node_type']}: {error['exception_message']}")
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="25", help="sampler steps (respacing), all guided (skip 0)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if comfy_distributed.snapshot() is None:
        raise SystemExit(f"{comfy_distributed.SNAPSHOT} not found in {comfy_distributed.vendor_dir()}; "
                         "set BLENDED_VENDOR_DIR to the folder that holds it.")
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    runs: dict[str, list[float]] = {"1 process, 1 sample": [], "1 process, 3 samples": [], "3 processes, 3 samples": []}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp, \
            comfy_distributed.cluster(Path(tmp), prepare_tiny_pixel, workers=2, timeout_s=60, env=env) as c:
        master = c.master
        timed(master, lambda: master.queue_prompt(graph(10_000, args.steps, 1)))  # warm-up: models loaded
        for w in c.workers:
            timed(w, lambda w=w: w.queue_prompt(graph(10_001, args.steps, 1)))
        for r in range(args.repeats):
            seed = 100 * (r + 1)
            runs["1 process, 1 sample"].append(timed(master, lambda: master.queue_prompt(graph(seed, args.steps, 1))))
            runs["1 process, 3 samples"].append(
                timed(master, lambda: master.queue_prompt(graph(seed + 10, args.steps, 3))))
            runs["3 processes, 3 samples"].append(
                timed(master, lambda: c.queue(graph(seed + 20, args.steps, 1))["prompt_id"]))
    base = statistics.median(runs["1 process, 3 samples"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"tiny models, 64x48 photo, steps {args.steps} (all guided), {args.repeats} repeats, CPU, "
          "OMP_NUM_THREADS=1 per server")
    for name, seconds in runs.items():
        med = statistics.median(seconds)
        print(f"{name:24s} median {med:6.2f} s  ({' '.join(f'{s:.2f}' for s in seconds)})  "
              f"ratio to 1 process, 3 samples: {med / base:.2f}")


if __name__ == "__main__":
    main()
