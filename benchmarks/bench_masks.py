"""Mask dilate + feather: the old (2r+1)^2 pooling against the radius-independent version.

Both run interleaved in one process on the same mask, so the ratio is what to read; absolute
seconds depend on the machine's load. The old version is timed only up to a radius where it still
finishes in a minute or so (it grows with r^2).

    python -m benchmarks.bench_masks [--height 1500 --width 2000 --radii 8,16,32 --new-radii 128,512]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from blended import masks


def old_dilate(mask, px):
    return F.max_pool2d(mask, 2 * px + 1, 1, px)


def old_feather(mask, px):
    core = 1 - old_dilate(1 - mask, px)
    soft = F.avg_pool2d(core, 2 * px + 1, 1, px, count_include_pad=False)
    return torch.where(mask > 0, soft, torch.zeros_like(soft))


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--radii", default="8,16,32", help="radii timed for both versions")
    parser.add_argument("--new-radii", default="128,512", help="radii timed for the new version only")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    mask = torch.zeros(1, 1, args.height, args.width)
    mask[..., args.height // 4 : 3 * args.height // 4, args.width // 4 : 3 * args.width // 4] = 1
    print(f"mask {args.width}x{args.height}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'radius':>6} {'old s':>8} {'new s':>8} {'old/new':>8}  same result")
    for r in (int(v) for v in args.radii.split(",")):
        t_old, (d_old, f_old) = timed(lambda: (old_dilate(mask, r), old_feather(old_dilate(mask, r), r)), args.repeats)
        t_new, (d_new, f_new) = timed(lambda: (masks.dilate(mask, r), masks.feather(masks.dilate(mask, r), r)),
                                      args.repeats)
        same = torch.equal(d_old, d_new) and torch.equal(f_old, f_new)
        print(f"{r:>6} {t_old:>8.3f} {t_new:>8.3f} {t_old / t_new:>8.1f}  {same}")
    for r in (int(v) for v in args.new_radii.split(",") if v):
        t_new, _ = timed(lambda: (masks.dilate(mask, r), masks.feather(masks.dilate(mask, r), r)), args.repeats)
        print(f"{r:>6} {'-':>8} {t_new:>8.3f} {'-':>8}")


if __name__ == "__main__":
    main()
