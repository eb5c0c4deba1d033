"""The latent path's ComfyUI-free parts: crop at the model's resolution and multiple, stitch back
with the caller's own values outside the mask, the mask-to-latent size check, the exact paste."""

from __future__ import annotations

import pytest
import torch

from blended import masks
from blended.errors import InputError
from blended.latent.reconstruct import ReconstructSettings, paste_figures, report_line
from blended.paste import paste
from tests.support.comfy_layout import crop_for_model, latent_pixel_mask, stitch


def comfy_image(h, w, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g).float() / 255


def test_crop_is_at_the_models_resolution_in_its_multiple_with_aspect_kept():
    image = comfy_image(300, 700)
    mask = torch.zeros(1, 300, 700)
    mask[:, 100:140, 200:400] = 1  # wide mask: a wide box
    for multiple in (8, 16):
        crop_img, crop_mask, crop = crop_for_model(image, mask, 512, multiple, 0.25)
        h, w = crop_img.shape[1:3]
        assert min(h, w) == 512 and h % multiple == 0 and w % multiple == 0
        assert crop.size == (h, w) and crop_mask.shape == (1, h, w)
        assert set(crop_mask.unique().tolist()) <= {0.0, 1.0}
        box_aspect = crop.box.width / crop.box.height
        assert abs(box_aspect - w / h) < 0.05 or w / h > box_aspect  # padding only adds, never squashes


def test_thin_stroke_survives_the_crop():
    image = comfy_image(1000, 1000)
    mask = torch.zeros(1, 1000, 1000)
    mask[:, 500, 100:900] = 1  # 1 px at 1000 px, scaled down ~2x: must not vanish
    _, crop_mask, _ = crop_for_model(image, mask, 512, 8, 0.1)
    assert crop_mask.sum() > 0


