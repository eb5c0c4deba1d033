"""What the stitch did to each image, and whether its seam got better.

The "before" is the exact paste at weight 1 (what the stitch pastes anyway for colour match and
gradient domain), so no second treatment is ever run; the scores look only at a window around
the mask's box, padded far enough that ``metrics.seam_score`` sees the same border pixels and
bands as on the whole image (the score is then the same number, at the cost of the box only).
"""

from __future__ import annotations

import torch

from ..metrics import seam_score

BAND_PX = 2  # seam_score's default band, the one the ranking and the reconstruction report use


def score_window(mask: torch.Tensor, band_px: int = BAND_PX) -> tuple[slice, slice] | None:
    """Rows/columns of the mask's box padded by 4 bands + 1 px. ``seam_score`` reads two bands on
    either side of a border pixel and skips the two bands along the image's edge; with this
    margin the window's own edge never cuts a counted border pixel, so the score is the image's."""
    ys, xs = torch.nonzero(mask.reshape(mask.shape[-2:]) > 0, as_tuple=True)
    if ys.numel() == 0:
        return None
    pad = 4 * int(band_px) + 1
    h, w = mask.shape[-2:]
    return (slice(max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h)),
            slice(max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)))


def windowed_seam(image: torch.Tensor, mask: torch.Tensor, window) -> float:
    """seam_score of one image [1,3,H,W] at mask [1,1,H,W], on ``window`` only (0 for an empty mask)."""
    if window is None:
        return 0.0
    rows, cols = window
    return float(seam_score(image[..., rows, cols].clamp(0, 1), mask[..., rows, cols], BAND_PX)[0])


def image_stats(mode: str, feather_px: int, hard: torch.Tensor, out: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per image: the mode, the feather, the correction inside the mask (``out`` - ``hard``, for the
    modes that correct colour) and the seam score of the exact paste ``hard`` and of ``out``."""
    window = score_window(mask)
    before = windowed_seam(hard, mask, window)
    after = before if out is hard else windowed_seam(out, mask, window)
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
