"""Blended Latent Sampler vs core KSampler + SetLatentNoiseMask, per family, in one interleaved run.

Same tiny random model (tests/latent_families.py), same steps, sampler and conditioning; each round
runs both once, alternating, so load on a shared machine hits both alike. Prints the per-step time
ratio (median over rounds) and the model calls per step each made (counted through ComfyUI's public
unet wrapper).

    .venv/bin/python benchmarks/bench_latent_families.py [--families sd15,sdxl,flux-dev] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="sd15,sdxl,flux-dev")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=16, help="latent cells per side")
    args = ap.parse_args()

    import pack_import

    pack_import.register()
    from latent_families import build
    from sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import comfy.sample

    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, steps {args.steps}, "
          f"latent {args.size}x{args.size}, rounds {args.rounds}")
    print("| family | core KSampler + SetLatentNoiseMask s/step | Blended Latent Sampler s/step | ratio | "
          "model calls per step (core / blended) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.families.split(","):
        b = build(name, (args.size, args.size))
        f = b.family.factor
        source = torch.randn(1, b.family.channels, args.size, args.size, generator=torch.Generator().manual_seed(0))
        mask = torch.zeros(1, args.size * f, args.size * f)
        mask[:, args.size * f // 4 : args.size * f * 3 // 4, args.size * f // 4 : args.size * f * 3 // 4] = 1
        cfg = 1.0 if b.family.guider == "basic" else 3.0
        calls = {"n": 0}
        model = b.model.clone()

        def wrapper(apply_model, a):
            calls["n"] += 1
            return apply_model(a["input"], a["timestep"], **a["c"])

        model.set_model_unet_function_wrapper(wrapper)

        def core():
            # what core KSampler runs on SetLatentNoiseMask's latent: comfy.sample.sample with its noise_mask
            noise = comfy.sample.prepare_noise(source, 0)
            return comfy.sample.sample(model, noise, args.steps, cfg, "euler", "simple", b.positive, b.negative,
                                       source, denoise=1.0, noise_mask=mask.reshape(1, 1, *mask.shape[-2:]),
                                       disable_pbar=True, seed=0)

        def ours():
            return run_latent_sampler(model, b.positive, b.negative, {"samples": source}, mask, 0, args.steps, cfg,
                                      "euler", "simple", 1.0, 1, 16, 0.25)

        times = {"core": [], "ours": []}
        counts = {}
        core(), ours()  # warm-up
        for _ in range(args.rounds):
            for key, fn in (("core", core), ("ours", ours)):
                calls["n"] = 0
                t = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t) / args.steps)
                counts[key] = calls["n"] / args.steps
        c, o = statistics.median(times["core"]), statistics.median(times["ours"])
        ratios = [oo / cc for oo, cc in zip(times["ours"], times["core"])]
        print(f"| {name} | {c:.4f} | {o:.4f} | {statistics.median(ratios):.3f}x | "
              f"{counts['core']:g} / {counts['ours']:g} |")


if __name__ == "__main__":
    main()
