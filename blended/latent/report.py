"""What the stitch did to each image, and whether its seam got better.

The "before" is the exact paste at weight 1 (``seam.apply_seam`` makes it for every mode: colour
match and gradient domain start from it), so no second treatment is ever run; both scores come
from ``metrics.seam_change``, the one before/after seam measurement.
"""

from __future__ import annotations

import torch

from ..metrics import seam_change


def image_stats(mode: str, feather_px: int, hard: torch.Tensor, out: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per image: the mode, the feather, the correction inside the mask (``out`` - ``hard``, for the
    modes that correct colour) and the seam score of the exact paste ``hard`` and of ``out``."""
    (before,), (after,) = seam_change(hard, out, mask)
    stats = {"mode": mode, "feather_px": int(feather_px), "seam_before": before, "seam_after": after}
    if mode in ("colour match", "gradient domain"):
        inside = (mask[0, 0] > 0)
        diff = (out - hard)[0][:, inside].double()
        if diff.numel():
            stats["mean_change"] = [float(v) for v in diff.mean(1)]
            stats["rms_change"] = float(diff.pow(2).mean().sqrt())
            stats["max_change"] = float(diff.abs().max())
    return stats


def _what(stats: dict) -> str:
    mode, px = stats["mode"], stats["feather_px"]
    if mode == "exact paste":
        return "exact paste" + (f" with a {px} px feather inside the mask edge" if px else "")
    if mode == "feather":
        return f"feather: soft edge over {px} px inside the mask edge"
    what = ("colour match: inside shifted/scaled to the original's ring outside the border"
            if mode == "colour match" else "gradient domain: Poisson blend, border values from the original")
    if "mean_change" in stats:
        r, g, b = stats["mean_change"]
        what += (f", mean RGB change {r:+.4f} {g:+.4f} {b:+.4f} (RMS {stats['rms_change']:.4f}, largest "
                 f"{stats['max_change']:.4f})")
    return what + (f", pasted with a {px} px feather" if px else "")


def report_text(all_stats: list[dict]) -> str:
    """One line per stitched image: the treatment, the correction and the seam score before -> after."""
    lines = ["latent stitch (seam score: 0 = seamless, 0..1 colour units; before = exact paste; outside the "
             "mask the original is kept bit for bit):"]
    for i, s in enumerate(all_stats):
        lines.append(f"image {i} (source {s['source']}): {_what(s)}; seam score {s['seam_before']:.4f} exact paste "
                     f"-> {s['seam_after']:.4f}")
    return "\n".join(lines)
