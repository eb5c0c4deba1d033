"""One edit at any image size: crop a context box, sample at the model's size, paste back.

The ADM works at 256x256 while photos do not, and squashing a photo to a square would distort
what CLIP sees. So the mask's context box is cut out, resized (aspect kept) to the model's
resolution, edited, resized back, and only the masked area is pasted into the caller's own image.
The paste happens in the caller's 0..1 values with ``torch.where``, so a pixel outside the
(dilated, feathered) mask is the very float passed in, not a value that went through a [-1,1]
round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import masks, region
from ..errors import InputError, no_check
from .sampler import SamplerSettings, StepCallback, sample


@dataclass(frozen=True)
class RegionSettings:
    dilate: int = 0  # px at full resolution: grow the edit area before sampling
    feather: int = 0  # px: soften the final paste inward, so no pixel outside the edit area changes
    margin: float = 0.25  # context around the mask's box, as a fraction of the box size


def prepare_masks(mask: torch.Tensor, settings: RegionSettings, check=no_check) -> tuple[torch.Tensor, torch.Tensor]:
    """(edit, paste): the binary area the sampler may change, and the soft paste weights inside it.
    ``check`` runs between phases (each about a second on a 24 MP mask) so Cancel is heard."""
    check()
    edit = masks.dilate(masks.binarize(mask), settings.dilate)
    check()
    paste = masks.feather(edit, settings.feather) if settings.feather > 0 else edit
    check()
    return edit, paste


def edit(
    model,
    image: torch.Tensor,
    mask: torch.Tensor,
    guidance,
    sampler: SamplerSettings,
    seeds: list[int],
    region_settings: RegionSettings = RegionSettings(),
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
    check=no_check,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit every image of ``image`` ([B,3,H,W] in 0..1) inside ``mask`` ([B|1,1,H,W]; values above
    ``masks.EDIT_THRESHOLD`` are edited).

    Returns (images [B*len(seeds),3,H,W] in 0..1 on the CPU, paste weights [B*len(seeds),1,H,W]),
    image-major: all samples of the first image, then of the second. Where the paste weight is 0
    the result is ``image``'s own value, bit for bit.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise InputError(f"image must be [B,3,H,W] in 0..1, got {tuple(image.shape)}.")
    fits = mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[-2:] == image.shape[-2:]
    if not fits or mask.shape[0] not in (1, image.shape[0]):
        raise InputError(
            f"mask must be [1 or B,1,H,W] matching the image {tuple(image.shape)}, got {tuple(mask.shape)}."
        )
    outputs, paste_masks = [], []
    for b in range(image.shape[0]):
        original = image[b : b + 1]
        edit_mask, paste = prepare_masks(mask[b if mask.shape[0] > 1 else 0][None], region_settings, check)
        box = region.context_box(edit_mask, region_settings.margin)
        size = region.model_input_size(box, model.image_size, model.config.size_multiple)
        source = region.crop_resize(original * 2 - 1, box, size).to(device)
        small_mask = (region.crop_resize(edit_mask, box, size, pad_mode="constant") > 0).float().to(device)
        edited = sample(model, source, small_mask, guidance, sampler, seeds, callback=callback)
        if not sampler.enforce_background:  # show everything the sampler did to the context box
            paste = torch.zeros_like(paste)
            paste[..., box.slices[0], box.slices[1]] = 1
        edited01 = edited.float().add(1).div(2).clamp(0, 1).cpu()
        outputs.append(region.paste_back(original, edited01, box, paste))
        paste_masks.append(paste.expand(len(seeds), -1, -1, -1))
    return torch.cat(outputs), torch.cat(paste_masks)


def crop_to_mask(images: torch.Tensor, mask: torch.Tensor, margin: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N,3,H,W] and masks [N|1,1,H,W] cut to the context box of all masks together, so a
    small edit in a large photo fills CLIP's view when it is scored."""
    union = (mask > 0).any(dim=0, keepdim=True).float()
    box = region.context_box(union, margin)
    return region.crop(images, box), region.crop(mask, box)
