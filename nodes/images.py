"""Between ComfyUI's IMAGE/MASK tensors and the library's, with the checks users trip over.

ComfyUI passes IMAGE as ``[B,H,W,C]`` in 0..1 and MASK as ``[B,H,W]`` (or ``[H,W]``) in 0..1; the
library wants ``[B,3,H,W]`` (in 0..1 where the caller's own values must survive, else [-1,1]) and
``[B,1,H,W]``. These are the only layout conversions in the pack. A mask drawn on another image, or an
empty one, is the most common mistake, so it is caught here with a message that says what to do
instead of failing deep inside a resize.
"""

from __future__ import annotations

import torch

from ..blended.errors import InputError


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{name} must be a ComfyUI IMAGE [batch, height, width, channels]; got {shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise InputError(f"{name} is empty ({tuple(image.shape)}).")
    if not torch.isfinite(image).all():
        raise InputError(f"{name} contains NaN or infinite values; check the node that made it.")
    return image


def to_rgb01(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """IMAGE [B,H,W,C] in 0..1 -> [B,3,H,W] in 0..1 with the very same values (a float32 view where
    the IMAGE is float32); alpha is dropped, grey is repeated."""
    image = check_image(image, name).float()
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:-1], 3)
    return image[..., :3].movedim(-1, 1)


def to_library_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """IMAGE [B,H,W,C] in 0..1 -> [B,3,H,W] in [-1,1]; alpha is dropped, grey is repeated."""
    return to_rgb01(image, name).mul(2).sub(1)


def to_comfy_image(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in 0..1 -> IMAGE [N,H,W,3] (values copied as they are)."""
    return x.movedim(1, -1).contiguous()


def to_comfy_mask(x: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] -> MASK [N,H,W]."""
    return x[:, 0].contiguous()


def mask_batch(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """MASK [H,W] or [B,H,W] -> [B,1,H,W] float in 0..1, after the shape and value checks."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"{name} must be a ComfyUI MASK [batch, height, width]; got {shape}.")
    if mask.dim() == 2:
        mask = mask[None]
    if mask.numel() and not torch.isfinite(mask).all():
        raise InputError(f"{name} contains NaN or infinite values; a mask must hold numbers from 0 to 1. "
                         "Check the node that made it.")
    return mask.float().clamp(0, 1)[:, None]


def to_library_mask(mask: torch.Tensor, image: torch.Tensor, name: str = "mask",
                    threshold: float | None = None) -> torch.Tensor:
    """MASK [H,W] or [B,H,W] -> [B,1,H,W] float, checked against IMAGE [B,H,W,C]. With ``threshold``
    (the sampler's edit mask) a mask with nothing above it is reported as too faint; soft masks such
    as the sampler's paste weights are fine for ranking and evaluation."""
    mask = mask_batch(mask, name)
    # Emptiness first: LoadImage gives an image without alpha (JPEG, RGB or grey PNG) an empty 64x64
    # mask, and "nothing is painted" is the problem to report then, not the size.
    strongest = float(mask.max()) if mask.numel() else 0.0
    if strongest <= 0:
        raise InputError(
            f"{name} is empty: nothing is painted for editing. LoadImage takes the mask from the image's "
            "transparency, so an image without alpha (JPEG, RGB or grey PNG) gives an empty mask: right-click "
            "LoadImage > Open in MaskEditor and paint the area to edit, or erase it to transparent in an image "
            "editor and save as PNG. White (1) = edit; for background replacement invert the subject's mask "
            "with InvertMask."
        )
    if threshold is not None and strongest <= threshold:
        raise InputError(
            f"{name} is too faint: its strongest value is {strongest:.2f}, and only values above "
            f"{threshold} count as 'edit here'. Paint the mask at full opacity, or raise it with a "
            f"threshold node (e.g. ThresholdMask with a value below {strongest:.2f})."
        )
    h, w = image.shape[1:3]
    if tuple(mask.shape[-2:]) != (h, w):
        raise InputError(
            f"{name} is {mask.shape[-1]}x{mask.shape[-2]} pixels but the image is {w}x{h}: the mask must be drawn "
            "on this image. Paint it in the image's mask editor (LoadImage's MASK output), or resize the "
            "mask to the image's size first."
        )
    if mask.shape[0] not in (1, image.shape[0]):
        raise InputError(
            f"{name} has a batch of {mask.shape[0]} for {image.shape[0]} image(s): give one mask, or one per image."
        )
    return mask


def preview(x0: torch.Tensor, index: int = 0):
    """A PIL image of one predicted x̂0 for ComfyUI's progress preview."""
    from PIL import Image

    img = x0[index].detach().float().add(1).mul(127.5).clamp(0, 255).round().to(torch.uint8)
    return Image.fromarray(img.movedim(0, -1).cpu().numpy())
