"""Memory per sample, full vs gradient-checkpointed, at the real model sizes (random weights).

    python -m benchmarks.bench_memory [--device cuda] [--steps 3] [--calibrate] [--model-channels 256]

One guided step of the 256x256 ADM (552M parameters, OpenAI's layout) with CLIP ViT-B/16
(QuickGELU) on 8 extending augmentations, as the Blended Sampler runs it. Every configuration runs
in its own fresh process, one at a time, so one's peak cannot hide another's:
- CPU: peak RSS (``ru_maxrss``) minus the RSS once the models are built;
- CUDA: ``max_memory_allocated`` minus what is allocated once the models are on the GPU.
That growth, for one sample, is the per-sample figure. Time per step is the fastest of the steps
after the first (the first pays for allocations; the fastest is the least disturbed by other
load). On CUDA, bf16 autocast is measured too, and a batch of 8 is run through the planner under a
12 GiB cap, weights included (``set_per_process_memory_fraction``).

``--calibrate`` measures the constants of ``blended/memory.py`` instead: the peak of live tensor
bytes (what CUDA's max allocated counts; RSS on the CPU adds the C allocator's fragmentation),
tracked op by op with a dispatch mode, of one guided step at a reduced size (ADM width 64, 128 px,
full-size ViT-B/16), with and without CLIP and with bf16 CPU autocast, and divides by the
structural element counts the estimate scales with.

The last line is exactly ``per-sample GiB: full=X low=Y ratio=R time_ratio=T`` (R = low/full,
T = checkpointed/full step time, fp32).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GiB = 2**30


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LiveBytes:
    """Peak bytes of live tensor storages created while active (parameters excluded), op by op."""

    def __init__(self, exclude):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.live, self.current, self.peak = {}, 0, 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker.record(out)
                return out

        self.mode = Mode()

    def record(self, out):
        import torch
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._pytree import tree_flatten

        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key in self.live or key in self.exclude or storage.nbytes() == 0:
                    continue
                self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)


def worker(spec: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import torch

    from blended import memory
    from blended.augment import ExtendingAugmentation
    from blended.guidance import ClipGuidance, Guidance, RangeLoss
    from blended.pixel.sampler import SamplerSettings, sample
    from tests.support.sized_models import full_size_clip, make_model, scene

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    device = torch.device(spec["device"])
    model = make_model("adm256", device, model_channels=spec.get("model_channels", 256))
    res = spec.get("resolution", 256)
    terms = (RangeLoss(),)
    clip = None
    if spec["clip"]:
        clip = full_size_clip(device)
        terms = (ClipGuidance(clip, "a red ball", augmentation=ExtendingAugmentation(spec["augmentations"])),) + terms
    guidance = Guidance(terms)
    image, mask = scene(res, device)
    seeds = list(range(spec["batch"]))
    settings = SamplerSettings(
        steps="100", skip_timesteps=100 - spec["steps"], memory=spec["memory"], autocast=spec["autocast"]
    )
    if spec.get("cap_gib") and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec["cap_gib"] * GiB / total), index)
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
    live = None
    if spec.get("live"):
        params = list(model.parameters()) + (list(clip.model.parameters()) if clip is not None else [])
        if clip is not None:
            terms[0].text_embedding(device)  # cached before tracking, like a second step would find it
        live = LiveBytes(params)
    start = time.perf_counter()
    with live.mode if live else contextlib.nullcontext():
        out = sample(model, image, mask, guidance, settings, seeds, callback=tick, budget=budget)
    total_s = time.perf_counter() - start
    if live:
        peak = live.peak
    elif device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    plan = memory.plan(len(seeds), model, guidance, res, res, spec.get("cap_gib", 1 << 20) * GiB,
                       spec["memory"], spec["autocast"])
    return dict(
        growth=peak,
        step_s=min(steps) if steps else total_s,
        total_s=total_s,
        finite=bool(torch.isfinite(out).all()),
        samples=out.shape[0],
        unet_elements=memory.unet_elements(model.config, res, res),
        clip_elements=memory.clip_elements(clip) if clip is not None else 0,
        estimate=memory.estimate(model, guidance, res, res, spec["autocast"], spec["memory"] == "low").per_sample,
        planned_chunk=plan.chunk,
    )


def run(spec: dict) -> dict:
    """``spec`` in a fresh interpreter; returns its result."""
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"configuration {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=3, help="guided steps per configuration (>= 2 for a time)")
    parser.add_argument("--augmentations", type=int, default=8)
    parser.add_argument("--model-channels", type=int, default=256, help="256 = the real ADM-256 width")
    parser.add_argument("--calibrate", action="store_true", help="measure the constants of blended/memory.py")
    parser.add_argument("--live", action="store_true",
                        help="CPU: count live tensor bytes (as CUDA's max allocated does) instead of peak RSS")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.calibrate:
        return calibrate(args)
    base = dict(device=device, batch=1, steps=args.steps, augmentations=args.augmentations, clip=True,
                autocast="none", model_channels=args.model_channels, live=args.live and device == "cpu")
    where = "CUDA max allocated" if device == "cuda" else "CPU live tensor bytes" if args.live else "CPU peak RSS"
    print(f"device {device} (torch {torch.__version__}, {os.cpu_count()} CPUs); ADM-256 model_channels="
          f"{args.model_channels}, ViT-B/16, {args.augmentations} augmentations, batch 1, {where}, "
          "one process per configuration", flush=True)
    results = {}
    configs = [("full", dict(memory="fast")), ("low", dict(memory="low"))]
    if device == "cuda":
        configs += [("full-bf16", dict(memory="fast", autocast="bf16")),
                    ("low-bf16", dict(memory="low", autocast="bf16"))]
    for name, extra in configs:
        r = results[name] = run({**base, **extra})
        print(f"{name:10} growth {r['growth'] / GiB:6.2f} GiB (planner's estimate {r['estimate'] / GiB:5.2f})  "
              f"{r['step_s']:7.2f} s/step  finite={r['finite']}", flush=True)
    if device == "cuda":
        capped = run({**base, "batch": 8, "memory": "auto", "autocast": "bf16", "cap_gib": 12, "steps": 75})
        print(f"batch 8 under a 12 GiB cap, bf16, 75 steps: {capped['samples']} samples, planned chunk "
              f"{capped['planned_chunk']}, peak {capped['growth'] / GiB:.2f} GiB, {capped['total_s']:.1f} s "
              f"({capped['total_s'] / 8:.2f} s per edit)", flush=True)
        for name in ("full", "full-bf16", "low-bf16"):
            print(f"{name}: {results[name]['growth'] / GiB:.2f} GiB per sample, {results[name]['step_s'] * 75:.1f} s "
                  "per 256x256 edit (75 steps, batch 1)")
    full, low = results["full"], results["low"]
    print(f"per-sample GiB: full={full['growth'] / GiB:.2f} low={low['growth'] / GiB:.2f} "
          f"ratio={low['growth'] / full['growth']:.2f} time_ratio={low['step_s'] / full['step_s']:.2f}")


def calibrate(args):
    """Constants of blended/memory.py from live-tensor peaks at a reduced size (see the docstring)."""
    base = dict(device="cpu", batch=1, steps=1, augmentations=args.augmentations, clip=True, autocast="none",
                model_channels=64, resolution=128, live=True)
    print("calibration: live tensor bytes at the peak of one guided step, ADM-256 layout at width 64, 128 px, "
          f"ViT-B/16, {args.augmentations} augmentations", flush=True)
    r = {}
    for mode in ("fast", "low"):
        for clip in (False, True):
            for autocast in ("none", "bf16") if not clip else ("none",):
                key = (mode, clip, autocast)
                r[key] = run({**base, "memory": mode, "clip": clip, "autocast": autocast})
                print(f"  memory={mode:4} clip={clip!s:5} autocast={autocast:4}: {r[key]['growth'] / 2**20:8.1f} MiB "
                      f"(estimate {r[key]['estimate'] / 2**20:8.1f})", flush=True)
    views = args.augmentations + 1
    for mode in ("fast", "low"):
        unet = r[(mode, False, "none")]
        clip = r[(mode, True, "none")]
        per_unet = unet["growth"] / (unet["unet_elements"] * 4)
        per_clip = (clip["growth"] - unet["growth"]) / (views * clip["clip_elements"] * 4)
        half = r[(mode, False, "bf16")]["growth"] / unet["growth"]
        print(f"{mode}: UNET_BYTES_PER_ELEMENT={per_unet:.2f} CLIP_BYTES_PER_ELEMENT={per_clip:.2f} "
              f"HALF_FACTOR={half:.2f}")


if __name__ == "__main__":
    main()
