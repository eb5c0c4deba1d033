"""Benchmarks: prints ratios measured in one run, never asserts on time.

    python -m benchmarks.bench_sampler [--quick] [--device cuda]

Sections:
1. per-step time of our sampler (one UNet forward per step) vs the two-forward baseline, tiny and
   small UNet configs, same settings, same seeds; and ours vs the floor: one UNet forward+backward
   plus one CLIP forward+backward on the same views, nothing else (target ours/floor <= 1.10);
2. peak memory of both (CUDA: max allocated; CPU: tracemalloc can't see torch, so RSS growth);
3. cost growth with batch size and with the number of extending augmentations;
4. on CUDA only: fp32 vs bf16 autocast, seconds per 256x256 edit with the real 256 config
   (random weights: speed does not depend on their values).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import torch

from blended.augment import ExtendingAugmentation
from blended.guidance import ClipGuidance, Guidance, RangeLoss
from blended.pixel.sampler import SamplerSettings, sample
from tests.support.sized_models import full_size_clip, make_clip, make_model, scene
from tests.support.two_forward import two_forward_sample

ROOT = Path(__file__).resolve().parents[1]


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    """Best of ``repeats`` wall times after one warm-up (the minimum is the least noisy estimate)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def floor_step(model, clip, image, views: int, batch: int):
    """The least a guided step can cost: the UNet forward and backward to x, and CLIP's forward and
    backward to its input views, with no schedule, augmentation, noise or blending around them."""
    x = image.expand(batch, -1, -1, -1).clone().requires_grad_(True)
    t = torch.full((batch,), 500.0, device=image.device)
    pixels = torch.rand(views * batch, 3, clip.image_size, clip.image_size, device=image.device, requires_grad=True)

    def step():
        out = model(x, t)
        emb = clip.encode_image(pixels)
        torch.autograd.grad(out.float().sum() + emb.sum(), (x, pixels))

    return step


def config(name: str, device, clip):
    """One benchmark configuration: the model, its scene, and CLIP guidance on 4 extending copies."""
    model = make_model(name, device)
    image, mask = scene(model.image_size, device)
    guidance = Guidance((ClipGuidance(clip, "a red ball", augmentation=ExtendingAugmentation(4)), RangeLoss()))
    return model, image, mask, guidance


