"""Edit metrics: is the background untouched, does the edit match the text, do samples differ?

Background numbers skip a band around the mask: a feathered paste and the box resize legitimately
touch pixels next to the mask, and counting them would blur the one question that matters there
(did anything far from the edit change?). The CLIP score should use a *different* CLIP than the
guidance one, since the guiding model has been optimised against and would flatter the result.
"""

from __future__ import annotations

import math

import torch

from .augment import resize_for_clip
from .clip_model import ClipBundle
from .masks import dilate
from .region import context_box, crop


def _outside(mask: torch.Tensor, band_px: int) -> torch.Tensor:
    return dilate((mask > 0).float(), band_px) == 0


def background_psnr(edited: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, band_px: int = 0) -> torch.Tensor:
    """Per-sample PSNR (dB) outside the mask for images in [0,1]; inf when identical there."""
    keep = _outside(mask, band_px).expand_as(edited)
    err = (edited - source.expand_as(edited)).pow(2) * keep
    mse = err.flatten(1).sum(1) / keep.flatten(1).sum(1).clamp(min=1)
    return torch.where(mse == 0, torch.full_like(mse, math.inf), -10 * torch.log10(mse))


def background_lpips(
    edited: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, lpips: torch.nn.Module, band_px: int = 0
) -> torch.Tensor:
    """LPIPS with the mask (plus band) blanked to grey in both images, inputs in [0,1]."""
    keep = _outside(mask, band_px).to(edited.dtype)
    a = (edited * 2 - 1) * keep
    b = (source.expand_as(edited) * 2 - 1) * keep
    with torch.no_grad():
        return lpips(a, b).view(-1)


def clip_score_in_box(images: torch.Tensor, mask: torch.Tensor, prompt: str, clip: ClipBundle) -> torch.Tensor:
    """100 x cosine similarity between the text and the crop around the mask, images in [0,1]."""
    box = context_box(mask, margin=0.1)
    views = resize_for_clip(crop(images, box), clip.image_size).to(clip.device)
    with torch.no_grad():
        img = torch.nn.functional.normalize(clip.encode_image(views), dim=-1)
        txt = torch.nn.functional.normalize(clip.encode_text([prompt]), dim=-1)
    return 100 * (img @ txt.T).view(-1).cpu()


def diversity(images: torch.Tensor, lpips: torch.nn.Module) -> float:
    """Mean pairwise LPIPS between samples (0 for a single sample), images in [0,1]."""
    n = images.shape[0]
    if n < 2:
        return 0.0
    i, j = torch.triu_indices(n, n, offset=1)
    with torch.no_grad():
        return lpips(images[i] * 2 - 1, images[j] * 2 - 1).mean().item()


def evaluate(
    edited: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    prompt: str,
    clip: ClipBundle | None = None,
    lpips: torch.nn.Module | None = None,
    band_px: int = 4,
) -> dict[str, float | list[float]]:
    """All metrics for a batch of edits [N,3,H,W] of one source [1,3,H,W] in [0,1], mask [1,1,H,W]."""
    psnr = background_psnr(edited, source, mask, band_px)
    out: dict[str, float | list[float]] = {"background_psnr": psnr.tolist(), "band_px": band_px}
    if lpips is not None:
        out["background_lpips"] = background_lpips(edited, source, mask, lpips, band_px).tolist()
        out["diversity_lpips"] = diversity(edited, lpips)
    if clip is not None:
        out["clip_score"] = clip_score_in_box(edited, mask, prompt, clip).tolist()
    return out
