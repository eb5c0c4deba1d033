"""Seam modes on synthetic photos: seam score, outside change and time per mode and mask kind.

Each mode runs what Blended Latent Stitch runs at full size (``seam.paste_weights`` with
mask_feather 0, ``seam.apply_seam``, ``metrics.seam_change``), so "feather" is ``masks.feather`` at
4 px, the shipped feather. Seeded textures stand in for photos and a tinted, offset noise texture
for the edit, so the figures are synthetic and random, not a quality claim on real images. The
last section times the gradient-domain solve at 512 px against a 30-step latent edit, taken from
RESULTS.md's measured SD1.5 step at 256 px (14.40 s/step on the 2-core CPU box): a 512 px edit
costs more, so the ratio printed is an upper bound."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from blended.latent.seam import MODES, apply_seam, paste_weights
from blended.metrics import seam_change

ROOT = Path(__file__).resolve().parents[1]

SD15_STEP_S_256 = 14.40  # RESULTS.md "Latent path", measured on this project's CPU box


def texture(size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(1, 3, size, size)
    for octave in (4, 16, 64):
        coarse = torch.rand(1, 3, octave, octave, generator=g)
        out += F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) / 3
    return out.clamp(0, 1)


def masks(size: int) -> dict[str, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    blob = (((yy - 0.5) / 0.3) ** 2 + ((xx - 0.45) / 0.25) ** 2 < 1).float()
    t = torch.linspace(0, 1, 200)
    stroke = torch.zeros(size, size)
    for ty, tx in zip(0.2 + 0.6 * t, 0.5 + 0.3 * torch.sin(6 * t)):
        stroke[((yy - ty) ** 2 + (xx - tx) ** 2) < 0.04**2] = 1
    band = max(size // 8, 2)
    outpaint = torch.ones(size, size)
    outpaint[band:-band, band:-band] = 0
    return {"object": blob, "background": 1 - blob, "scribble": stroke, "outpaint": outpaint}


def edit(source: torch.Tensor, seed: int) -> torch.Tensor:
    tint = torch.tensor([0.15, -0.05, 0.1])[None, :, None, None]
    return (0.7 * texture(source.shape[-1], seed + 100) + 0.3 * source + tint + 0.1).clamp(0, 1)


def run_mode(mode: str, edited: torch.Tensor, source: torch.Tensor, mask: torch.Tensor):
    """The stitch's steps for one mode -> (result, seam score before, after) for the first image."""
    weights, _ = paste_weights(mode, mask)
    out, exact = apply_seam(mode, edited, source, mask, weights)
    before, after = seam_change(exact, out, mask)
    return out, before[0], after[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="photo size for the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost-size", type=int, default=512, help="size for the gradient-domain timing")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    source = texture(args.size, args.seed)
    edited = edit(source, args.seed)
    print(f"{'mask':<11} {'mode':<16} {'seam before':>11} {'seam after':>10} {'max|d| out':>10} {'s':>7}")
    for kind, mask in masks(args.size).items():
        for mode in MODES:
            t0 = time.perf_counter()
            out, before, after = run_mode(mode, edited, source, mask[None, None])
            dt = time.perf_counter() - t0
            outside = (mask <= 0)[None, None].expand_as(source)
            diff = float((out - source)[outside].abs().max()) if outside.any() else 0.0
            print(f"{kind:<11} {mode:<16} {before:>11.4f} {after:>10.4f} {diff:>10.1e} {dt:>7.3f}")
    big = texture(args.cost_size, args.seed + 1)
    mask = masks(args.cost_size)["object"][None, None]
    t0 = time.perf_counter()
    run_mode("gradient domain", edit(big, args.seed), big, mask)
    dt = time.perf_counter() - t0
    ref = 30 * SD15_STEP_S_256
    print(f"gradient domain at {args.cost_size} px: {dt:.2f} s = {100 * dt / ref:.2f}% of a 30-step SD1.5 "
          f"edit at 256 px ({ref:.1f} s, RESULTS.md; a {args.cost_size} px edit is slower)")


if __name__ == "__main__":
    main()