def peak_memory(which: str, device) -> float:
    """MiB: on CUDA the peak allocated above the set-up state; on CPU (no allocator statistics)
    the bytes autograd saves for backward per step, which is what guidance adds to inference."""
    model, image, mask, guidance = config("small", device, make_clip(device))
    settings = SamplerSettings(steps="4", skip_timesteps=1)
    run = sample if which == "ours" else two_forward_sample
    args = (model, image, mask, guidance, settings, list(range(4)))
    if torch.device(device).type == "cuda":
        gc.collect()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(*args)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run(*args)
    return sum(saved) / 3 / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--floor-only", action="store_true", help="only section 1b (ours/floor), best of 5")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    steps, repeats = ("6", 1) if args.quick else ("12", 3)
    repeats = 5 if args.floor_only else repeats
    settings = SamplerSettings(steps=steps, skip_timesteps=2)
    n_steps = int(steps) - 2
    clip = make_clip(device)
    print(f"device: {device}  torch {torch.__version__}  steps/run: {n_steps}  best of {repeats}")

    if not args.floor_only:
        print("\n1. per-step time: ours (1 UNet forward/step) vs two-forward baseline")
        print(f"{'config':8} {'batch':>5} {'ours ms/step':>13} {'baseline ms/step':>17} {'baseline/ours':>14}")
        for name in ("tiny", "small"):
            model, image, mask, guidance = config(name, device, clip)
            for batch in (1, 4):
                seeds = list(range(batch))
                ours = timed(lambda: sample(model, image, mask, guidance, settings, seeds), device, repeats)
                base = timed(lambda: two_forward_sample(model, image, mask, guidance, settings, seeds), device, repeats)
                print(f"{name:8} {batch:5d} {1e3 * ours / n_steps:13.1f} {1e3 * base / n_steps:17.1f} "
                      f"{base / ours:14.2f}x")

    print("\n1b. ours vs the floor (UNet fwd+bwd + CLIP fwd+bwd on the same 1+4 views), ms/step")
    print(f"{'config':8} {'batch':>5} {'ours':>8} {'floor':>8} {'ours/floor':>11}")
    for name in ("tiny", "small"):
        model, image, mask, guidance = config(name, device, clip)
        for batch in (1, 4):
            seeds = list(range(batch))
            run_floor = floor_step(model, clip, image, 5, batch)
            with torch.enable_grad():
                floor = timed(lambda: [run_floor() for _ in range(n_steps)], device, repeats) / n_steps
            ours = timed(lambda: sample(model, image, mask, guidance, settings, seeds), device, repeats) / n_steps
            print(f"{name:8} {batch:5d} {1e3 * ours:8.1f} {1e3 * floor:8.1f} {ours / floor:10.2f}x")

    print("\n1c. the extending augmentation's 3x3 maps, batch 4 x 8 copies: per-copy loop (before) vs batched")
    from test_sampler import reference_homography

    aug = ExtendingAugmentation(8)

    def gens():
        return [torch.Generator().manual_seed(s) for s in range(4)]

    loop = timed(lambda: [reference_homography(aug, 224, g) for g in gens() for _ in range(8)], device, 20)
    batched = timed(lambda: aug.homographies(224, gens(), device), device, 20)
    print(f"per-copy {1e3 * loop:.2f} ms  batched {1e3 * batched:.2f} ms  per-copy/batched {loop / batched:.1f}x")
    if args.floor_only:
        return

    print("\n2. peak memory (MiB), small config, batch 4")
    mem_ours, mem_base = peak_memory("ours", device), peak_memory("baseline", device)
    how = "peak allocated" if device.type == "cuda" else "autograd-saved per step"
    print(f"ours {mem_ours:.0f}  baseline {mem_base:.0f}  baseline/ours {mem_base / max(mem_ours, 1e-9):.2f}x  ({how})")

    print("\n3. cost growth, small config (time relative to batch 1 / to no augmentation)")
    model, image, mask, guidance = config("small", device, clip)
    one = timed(lambda: sample(model, image, mask, guidance, settings, [0]), device, repeats)
    for batch in (2, 4, 8):
        t = timed(lambda: sample(model, image, mask, guidance, settings, list(range(batch))), device, repeats)
        print(f"batch {batch}: {t / one:5.2f}x time, {t / one / batch:5.2f}x per sample")
    plain = Guidance((ClipGuidance(clip, "a red ball"), RangeLoss()))
    t0 = timed(lambda: sample(model, image, mask, plain, settings, [0]), device, repeats)
    for count in (2, 8, 16):
        g = Guidance((ClipGuidance(clip, "a red ball", augmentation=ExtendingAugmentation(count)), RangeLoss()))
        t = timed(lambda: sample(model, image, mask, g, settings, [0]), device, repeats)
        print(f"augmentations {count:2d}: {t / t0:5.2f}x time")

    if device.type != "cuda":
        print("\n4. GPU section skipped: CUDA not available.")
        return
    print("\n4. CUDA: 256x256 ADM + ViT-B/16 (random weights), 8 augmentations, one edit = 75 steps of 100, batch 1")
    model = make_model("adm256", device)
    image, mask = scene(256, device)
    vit = full_size_clip(device)
    guidance = Guidance((ClipGuidance(vit, "a red ball", augmentation=ExtendingAugmentation(8)), RangeLoss()))
    full = SamplerSettings(steps="100", skip_timesteps=25)
    fast_steps = SamplerSettings(steps="100", skip_timesteps=90)
    for precision in ("none", "bf16"):
        s = SamplerSettings(steps="100", skip_timesteps=90, autocast=precision)
        per = timed(lambda: sample(model, image, mask, guidance, s, [0]), device, 1) / 10
        print(f"{precision:5}: {per * 1e3:7.1f} ms/step -> {per * 75:6.1f} s per 256x256 edit")
    ours = timed(lambda: sample(model, image, mask, guidance, fast_steps, [0]), device, 1)
    base = timed(lambda: two_forward_sample(model, image, mask, guidance, fast_steps, [0]), device, 1)
    print(f"fp32 baseline/ours: {base / ours:.2f}x   (full edit uses {full.steps} steps, skip {full.skip_timesteps})")


if __name__ == "__main__":
    main()
