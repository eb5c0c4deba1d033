"""Any image size: edit a context box around the mask at the model's resolution.

The ADM sees 256x256. Squashing a whole 4:3 photo into that square (as the reference code does)
distorts what the UNet and CLIP see, and wastes resolution on background. Instead a box around the
mask is cut out with some context, scaled (aspect kept exactly) so its short side is the model's
size, padded to a size the UNet accepts, edited, and scaled back; only the masked pixels are
pasted into the original. A box that cannot be square (a mask along the long side of a
panorama, an outpainting canvas) gives a non-square model input, which the UNet handles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import EMPTY_MASK, InputError
from .paste import paste


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def _fit(start: float, length: int, limit: int) -> int:
    """Shift a span of ``length`` starting near ``start`` so it lies inside [0, limit)."""
    return int(min(max(round(start), 0), limit - length))


def context_box(mask: torch.Tensor, margin: float = 0.25, min_size: int = 0) -> Box:
    """Square (when the image allows) box around all masks' bounding box, grown by ``margin`` of its
    size on each side and to at least ``min_size`` (so small masks are not upscaled into blur)."""
    H, W = mask.shape[-2:]
    hit = (mask.reshape(-1, H, W) > 0).any(0)
    if not hit.any():
        raise InputError(EMPTY_MASK)
    rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    top, bottom, left, right = rows[0].item(), rows[-1].item() + 1, cols[0].item(), cols[-1].item() + 1
    side = max(bottom - top, right - left)
    side = max(math.ceil(side * (1 + 2 * margin)), min_size)
    h, w = min(side, H), min(side, W)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return Box(_fit(cy - h / 2, h, H), _fit(cx - w / 2, w, W), h, w)


# The model input is at most this many times as long as it is wide: enough for panoramas and wide
# outpainting canvases; the memory planner then decides whether such a sample fits at all.
MAX_ASPECT = 16


def model_input_size(box: Box, model_size: int, multiple: int = 1) -> tuple[int, int]:
    """Short side = the model's size; long side rounded up to the UNet's multiple (padding fills it).

    The long side stops at MAX_ASPECT x the model's size: a 1x300 strip would otherwise ask for a
    256x76800 input (it got the server killed for memory). A box more elongated than that is scaled to fit the
    long side and padded across, so its short side gets fewer than ``model_size`` pixels."""
    short, long_ = sorted((box.height, box.width))
    long_px = math.ceil(min(model_size * long_ / short, MAX_ASPECT * model_size) / multiple) * multiple
    return (model_size, long_px) if box.height <= box.width else (long_px, model_size)


def content_size(box: Box, size: tuple[int, int]) -> tuple[int, int]:
    """The part of a model input of ``size`` that holds the box's pixels (the rest is padding)."""
    scale = min(size[0] / box.height, size[1] / box.width)
    return (min(size[0], max(1, round(box.height * scale))), min(size[1], max(1, round(box.width * scale))))


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    rows, cols = box.slices
    return x[..., rows, cols]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def crop_resize(x: torch.Tensor, box: Box, size: tuple[int, int], pad_mode: str = "replicate") -> torch.Tensor:
    """[B,C,H,W] -> the box scaled into ``size`` (aspect kept), right/bottom padded.

    Images pad by replication (plausible context for the UNet); masks should pad with
    ``"constant"`` zeros so the padding is never edited nor seen by CLIP.
    """
    ch, cw = content_size(box, size)
    scaled = _resize(crop(x, box).float(), (ch, cw))
    pad = (0, size[1] - cw, 0, size[0] - ch)
    return F.pad(scaled, pad, mode=pad_mode) if any(pad) else scaled


def resize_back(x: torch.Tensor, box: Box, full_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of crop_resize onto a zero canvas of ``full_size``; only the box is filled."""
    ch, cw = content_size(box, tuple(x.shape[-2:]))
    out = x.new_zeros(*x.shape[:-2], *full_size)
    rows, cols = box.slices
    out[..., rows, cols] = _resize(x[..., :ch, :cw], (box.height, box.width))
    return out


def paste_back(original: torch.Tensor, edited: torch.Tensor, box: Box, weights: torch.Tensor) -> torch.Tensor:
    """``edited`` (model-size crop) resized into ``original`` where ``weights`` > 0; elsewhere the
    original values, bit for bit (``paste.paste``). Images in 0..1: the antialiased resize back rounds
    a few ULPs past 1, so the pasted values are clamped to that range (an IMAGE stays within 0..1)."""
    return paste(resize_full(edited, box, original), original, weights, clamp=(0, 1))


def resize_full(edited: torch.Tensor, box: Box, original: torch.Tensor) -> torch.Tensor:
    """``edited`` (model-size crop) resized back into a zero canvas of ``original``'s size and dtype:
    the full-size edit that ``paste_back`` and the latent stitch's seam modes paste."""
    return resize_back(edited.to(original.dtype), box, tuple(original.shape[-2:]))
