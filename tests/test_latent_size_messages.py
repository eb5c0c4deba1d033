"""Size messages of the latent nodes name the real cause (issue 29): a crop that is not a multiple of
the VAE's cell (Blended Latent Crop's ``multiple`` at 8 for Flux.2's 16 px cells) is cut by
VAEEncode, and every later size check fails although the user wired the crop's own image and mask.
Each message that can meet that cut says so and names the multiple to set; other mismatches keep
their own advice. One test per message: the sampler's mask check, the stitch, the reconstruction."""

from __future__ import annotations

import pytest
import torch

from blended.errors import InputError
from blended.latent.crop_stitch import crop_for_model, latent_pixel_mask, stitch, vae_cut_cell
from blended.latent.decoder_tail import check_size

FLUX2_CELL = 16  # Flux.2's VAE: one latent cell per 16x16 px


def flux2_crop_at_multiple_8():
    """A 64x72 px crop (the crop's multiple left at 8) and what VAEEncode with 16 px cells makes of it."""
    image = torch.rand(1, 3, 60, 67, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 60, 67)
    mask[..., 20:40, :] = 1  # a mask across a short photo: the box is the whole photo, 60x67 px
    crop_image, crop_mask, crop = crop_for_model(image, mask, 64, 8, 0.1)  # short side 64: 64x72
    assert tuple(crop_image.shape[-2:]) == (64, 72) and crop.size == (64, 72)
    cells = (64 // FLUX2_CELL, 72 // FLUX2_CELL)  # ComfyUI's VAEEncode cuts to whole cells: 4x4
    return crop_image, crop_mask, crop, cells


@pytest.mark.parametrize("factor", [FLUX2_CELL, None])
def test_the_samplers_mask_check_names_the_crops_multiple(factor):
    """The sampler knows the model's cell (16 for Flux.2) or, for an unknown latent format, finds the
    cell that explains the sizes; either way the advice is the multiple, not another image."""
    _, crop_mask, _, (h, w) = flux2_crop_at_multiple_8()
    with pytest.raises(InputError) as err:
        latent_pixel_mask(crop_mask, (1, 128, h, w), 1, factor)
    text = str(err.value)
    assert text.startswith("mask is 72x64 px but the latent is 4x4 cells: the image is 72x64 px, not a multiple "
                           "of the VAE's 16 px cell, so VAEEncode dropped 8 px of its width.")
    assert "set the crop's multiple to 16" in text and "must be drawn on the image" not in text
    # a mask of another picture keeps its own advice
    with pytest.raises(InputError, match="must be drawn on the image the latent was encoded from"):
        latent_pixel_mask(torch.ones(1, 1, 64, 32), (1, 4, 8, 8), 1)
    with pytest.raises(InputError, match=r"the mask would need 1024x1024 px\): draw the mask"):
        latent_pixel_mask(torch.ones(1, 1, 512, 512), (1, 16, 128, 128), 1, 8)


def test_the_stitch_names_the_crops_multiple():
    """VAEDecode of the 4x4 cells gives 64x64 px for the 72x64 crop: the stitch says why."""
    _, _, crop, _ = flux2_crop_at_multiple_8()
    with pytest.raises(InputError) as err:
        stitch(crop, torch.rand(1, 3, 64, 64))
    assert str(err.value) == (
        "images are 64x64 but the crop is 72x64: the crop is 72x64 px, not a multiple of the VAE's 16 px cell, "
        "so VAEEncode dropped 8 px of its width. If it comes from Blended Latent Crop, set the crop's multiple to "
        "16 (or a multiple of 16; its tooltip lists each model's) and run the crop again; otherwise resize the "
        "image to a multiple of 16 px before VAEEncode.")
    with pytest.raises(InputError, match="but the crop is 72x64: connect the decoded result of the latent"):
        stitch(crop, torch.rand(1, 3, 32, 32))


def test_the_reconstructions_size_check_names_the_crops_multiple():
    with pytest.raises(InputError) as err:
        check_size((64, 64), (64, 72))
    text = str(err.value)
    assert text.startswith("the latent decodes to 64x64 px but the source image is 72x64: the source image is "
                           "72x64 px, not a multiple of the VAE's 16 px cell")
    assert "set the crop's multiple to 16" in text
    with pytest.raises(InputError, match="give the source \\(and mask\\) at the size the latent was encoded from"):
        check_size((64, 64), (128, 128))


def test_the_cell_that_explains_a_cut():
    assert vae_cut_cell((64, 72), (4, 4), cells=True) == 16
    assert vae_cut_cell((68, 70), (8, 8), cells=True) == 8  # SD's 8 px cells, a few px dropped
    assert vae_cut_cell((64, 64), (8, 8), cells=True) is None  # nothing was cut
    assert vae_cut_cell((64, 72), (4, 4), cells=True, factor=8) is None  # 8 px cells would give 8x9
    assert vae_cut_cell((1032, 1024), (1024, 1024), cells=False) == 16
    assert vae_cut_cell((64, 72), (32, 32), cells=False) is None
