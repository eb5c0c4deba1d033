"""The pixel path's paste-back (``mask_feather``) on a synthetic tinted edit: seam score per feather.

It runs the very steps ``blended.pixel.edit.edit`` takes after sampling (``prepare_masks``, the context
box, the model-size crop, ``region.paste_back``) with the model's output replaced by the source
crop plus a texture and a colour tint, so the figures are synthetic, not a quality claim on real
edits. For comparison it also runs the latent stitch's colour match and gradient domain
(``seam.apply_seam`` on the same edit resized back, feather 0: what a seam input on the pixel
sampler would add). "band" is how deep inside the mask a weight below 1 reaches (the feather's
band), "max|d| out" the largest change outside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.bench_seams import edit as tinted_texture
from benchmarks.bench_seams import masks as mask_kinds
from benchmarks.bench_seams import texture
from blended import masks, region
from blended.latent.seam import apply_seam
from blended.metrics import seam_score
from blended.pixel.edit import RegionSettings, prepare_masks

ROOT = Path(__file__).resolve().parents[1]


def pixel_paste(source, mask, feather, model_size=256):
    """edit()'s paste with a tinted crop in place of the sampler's output -> (image, paste, edit mask,
    the tinted crop resized back to full size)."""
    edit_mask, paste = prepare_masks(mask[None, None], RegionSettings(0, feather, 0.25))
    box = region.context_box(edit_mask, 0.25)
    size = region.model_input_size(box, model_size, 8)
    crop = region.crop_resize(source, box, size)
    fake = tinted_texture(crop, 7)  # 0.7 new texture + 0.3 source + a tint: a visible offset at the border
    return region.paste_back(source, fake, box, paste), paste, edit_mask, region.resize_full(fake, box, source)


def band_depth(paste, edit_mask):
    """Deepest erosion of the edit mask that still holds a weight below 1 (0: a hard paste)."""
    depth = 0
    while True:
        core = masks.erode(edit_mask, depth + 1)
        if not (core > 0).any() or not ((paste < 1) & (core > 0)).any():
            return depth
        depth += 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--feathers", type=int, nargs="+", default=[0, 2, 4, 8, 16])
    args = parser.parse_args(argv)
    source = texture(args.size, 0)
    print(f"{'mask':<11} {'paste':<24} {'seam':>7} {'band px':>7} {'max|d| out':>10}")
    for kind in ("object", "scribble"):
        mask = mask_kinds(args.size)[kind]
        for px in args.feathers:
            out, paste, edit_mask, _ = pixel_paste(source, mask, px)
            outside = (edit_mask == 0).expand_as(source)
            diff = float((out - source)[outside].abs().max())
            seam = float(seam_score(out, edit_mask)[0])
            print(f"{kind:<11} {'feather ' + str(px):<24} {seam:>7.4f} {band_depth(paste, edit_mask):>7} {diff:>10.1e}")
        _, _, edit_mask, full = pixel_paste(source, mask, 0)
        for mode in ("colour match", "gradient domain"):
            name = "exact + " + mode
            out, _ = apply_seam(mode, full, source, edit_mask, edit_mask)
            outside = (edit_mask == 0).expand_as(source)
            diff = float((out - source)[outside].abs().max())
            print(f"{kind:<11} {name:<24} {float(seam_score(out, edit_mask)[0]):>7.4f} {'-':>7} {diff:>10.1e}")


if __name__ == "__main__":
    main()
