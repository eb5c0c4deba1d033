"""Why Blended Confine Edit undoes the drift before differencing: found-region IoU on synthetic
instruction edits of the shipped photo, with and without the alignment and colour fit, and the time.

The edit re-textures a box (about 8 % of the picture) and adds what editors add where nothing was
asked: a global tint (gain 1.08, offset 0.03), a shift (3, -2 px), a zoom (1.5 %), each alone and all
together. Each row: the IoU of the found region with the true box, the zoom / shift the search
removed, and the median time of ``--repeats`` runs.

    .venv/bin/python -m benchmarks.bench_change_mask [--size 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from blended.latent.change_mask import ChangeSettings, change_mask, warp

PHOTO = Path(__file__).resolve().parents[1] / "workflows" / "examples" / "blended_landscape.png"
DRIFTS = {"none": {}, "tint": dict(gain=1.08, offset=0.03), "shift 3,-2 px": dict(dx=3, dy=-2),
          "zoom 1.5 %": dict(zoom=1.015), "all": dict(gain=1.08, offset=0.03, zoom=1.015, dx=3, dy=-2)}


def scene(width: int):
    """The shipped photo at ``width`` x 3/4 width, a box re-textured in it, and the box."""
    h = width * 3 // 4
    img = torch.from_numpy(np.array(Image.open(PHOTO).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(h, width), mode="area")
    truth = torch.zeros(1, 1, h, width)
    truth[..., h * 5 // 16 : h * 10 // 16, width * 6 // 16 : width * 10 // 16] = 1
    tex = torch.rand(1, 3, h, width, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    return img, truth, torch.where(truth > 0, tex, img)


def drifted(edit, gain=1.0, offset=0.0, zoom=1.0, dx=0.0, dy=0.0):
    out = (edit * gain + offset).clamp(0, 1)
    return warp(out, 1 / zoom, -dx, -dy) if (zoom, dx, dy) != (1.0, 0.0, 0.0) else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512, help="width in pixels (height 3/4 of it)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    img, truth, edit = scene(args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size * 3 // 4} px, "
          f"box {100 * float(truth.mean()):.1f} % of the picture")
    print("| drift | IoU aligned | IoU plain difference | removed zoom, shift px | aligned s | plain s |")
    print("| --- | --- | --- | --- | --- | --- |")
    settings = {"aligned": ChangeSettings(grow_px=0), "plain": ChangeSettings(grow_px=0, align=False,
                                                                            match_colour=False)}
    for name, drift in DRIFTS.items():
        e = drifted(edit, **drift)
        times = {k: [] for k in settings}
        found = {}
        for r in range(args.repeats):
            for key in (list(settings) if r % 2 == 0 else list(settings)[::-1]):
                t = time.perf_counter()
                found[key] = change_mask(e, img, settings[key])
                times[key].append(time.perf_counter() - t)
        iou = {k: float((m * truth).sum() / ((m + truth) > 0).sum()) for k, (m, _, _) in found.items()}
        s = found["aligned"][2][0]
        removed = f"{s['zoom']:.3f}, {s['dx']:+.2f},{s['dy']:+.2f}"
        print(f"| {name} | {iou['aligned']:.3f} | {iou['plain']:.3f} | {removed} | "
              f"{statistics.median(times['aligned']):.2f} | {statistics.median(times['plain']):.2f} |", flush=True)


if __name__ == "__main__":
    main()
