"""Any image size for the latent path: a context box at the model's resolution, and back.

SD1.x works best near 512 px (SDXL 1024), in sizes its VAE and UNet accept (multiples of 8; 16 for
Flux). A photo of any size is cut to a box around the mask with some context, scaled (aspect kept)
so its short side is the model's resolution and padded to the multiple; the user's own encoder,
sampler and decoder run on that crop, and ``stitch`` pastes only the masked area back into the
caller's *original* values, so every pixel outside the mask is the very float passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import masks, region
from .errors import InputError


@dataclass
class LatentCrop:
    """What the stitch needs: the originals, the box, and the model-size canvas."""

    image: torch.Tensor  # [B,3,H,W] in 0..1, the caller's own values
    mask: torch.Tensor  # [B|1,1,H,W] binary edit mask at full size
    box: region.Box
    size: tuple[int, int]  # model input (h, w) in pixels


def crop_for_model(image: torch.Tensor, mask: torch.Tensor, resolution: int, multiple: int, margin: float,
                   dilate: int = 0) -> tuple[torch.Tensor, torch.Tensor, LatentCrop]:
    """``image`` [B,3,H,W] in 0..1, ``mask`` [B|1,1,H,W] (any value above 0 edits) ->
    (crop [B,3,h,w] in 0..1, binary crop mask [B|1,1,h,w], LatentCrop)."""
    if resolution < multiple or resolution % multiple:
        raise InputError(f"resolution {resolution} must be a multiple of {multiple} (the model's size step).")
    edit = masks.dilate(masks.binarize(mask, 0.0), int(dilate))
    box = region.context_box(edit, margin)
    h, w = region.model_input_size(box, resolution, multiple)
    # the short side must be a multiple too
    size = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    crop_img = region.crop_resize(image, box, size).clamp(0, 1)
    # any coverage counts: a thin stroke must not vanish in the downscale
    crop_mask = (region.crop_resize(edit, box, size, pad_mode="constant") > 0).float()
    return crop_img, crop_mask, LatentCrop(image, edit, box, size)


def stitch(crop: LatentCrop, edited: torch.Tensor, feather: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Edited crops [N,3,h,w] in 0..1 (N = images x samples, image-major) -> full images [N,3,H,W]
    and the paste weights [N,1,H,W]; where a weight is 0 the value is the original's, bit for bit."""
    b, n = crop.image.shape[0], edited.shape[0]
    if tuple(edited.shape[-2:]) != tuple(crop.size):
        raise InputError(
            f"images are {edited.shape[-1]}x{edited.shape[-2]} but the crop is {crop.size[1]}x{crop.size[0]}: connect "
            "the decoded result of the latent made from this crop."
        )
    if n % b:
        raise InputError(f"images has a batch of {n}, not a multiple of the {b} cropped image(s).")
    per = n // b
    edit_mask = crop.mask if crop.mask.shape[0] == b else crop.mask.expand(b, -1, -1, -1)
    weights = masks.feather(edit_mask, int(feather)) if feather > 0 else edit_mask
    outs, ws = [], []
    for i in range(n):
        k = i // per
        outs.append(region.paste_back(crop.image[k : k + 1], edited[i : i + 1], crop.box, weights[k : k + 1]))
        ws.append(weights[k : k + 1])
    return torch.cat(outs), torch.cat(ws)


def latent_pixel_mask(mask: torch.Tensor, latent_shape, batch: int) -> tuple[torch.Tensor, int]:
    """Pixel mask [B|1,1,H,W] for a latent [B,C,h,w] -> (its part the latent covers, [B|1,1,H',W'],
    the downscale factor).

    The mask must be at the size the latent was encoded from (a multiple of the latent's size, up to
    the few pixels an encoder drops to reach that multiple; those are cut evenly as ComfyUI's
    VAEEncode does)."""
    if len(latent_shape) != 4:
        raise InputError(f"latent must be an image latent [batch, channels, height, width]; got {tuple(latent_shape)}.")
    h, w = latent_shape[-2:]
    H, W = mask.shape[-2:]
    f = H // h
    if f < 1 or W // w != f or H - f * h >= f or W - f * w >= f:
        raise InputError(
            f"mask is {W}x{H} px but the latent is {w}x{h} cells: the mask must be drawn on the image the latent was "
            "encoded from (use the Blended Latent Crop's image and mask outputs for VAEEncode and this sampler)."
        )
    if mask.shape[0] not in (1, batch):
        raise InputError(
            f"mask has a batch of {mask.shape[0]} for {batch} latent(s): give one mask, or one per latent."
        )
    top, left = (H - f * h) // 2, (W - f * w) // 2
    m = mask[..., top : top + f * h, left : left + f * w].float().clamp(0, 1)
    if not (m > 0).any():
        raise InputError("mask is empty: paint the area to edit (white = edit; LoadImage's MASK is 1 - alpha).")
    return m, f