def test_stitch_keeps_every_pixel_outside_the_mask_bit_identical():
    image = comfy_image(90, 120, b=2)
    mask = torch.zeros(1, 90, 120)
    mask[:, 30:60, 40:80] = 1
    crop_img, _, crop = crop_for_model(image, mask, 64, 8, 0.25)
    edited = torch.rand(4, *crop_img.shape[1:])  # 2 samples per image
    full, weights = stitch(crop, edited, feather=3)
    assert full.shape == (4, 90, 120, 3) and weights.shape == (4, 90, 120)
    for i in range(4):
        out = (mask[0] == 0)
        assert torch.equal(full[i][out], image[i // 2][out])
        assert not torch.equal(full[i][~out], image[i // 2][~out])
    with pytest.raises(InputError, match="crop is"):
        stitch(crop, torch.rand(1, 32, 32, 3))
    with pytest.raises(InputError, match="multiple"):
        stitch(crop, torch.rand(3, *crop_img.shape[1:]))


@pytest.mark.parametrize("mode", ["exact paste", "feather", "colour match", "gradient domain"])
def test_stitch_seam_modes_keep_the_outside_and_fix_an_offset(mode):
    from blended.metrics import seam_score

    image = torch.full((1, 90, 120, 3), 0.4) + 0.1 * torch.linspace(0, 1, 120)[None, None, :, None]
    mask = torch.zeros(1, 90, 120)
    mask[:, 30:60, 40:80] = 1
    crop_img, _, crop = crop_for_model(image, mask, 64, 8, 0.25)
    full, _ = stitch(crop, (crop_img + 0.2).clamp(0, 1), seam_mode=mode)
    out = mask[0] == 0
    assert torch.equal(full[0][out], image[0][out])
    score = seam_score(full.permute(0, 3, 1, 2), mask[:, None])
    plain = seam_score(stitch(crop, (crop_img + 0.2).clamp(0, 1))[0].permute(0, 3, 1, 2), mask[:, None])
    if mode in ("colour match", "gradient domain"):
        assert score < (0.1 if mode == "gradient domain" else 0.5) * plain, (score, plain)
    with pytest.raises(InputError, match="seam"):
        stitch(crop, crop_img, seam_mode="blur")


def test_latent_pixel_mask_checks_sizes():
    mask = torch.zeros(1, 64, 64)
    mask[:, 10, 10] = 1
    m, f = latent_pixel_mask(mask, (2, 4, 8, 8), 2)
    assert f == 8 and m.shape == (1, 1, 64, 64)
    m, f = latent_pixel_mask(torch.ones(1, 68, 70), (1, 4, 8, 8), 1)  # VAEEncode-style leftovers cut evenly
    assert m.shape == (1, 1, 64, 64) and f == 8
    with pytest.raises(InputError, match="must be drawn on the image the latent was encoded from"):
        latent_pixel_mask(torch.ones(1, 64, 32), (1, 4, 8, 8), 1)
    with pytest.raises(InputError, match="empty"):
        latent_pixel_mask(torch.zeros(1, 64, 64), (1, 4, 8, 8), 1)
    with pytest.raises(InputError, match="batch of 3"):
        latent_pixel_mask(torch.ones(3, 64, 64), (2, 4, 8, 8), 2)
    with pytest.raises(InputError, match="image latent"):
        latent_pixel_mask(torch.ones(1, 64, 64), (4, 8, 8), 1)


def test_exact_paste_and_its_report():
    """The reconstruction's paste (``paste.paste`` with the inward ``masks.feather``) and its figures."""
    source = comfy_image(32, 32).movedim(-1, 1)
    edited = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    w = masks.feather(mask, 3)
    out = paste(edited, source, w)
    max_out, max_band = paste_figures(out, source, w)
    assert torch.equal(out[(w == 0).expand_as(out)], source[(w == 0).expand_as(source)])
    assert float(max_out[0]) == 0 and float(max_band[0]) > 0
    hard = paste(edited, source, mask)
    _, band0 = paste_figures(hard, source, mask)
    assert float(band0[0]) == 0 and torch.equal(hard[(mask > 0).expand_as(hard)], edited[(mask > 0).expand_as(edited)])
    line = report_line(0, {"max_outside": 0.0, "max_band": 0.1, "plain_outside": 0.2, "tuned_outside": 0.02,
                           "inside_change": 0.05})
    assert "outside the mask max |diff| 0 (0 = exact)" in line


def test_reconstruct_settings_are_checked():
    with pytest.raises(InputError, match="iterations"):
        ReconstructSettings(iterations=-1)
    with pytest.raises(InputError, match="background_weight"):
        ReconstructSettings(background_weight=-1)


def test_reconstruct_tunes_a_private_copy_only():
    from blended.latent.reconstruct import private_decoder, reconstruct

    torch.manual_seed(0)
    shared = torch.nn.Sequential(torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.SiLU(),
                                 torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(32, 3, 3, padding=1))
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    z = torch.randn(1, 4, 8, 8)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    source = torch.stack([x, y, x * y])[None] * 0.8
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    twin = private_decoder(shared, "cpu")
    tuned, stats = reconstruct(twin, z, source, mask, ReconstructSettings(iterations=150, learning_rate=1e-2))
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())
    assert stats["tuned_outside"] < stats["plain_outside"] / 3
    assert tuned.shape == source.shape and tuned.abs().max() <= 1
    with torch.inference_mode():  # nodes run (and ComfyUI loads models) under inference mode
        loaded = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.Upsample(scale_factor=2))
        loaded.load_state_dict({"0.weight": shared[0].weight[:3].clone(), "0.bias": shared[0].bias[:3].clone()})
        assert loaded[0].weight.is_inference()
        twin2 = private_decoder(loaded, "cpu")
        _, stats2 = reconstruct(twin2, z, source, mask, ReconstructSettings(iterations=5, learning_rate=1e-2))
    assert stats2["tuned_outside"] < stats2["plain_outside"]
