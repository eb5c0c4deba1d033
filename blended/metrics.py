"""Edit metrics: is the background untouched, does the edit match the text, do samples differ?

Background numbers skip a band around the mask: a feathered paste and the box resize legitimately
touch pixels next to the mask, and counting them would blur the one question that matters there
(did anything far from the edit change?). The seam score looks exactly there instead: is the
step across the mask's border larger than the image's own variation on either side of it? The
CLIP score should use a *different* CLIP than the guidance one, since the guiding model has been
optimised against and would flatter the result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment import resize_for_clip
from .clip_model import ClipBundle
from .errors import InputError
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


def _seam_one_side(images: torch.Tensor, inside: torch.Tensor, band: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seam excess where the mask's inside is at column c and its outside at c + 1 (summed, counted)."""
    width = images.shape[-1]
    if width - 2 * band <= 2 * band - 1:  # no room for two bands on each side (a tiny image)
        zero = images.new_zeros(images.shape[0])
        return zero, zero
    cols = torch.arange(2 * band - 1, width - 2 * band, device=images.device)
    band_mean = F.avg_pool2d(images, (1, band), stride=1)  # [..., x]: mean of columns x .. x+band-1
    coverage = F.avg_pool2d(inside, (1, 2 * band), stride=1)  # [..., x]: share of inside in x .. x+2band-1
    in1, in2 = band_mean[..., cols - band + 1], band_mean[..., cols - 2 * band + 1]
    out1, out2 = band_mean[..., cols + 1], band_mean[..., cols + band + 1]
    valid = (coverage[..., cols - 2 * band + 1] == 1) & (coverage[..., cols + 1] == 0)
    jump = (in1 - out1).abs().mean(1, keepdim=True)
    within = ((in1 - in2).abs().mean(1, keepdim=True) + (out1 - out2).abs().mean(1, keepdim=True)) / 2
    excess = (jump - within).clamp(min=0) * valid
    return excess.flatten(1).sum(1), valid.flatten(1).sum(1).to(images.dtype)


def seam_score(images: torch.Tensor, mask: torch.Tensor, band_px: int = 2) -> torch.Tensor:
    """How much the step across the mask's border exceeds the variation on either side of it: [N].

    For each border pixel, the mean colour of a ``band_px`` band just inside is compared with a band
    just outside (the jump), and each band with the next band further in or out (the image's own
    variation there). The score is the mean of max(0, jump - variation), in 0..1 colour units, over
    the border in all four directions. Content that continues the background smoothly scores 0
    whether it copies the background or not (a ramp, a texture, a new object that blends in), so
    the score does not reward copying; a pasted-in discontinuity scores its height. Images in
    [0,1] [N,3,H,W], mask [N|1,1,H,W] (> 0 = edited). 0 where the border has no room for the bands.
    """
    band = int(band_px)
    if band < 1:
        raise InputError(f"seam band_px {band_px}: use 1 or more pixels.")
    images = images.float()
    inside = (mask > 0).to(images.dtype).expand(images.shape[0], 1, *images.shape[-2:])
    total = images.new_zeros(images.shape[0])
    count = images.new_zeros(images.shape[0])
    for flip, transpose in ((False, False), (True, False), (False, True), (True, True)):
        x, m = images, inside
        if transpose:
            x, m = x.transpose(-1, -2), m.transpose(-1, -2)
        if flip:
            x, m = x.flip(-1), m.flip(-1)
        s, c = _seam_one_side(x, m, band)
        total, count = total + s, count + c
    return total / count.clamp(min=1)


def seam_window(mask: torch.Tensor, band_px: int = 2) -> tuple[slice, slice] | None:
    """Rows/columns of the box of ``mask`` [1,1,H,W] padded by 4 bands + 1 px (None: empty mask).
    ``seam_score`` reads two bands on either side of a border pixel and skips the two bands along
    the image's edge; with this margin the window's own edge never cuts a counted border pixel, so
    the score on the window is the whole image's (to float rounding) at the cost of the box only."""
    ys, xs = torch.nonzero(mask.reshape(mask.shape[-2:]) > 0, as_tuple=True)
    if ys.numel() == 0:
        return None
    pad = 4 * int(band_px) + 1
    h, w = mask.shape[-2:]
    return (slice(max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h)),
            slice(max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)))


def seam_change(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor,
                band_px: int = 2) -> tuple[list[float], list[float]]:
    """The seam score of a treatment, per image: ``seam_score`` of ``before`` (the exact paste) and of
    ``after`` (the result), images [N,3,H,W] clamped to 0..1, mask [N|1,1,H,W], each on its mask's
    ``seam_window`` (0 for an empty mask). The stitch's report, the reconstruction's report and the
    seam benchmark all score here, so their before -> after figures are one measurement.
    ``after is before`` (a treatment that changed nothing) is scored once."""
    scores_before, scores_after = [], []
    for i in range(before.shape[0]):
        m = mask[i if mask.shape[0] > 1 else 0][None]
        window = seam_window(m, band_px)
        pair = (before[i : i + 1],) if after is before else (before[i : i + 1], after[i : i + 1])
        scores = [_windowed_seam(x, m, window, band_px) for x in pair]
        scores_before.append(scores[0])
        scores_after.append(scores[-1])
    return scores_before, scores_after


def _windowed_seam(image: torch.Tensor, mask: torch.Tensor, window, band_px: int) -> float:
    if window is None:
        return 0.0
    rows, cols = window
    return float(seam_score(image[..., rows, cols].clamp(0, 1), mask[..., rows, cols], band_px)[0])


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
    seam_px: int = 2,
) -> dict[str, float | list[float]]:
    """All metrics for a batch of edits [N,3,H,W] of one source [1,3,H,W] in [0,1], mask [1,1,H,W].

    ``seam`` (``seam_score``, bands of ``seam_px``) is measured at the mask's own border: give the
    area that was actually pasted (the sampler's mask output) to measure exactly where the seam is.
    """
    psnr = background_psnr(edited, source, mask, band_px)
    out: dict[str, float | list[float]] = {"background_psnr": psnr.tolist(), "band_px": band_px}
    out["seam"] = seam_score(edited, mask, seam_px).tolist()
    if lpips is not None:
        out["background_lpips"] = background_lpips(edited, source, mask, lpips, band_px).tolist()
        out["diversity_lpips"] = diversity(edited, lpips)
    if clip is not None:
        out["clip_score"] = clip_score_in_box(edited, mask, prompt, clip).tolist()
    return out
