"""Memory per sample, full vs gradient-checkpointed, at the real model sizes (random weights).

    python benchmarks/bench_memory.py [--device cuda] [--steps 3] [--calibrate] [--model-channels 256]

One guided step of the 256x256 ADM (552M parameters, OpenAI's layout) with CLIP ViT-B/16
(QuickGELU) on 8 extending augmentations, as the Blended Sampler runs it. Every configuration runs
in its own fresh process, one at a time, so one's peak cannot hide another's:
- CPU: peak RSS (``ru_maxrss``) minus the RSS once the models are built;
- CUDA: ``max_memory_allocated`` minus what is allocated once the models are on the GPU.
That growth, for one sample, is the per-sample figure. Time per step is the median of the steps
after the first (the first pays for allocations). On CUDA, bf16 autocast is measured too, and a
batch of 8 is run under a 12 GiB cap (``set_per_process_memory_fraction``) through the planner.

``--calibrate`` adds runs without CLIP (range loss only) to split the growth into its UNet and
CLIP parts and prints the bytes-per-element constants of ``blended/memory.py``.

The last line is exactly ``per-sample GiB: full=X low=Y ratio=R time_ratio=T`` (R = low/full,
T = checkpointed/full step time, fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

GiB = 2**30


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import torch

    from bench_sampler import full_size_clip, make_model, scene
    from blended import memory
    from blended.augment import ExtendingAugmentation
    from blended.guidance import ClipGuidance, Guidance, RangeLoss
    from blended.sampler import SamplerSettings, sample

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    device = torch.device(spec["device"])
    model = make_model("adm256", device, model_channels=spec.get("model_channels", 256))
    terms = (RangeLoss(),)
    clip = None
    if spec["clip"]:
        clip = full_size_clip(device)
        terms = (ClipGuidance(clip, "a red ball", augmentation=ExtendingAugmentation(spec["augmentations"])),) + terms
    guidance = Guidance(terms)
    image, mask = scene(256, device)
    seeds = list(range(spec["batch"]))
    settings = SamplerSettings(
        steps="100", skip_timesteps=100 - spec["steps"], memory=spec["memory"], autocast=spec["autocast"]
    )
    if spec.get("cap_gib") and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec["cap_gib"] * GiB / total), device)
    stamps = []

    def tick(*_):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss()
    # A fixed, generous budget: this measures one configuration, it does not plan one
    # (except the capped CUDA run, which plans within its cap).
    budget = None if spec.get("cap_gib") else 1 << 50
    start = time.perf_counter()
    out = sample(model, image, mask, guidance, settings, seeds, callback=tick, budget=budget)
    total_s = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    plan = memory.plan(len(seeds), model, guidance, 256, 256, spec.get("cap_gib", 1 << 20) * GiB,
                       spec["memory"], spec["autocast"])
    return dict(
        growth=peak,
        step_s=statistics.median(steps) if steps else total_s,
        total_s=total_s,
        finite=bool(torch.isfinite(out).all()),
        samples=out.shape[0],
        unet_elements=memory.unet_elements(model.config, 256, 256),
        clip_elements=memory.clip_elements(clip) if clip is not None else 0,
        estimate=memory.estimate(model, guidance, 256, 256, spec["autocast"], spec["memory"] == "low").per_sample,
        planned_chunk=plan.chunk,
    )


def run(spec: dict) -> dict:
    """``spec`` in a fresh interpreter; returns its result."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"configuration {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=3, help="guided steps per configuration (>= 2 for a time)")
    parser.add_argument("--augmentations", type=int, default=8)
    parser.add_argument("--model-channels", type=int, default=256, help="256 = the real ADM-256 width")
    parser.add_argument("--calibrate", action="store_true", help="also run without CLIP; print memory.py constants")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = dict(device=device, batch=1, steps=args.steps, augmentations=args.augmentations, clip=True,
                autocast="none", model_channels=args.model_channels)
    where = "CUDA max allocated" if device == "cuda" else "CPU peak RSS"
    print(f"device {device} (torch {torch.__version__}, {os.cpu_count()} CPUs); ADM-256 model_channels="
          f"{args.model_channels}, ViT-B/16, {args.augmentations} augmentations, batch 1, {where}, "
          "one process per configuration", flush=True)
    results = {}
    configs = [("full", dict(memory="fast")), ("low", dict(memory="low"))]
    if args.calibrate:
        configs += [("full-noclip", dict(memory="fast", clip=False)), ("low-noclip", dict(memory="low", clip=False))]
    if device == "cuda":
        configs += [("full-bf16", dict(memory="fast", autocast="bf16")), ("low-bf16", dict(memory="low", autocast="bf16"))]
    for name, extra in configs:
        r = results[name] = run({**base, **extra})
        print(f"{name:12} growth {r['growth'] / GiB:6.2f} GiB (estimate {r['estimate'] / GiB:5.2f})  "
              f"{r['step_s']:7.2f} s/step  finite={r['finite']}", flush=True)
    if args.calibrate:
        for mode in ("full", "low"):
            unet = results[f"{mode}-noclip"]["growth"] / (results[mode]["unet_elements"] * 4)
            clip = (results[mode]["growth"] - results[f"{mode}-noclip"]["growth"]) / (
                (args.augmentations + 1) * results[mode]["clip_elements"] * 4)
            print(f"calibration {mode}: UNET_BYTES_PER_ELEMENT={unet:.3f} CLIP_BYTES_PER_ELEMENT={clip:.3f}")
    if device == "cuda":
        capped = run({**base, "batch": 8, "memory": "auto", "autocast": "bf16", "cap_gib": 12, "steps": 75})
        print(f"batch 8 under a 12 GiB cap, bf16, 75 steps: {capped['samples']} samples, planned chunk "
              f"{capped['planned_chunk']}, peak {capped['growth'] / GiB:.2f} GiB, {capped['total_s']:.1f} s "
              f"({capped['total_s'] / 8:.2f} s per edit)", flush=True)
        for name in ("full-bf16", "low-bf16"):
            print(f"{name}: {results[name]['growth'] / GiB:.2f} GiB per sample, {results[name]['step_s'] * 75:.1f} s "
                  "per 256x256 edit (75 steps)")
    full, low = results["full"], results["low"]
    print(f"per-sample GiB: full={full['growth'] / GiB:.2f} low={low['growth'] / GiB:.2f} "
          f"ratio={low['growth'] / full['growth']:.2f} time_ratio={low['step_s'] / full['step_s']:.2f}")


if __name__ == "__main__":
    main()
