"""Benchmark: the background reconstruction's levers, one row per configuration on the same image.

    python -m benchmarks.bench_reconstruct [--size 64] [--configs "paper:1e-4 1:3e-4 1:1e-3 3:1e-4 0:1e-2"]

Each config is BLOCKS:LR. ``paper`` is the paper's way as it ran before: the whole decoder tuned,
every outside pixel in the loss, 75 Adam steps, no stopping rule. A number tunes the decoder's last
that many full-resolution blocks (0: only the output norm and conv) on the mask's box grown by the
16 px band, with the stopping rule (target 20x, or plateau), at most ``--iterations`` steps. Random
SD1.5 VAE weights (``tests/support/sd15_fixture.py``) loaded by ComfyUI's VAE class, the shipped example photo,
the central half as the mask and a random latent inside it as the edit. Printed per row: set-up and
tuning seconds (this machine, one run), steps and why they stopped, the reduction of the squared
error outside the mask (in the band for the tail rows, everywhere for ``paper``) and the inside mean
squared difference from the plain decode (0..1 units). Never asserts.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def settings_for(blocks: str, lr: float, iterations: int, size: int):
    from blended.latent.reconstruct import ReconstructSettings

    if blocks == "paper":
        return ReconstructSettings(iterations=75, learning_rate=lr, tuned_blocks=None, band_px=4 * size,
                                   target_reduction=math.inf, patience=10**9)
    return ReconstructSettings(iterations=iterations, learning_rate=lr, tuned_blocks=int(blocks))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64, help="image side in px (multiple of 8)")
    ap.add_argument("--configs", default="paper:1e-4 1:1e-4 1:3e-4 1:1e-3 2:1e-4 3:1e-4 0:1e-2 0:3e-3")
    ap.add_argument("--iterations", type=int, default=75, help="most steps of the tail rows")
    args = ap.parse_args(argv)
    from tests.support.sd15_fixture import comfy_engine_path, write_random_sd15

    comfy_engine_path()
    import comfy.sd
    import comfy.utils
    from test_latent_engine import example_photo

    from blended import masks
    from blended.latent.blend import cover_mask
    from blended.latent.reconstruct import tunable_for, tune

    with tempfile.TemporaryDirectory(prefix="bench-reconstruct-") as tmp:
        sd = comfy.utils.load_torch_file(str(write_random_sd15(Path(tmp) / "sd15.safetensors")))
    vae = comfy.sd.VAE(sd={k.removeprefix("first_stage_model."): v for k, v in sd.items()
                           if k.startswith("first_stage_model.")})
    del sd
    size = args.size
    src = example_photo(size)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    lat = vae.encode(src).detach()
    cells = cover_mask(mask, 8).expand_as(lat) > 0
    z = torch.where(cells, torch.randn(lat.shape, generator=torch.Generator().manual_seed(0)), lat)
    x = src.movedim(-1, 1) * 2 - 1
    print(f"{size}x{size} px, torch threads {torch.get_num_threads()}")
    print("| tuned | lr | set-up s | tuning s | steps (stop) | outside reduction | inside MSE | window |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for config in args.configs.split():
        blocks, lr = config.split(":")
        s = settings_for(blocks, float(lr), args.iterations, size)
        t0 = time.perf_counter()
        t = tunable_for(vae.first_stage_model, z, masks.binarize(mask), s, "cpu")
        t1 = time.perf_counter()
        _, st = tune(t, x, mask, s)
        t2 = time.perf_counter()
        red = (st["plain_outside"] / max(st["tuned_outside"], 1e-12)) ** 2
        what = "whole decoder" if blocks == "paper" else f"last {blocks} block(s)"
        print(f"| {what} | {lr} | {t1 - t0:.2f} | {t2 - t1:.2f} | {st['iterations']} ({st['stopped']}) | {red:.1f}x | "
              f"{st['inside_mse_plain']:.4f} | {t.window} |", flush=True)


if __name__ == "__main__":
    main()
