"""Blended Latent Sampler vs core KSampler + SetLatentNoiseMask, per family, in one interleaved run.

Same tiny random model (tests/support/latent_families.py), same steps, sampler and conditioning, progress
bars off for both; each round runs both once, alternating which goes first, so load on a shared
machine hits both alike. Prints the per-step time ratio (median of the per-round ratios, with the
middle half of them), the model calls per step each made, and each run's time outside the model
calls per step. The work the blending adds is the difference of the last two, shown as a share of
core's step: the noise in the model's own time (most of a step, and what moves the ratio by a few
percent from round to round on a shared box) does not enter it. Calls and their time are taken
through ComfyUI's public unet wrapper.

    .venv/bin/python -m benchmarks.bench_latent_families [--families sd15,sdxl,flux-dev] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import torch

ROOT = Path(__file__).resolve().parents[1]


# GPU work is queued: a clock read means something only once it has run
sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def quartiles(values):
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def bench_family(name, size, steps, rounds, run_latent_sampler):
    import comfy.sample
    import latent_preview

    from tests.support.latent_families import build

    b = build(name, (size, size))
    f = b.family.factor
    source = torch.randn(1, b.family.channels, size, size, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, size * f, size * f)
    mask[:, size * f // 4 : size * f * 3 // 4, size * f // 4 : size * f * 3 // 4] = 1
    cfg = 1.0 if b.family.guider == "basic" else 3.0
    meter = {"calls": 0, "model_s": 0.0}
    model = b.model.clone()

    def wrapper(apply_model, a):
        sync()
        t = time.perf_counter()
        out = apply_model(a["input"], a["timestep"], **a["c"])
        sync()
        meter["model_s"] += time.perf_counter() - t
        meter["calls"] += 1
        return out

    model.set_model_unet_function_wrapper(wrapper)

    def core():
        # core KSampler's common_ksampler on SetLatentNoiseMask's latent: its noise, its preview callback,
        # comfy.sample.sample with the noise_mask
        noise = comfy.sample.prepare_noise(source, 0)
        callback = latent_preview.prepare_callback(model, steps)
        return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", b.positive, b.negative, source,
                                   denoise=1.0, noise_mask=mask.reshape(1, 1, *mask.shape[-2:]), callback=callback,
                                   disable_pbar=True, seed=0)

    def ours():
        return run_latent_sampler(model, b.positive, b.negative, {"samples": source}, mask, 0, steps, cfg, "euler",
                                  "simple", 1.0, 1, 16, 0.25)

    runs = {"core": core, "ours": ours}
    total = {k: [] for k in runs}
    outside = {k: [] for k in runs}
    calls = {}
    core(), ours()  # warm-up
    for r in range(rounds):
        for key in (("core", "ours") if r % 2 == 0 else ("ours", "core")):
            meter.update(calls=0, model_s=0.0)
            sync()
            t = time.perf_counter()
            runs[key]()
            sync()
            elapsed = time.perf_counter() - t
            total[key].append(elapsed / steps)
            outside[key].append((elapsed - meter["model_s"]) / steps)
            calls[key] = meter["calls"] / steps
    ratios = [o / c for o, c in zip(total["ours"], total["core"])]
    lo, hi = quartiles(ratios)
    med = {k: statistics.median(v) for k, v in total.items()}
    out = {k: statistics.median(v) * 1e3 for k, v in outside.items()}
    added = (out["ours"] - out["core"]) / (med["core"] * 1e3)
    return (f"| {name} | {size}x{size} | {med['core']:.4f} | {med['ours']:.4f} | "
            f"{statistics.median(ratios):.3f}x ({lo:.3f}-{hi:.3f}) | {out['core']:.2f} / {out['ours']:.2f} | "
            f"{100 * added:+.1f}% | {calls['core']:g} / {calls['ours']:g} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="sd15,sdxl,flux-dev")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sizes", default="16", help="latent cells per side, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from tests.support import pack_import

    pack_import.register()
    from tests.support.sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import comfy.model_management as mm
    import comfy.utils

    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    comfy.utils.set_progress_bar_enabled(False)  # ComfyUI's own switch; core's run has disable_pbar=True
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} on {mm.get_torch_device()}, {torch.get_num_threads()} threads, "
          f"steps {args.steps}, rounds {args.rounds}, euler / simple")
    print("| family | latent | core KSampler + SetLatentNoiseMask s/step | Blended Latent Sampler s/step | "
          "ratio, median (middle half) | outside the model ms/step (core / blended) | "
          "blending's added time, share of core's step | model calls per step (core / blended) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        for name in args.families.split(","):
            print(bench_family(name, size, args.steps, args.rounds, run_latent_sampler), flush=True)


if __name__ == "__main__":
    main()
