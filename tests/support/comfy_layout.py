"""The library's paste-into-the-photo functions between ComfyUI's IMAGE/MASK, converted exactly as
the nodes convert them, so tests can state background bit-identity in the terms a user sees."""

from __future__ import annotations

from blended.latent.crop_stitch import LatentCrop
from blended.latent.crop_stitch import crop_for_model as library_crop
from blended.latent.crop_stitch import latent_pixel_mask as library_pixel_mask
from blended.latent.crop_stitch import stitch as library_stitch
from blended.masks import EDIT_THRESHOLD
from blended.pixel.edit import RegionSettings, edit
from blended_diffusion_pack.nodes.images import mask_batch, to_comfy_image, to_comfy_mask, to_library_mask, to_rgb01


def edit_image(model, image, mask, guidance, settings, seeds, region_settings=RegionSettings(), device="cpu"):
    """What BlendedSampler does around ``blended.pixel.edit.edit`` (devices and progress aside)."""
    edit_mask = to_library_mask(mask, image, threshold=EDIT_THRESHOLD)
    out, paste = edit(model, to_rgb01(image), edit_mask, guidance, settings, seeds, region_settings, device=device)
    return to_comfy_image(out), to_comfy_mask(paste)


def crop_for_model(image, mask, *args):
    img, m, crop = library_crop(to_rgb01(image), to_library_mask(mask, image), *args)
    return to_comfy_image(img), to_comfy_mask(m), crop


def stitch(crop: LatentCrop, edited, feather=0, seam_mode="exact paste"):
    full, weights = library_stitch(crop, to_rgb01(edited, "images"), feather, seam_mode=seam_mode)
    return to_comfy_image(full), to_comfy_mask(weights)


def latent_pixel_mask(mask, latent_shape, batch):
    return library_pixel_mask(mask_batch(mask), latent_shape, batch)
