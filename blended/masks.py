"""Mask shaping: binarize, dilate, feather.

Blending needs a hard mask (a pixel either follows the diffusion or the source), while the final
paste wants a soft one so the edit has no visible seam. Feathering here works *inward*: the soft
edge is made inside the hard mask, so every pixel outside it is still exactly the source pixel.
Masks are [B,1,H,W] floats, 1 = edit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EDIT_THRESHOLD = 0.5  # a mask value above this means "edit here"


def binarize(mask: torch.Tensor, threshold: float = EDIT_THRESHOLD) -> torch.Tensor:
    return (mask > threshold).to(torch.float32)


def _running_max(x: torch.Tensor, px: int, dim: int) -> torch.Tensor:
    """Max over a window of 2*px+1 along ``dim``, as max_pool's padding would give, in time independent
    of ``px`` (van Herk / Gil-Werman: prefix and suffix maxima within blocks of the window's length)."""
    k = 2 * px + 1
    x = x.movedim(dim, -1)
    length = x.shape[-1]
    total = -(-(length + 2 * px) // k) * k
    padded = F.pad(x, (px, total - length - px), value=float("-inf"))
    blocks = padded.unflatten(-1, (total // k, k))
    prefix = blocks.cummax(-1).values.flatten(-2)
    suffix = blocks.flip(-1).cummax(-1).values.flip(-1).flatten(-2)
    out = torch.maximum(suffix[..., :length], prefix[..., k - 1 : k - 1 + length])
    return out.movedim(-1, dim)


def _box_sum(x: torch.Tensor, px: int, dim: int) -> torch.Tensor:
    """Sum over a window of 2*px+1 along ``dim`` (zeros beyond the border) from a running sum, in time
    independent of ``px``; float64 keeps sums of a 0/1 mask exact integers."""
    x = x.movedim(dim, -1).double()
    running = F.pad(x, (px + 1, px)).cumsum(-1)
    length = x.shape[-1]
    out = running[..., 2 * px + 1 : 2 * px + 1 + length] - running[..., :length]
    return out.movedim(-1, dim)


def _box_count(length: int, px: int, device) -> torch.Tensor:
    i = torch.arange(length, device=device)
    return ((i + px).clamp(max=length - 1) - (i - px).clamp(min=0) + 1).double()


def box_mean(x: torch.Tensor, px: int) -> torch.Tensor:
    """``avg_pool2d(x, 2*px+1, stride 1, padding px, count_include_pad=False)`` in time independent of
    ``px``; bit-identical to it on 0/1 masks (exact integer sums, one float32 division)."""
    h, w = x.shape[-2:]
    sums = _box_sum(_box_sum(x, px, -1), px, -2).float()
    count = (_box_count(h, px, x.device)[:, None] * _box_count(w, px, x.device)[None, :]).float()
    return (sums / count).to(x.dtype)


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Grow by ``px`` pixels (square neighbourhood); exact, no blur, and as fast at 500 px as at 5."""
    px = int(px)
    if px <= 0:
        return mask
    return _running_max(_running_max(mask, px, -1), px, -2)


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
    # Averaging over the pixels inside the image only keeps its borders at full weight.
    soft = box_mean(core, px)
    thin = (mask > 0) & (soft == 0)
    if thin.any():  # strokes thinner than 2*px: blur the mask itself, then keep it inside the mask
        soft = torch.where(thin, box_mean(mask, px), soft)
    return torch.where(mask > 0, soft, torch.zeros_like(soft))
