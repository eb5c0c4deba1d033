"""Mask shaping: binarize, dilate, feather.

Blending needs a hard mask (a pixel either follows the diffusion or the source), while the final
paste wants a soft one so the edit has no visible seam. Feathering here works *inward*: the soft
edge is made inside the hard mask, so every pixel outside it is still exactly the source pixel.
Masks are [B,1,H,W] floats, 1 = edit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def binarize(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    return (mask > threshold).to(torch.float32)


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Grow by ``px`` pixels (square neighbourhood); exact, no blur."""
    px = int(px)
    if px <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * px + 1, stride=1, padding=px)


def erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    px = int(px)
    if px <= 0:
        return mask
    return 1 - dilate(1 - mask, px)


def feather(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Soft paste weights: exactly 0 outside ``mask``, exactly 1 deeper than 2*px inside, a ramp between.

    Erode by px then box-blur by px: the blur cannot reach past the erosion, so nothing leaks
    outside the mask. An area too thin to survive the erosion keeps a lighter ramp of its own.
    """
    px = int(px)
    if px <= 0:
        return mask
    core = erode(mask, px)
    k = 2 * px + 1
    # count_include_pad=False keeps borders of the image at full weight.
    soft = F.avg_pool2d(core, kernel_size=k, stride=1, padding=px, count_include_pad=False)
    thin = (mask > 0) & (soft == 0)
    if thin.any():  # strokes thinner than 2*px: blur the mask itself, then keep it inside the mask
        own = F.avg_pool2d(mask, kernel_size=k, stride=1, padding=px, count_include_pad=False)
        soft = torch.where(thin, own, soft)
    return torch.where(mask > 0, soft, torch.zeros_like(soft))
