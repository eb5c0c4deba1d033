"""The pack's ComfyUI-free parts: tensor conversion, the any-size edit, the headless runner's helpers.

The node classes themselves are exercised in the real engine (test_comfy_engine.py); what is
tested here is the arithmetic they rely on, at sizes and mask placements the engine tests do not
cover, fast.
"""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from blended.errors import InputError
from blended.guidance import ClipGuidance, Guidance, RangeLoss
from blended.pixel.edit import RegionSettings, crop_to_mask
from blended.pixel.sampler import SamplerSettings
from blended_diffusion_pack.nodes.images import (
    to_library_image,
    to_library_mask,
)
from scripts.engine.comfy_engine import compose_input, describe_rejection, set_inputs, write_model_paths
from tests.support.comfy_layout import edit_image

FAST = SamplerSettings(steps="4", skip_timesteps=1)


def comfy_image(h, w, b=1, seed=0):
    """An IMAGE whose values are exactly k/255, as LoadImage produces."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g).float() / 255


def box_mask(h, w, y0, y1, x0, x1, b=1):
    m = torch.zeros(b, h, w)
    m[:, y0:y1, x0:x1] = 1
    return m


@pytest.fixture(scope="module")
def guidance(tiny_clip):
    return Guidance((ClipGuidance(tiny_clip, "a red ball", weight=1000.0), RangeLoss(50.0)))


# --- images.py --------------------------------------------------------------------------------------


def test_image_round_trip_and_channels():
    img = comfy_image(5, 7)
    x = to_library_image(img)
    assert x.shape == (1, 3, 5, 7) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x.add(1).div(2).movedim(1, -1), img, atol=1e-6)
    rgba = torch.cat([img, torch.ones(1, 5, 7, 1)], -1)
    assert torch.equal(to_library_image(rgba), x)
    grey = img[..., :1]
    assert to_library_image(grey).shape == (1, 3, 5, 7)


def test_mask_checks_name_the_problem():
    img = comfy_image(8, 6)
    assert to_library_mask(box_mask(8, 6, 1, 3, 1, 3)[0], img).shape == (1, 1, 8, 6)  # [H,W] accepted
    with pytest.raises(InputError, match=r"mask is 4x4 pixels but the image is 6x8"):
        to_library_mask(box_mask(4, 4, 1, 2, 1, 2), img)
    with pytest.raises(InputError, match="mask is empty"):
        to_library_mask(torch.zeros(1, 8, 6), img)
    # LoadImage's 64x64 empty mask for an image without alpha: say nothing is painted, not the size
    with pytest.raises(InputError, match="nothing is painted.*without alpha.*MaskEditor"):
        to_library_mask(torch.zeros(1, 64, 64), img)
    with pytest.raises(InputError, match=r"too faint: its strongest value is 0\.40.*above 0\.5"):
        to_library_mask(box_mask(8, 6, 1, 3, 1, 3) * 0.4, img, threshold=0.5)
    assert to_library_mask(box_mask(8, 6, 1, 3, 1, 3) * 0.4, img).max() == 0.4  # soft weights, for ranking
    with pytest.raises(InputError, match="NaN"):
        to_library_mask(box_mask(8, 6, 1, 3, 1, 3) * float("nan"), img)
    with pytest.raises(InputError, match="batch of 3 for 2 image"):
        to_library_mask(box_mask(8, 6, 1, 3, 1, 3, b=3), comfy_image(8, 6, b=2))
    m = to_library_mask(box_mask(8, 6, 1, 3, 1, 3), img)[:, 0]
    assert m.shape == (1, 8, 6)


# --- edit.py ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "h, w, box",
    [
        (48, 64, (10, 30, 20, 50)),  # landscape, mask inside
        (40, 24, (0, 12, 0, 10)),  # portrait, mask in the corner: the context box hits the border
        (37, 53, (5, 36, 40, 53)),  # odd sizes, mask touching the right edge
        (16, 16, (0, 16, 0, 16)),  # the whole image
    ],
)
def test_edit_keeps_every_background_value(tiny_model, guidance, h, w, box):
    img = comfy_image(h, w)
    mask = box_mask(h, w, *box)
    out, paste = edit_image(tiny_model, img, mask, guidance, FAST, seeds=[3, 4])
    assert out.shape == (2, h, w, 3) and out.dtype == torch.float32
    assert paste.shape == (2, h, w)
    keep = mask[0] == 0
    assert torch.equal(out[:, keep], img[0][keep].expand(2, -1, -1))  # bit for bit
    assert (out[:, ~keep] != img[0][~keep]).any()  # and the inside was edited
    assert torch.equal(paste[0], mask[0])


def test_dilate_and_feather_stay_inside_the_grown_mask(tiny_model, guidance):
    img = comfy_image(48, 64)
    mask = box_mask(48, 64, 20, 28, 28, 36)
    out, paste = edit_image(
        tiny_model, img, mask, guidance, FAST, seeds=[0], region_settings=RegionSettings(dilate=3, feather=2)
    )
    grown = box_mask(48, 64, 17, 31, 25, 39)[0] > 0  # a 3 px dilation never reaches beyond this square
    assert torch.equal(out[0][~grown], img[0][~grown])
    assert (paste[0][mask[0] > 0] > 0).all()  # the painted area is always edited
    soft = (paste[0] > 0) & (paste[0] < 1)
    assert soft.any() and (paste[0][~grown] == 0).all()


def test_without_enforce_background_the_whole_context_box_is_returned(tiny_model, guidance):
    img, mask = comfy_image(48, 64), box_mask(48, 64, 20, 28, 28, 36)
    local = SamplerSettings(steps="4", skip_timesteps=1, mode="local", enforce_background=False)
    out, paste = edit_image(tiny_model, img, mask, guidance, local, seeds=[0],
                            region_settings=RegionSettings(margin=0.5))
    box = paste[0] > 0
    assert box.sum() == 16 * 16 and torch.equal(paste[0][20:28, 28:36], torch.ones(8, 8))  # 8 px grown by 50 %
    assert torch.equal(out[0][~box], img[0][~box])  # the model never saw beyond its box
    ring = box & (mask[0] == 0)
    assert (out[0][ring] != img[0][ring]).any()  # local mode moved background pixels inside the box


def test_samples_depend_on_their_seed_only(tiny_model, guidance):
    img, mask = comfy_image(24, 32), box_mask(24, 32, 4, 16, 8, 24)
    both, _ = edit_image(tiny_model, img, mask, guidance, FAST, seeds=[7, 8])
    alone, _ = edit_image(tiny_model, img, mask, guidance, FAST, seeds=[8])
    # Batched convolutions round differently from single ones (~5e-5 after 4 steps); a different
    # seed differs by ~0.5, and 1/255 is the smallest change a saved image can show.
    assert torch.allclose(both[1], alone[0], atol=1e-4)
    assert not torch.allclose(both[0], both[1], atol=0.05)


def test_image_batch_is_edited_image_major(tiny_model, guidance):
    imgs = torch.cat([comfy_image(24, 32, seed=1), comfy_image(24, 32, seed=2)])
    masks = torch.cat([box_mask(24, 32, 2, 10, 2, 10), box_mask(24, 32, 12, 22, 20, 30)])
    out, paste = edit_image(tiny_model, imgs, masks, guidance, FAST, seeds=[0, 1, 2])
    assert out.shape == (6, 24, 32, 3) and paste.shape == (6, 24, 32)
    for i in range(6):
        src, m = imgs[i // 3], masks[i // 3]
        assert torch.equal(out[i][m == 0], src[m == 0])
        assert torch.equal(paste[i], m)


def test_crop_to_mask_covers_the_mask():
    x = torch.rand(3, 3, 48, 64) * 2 - 1
    m = box_mask(48, 64, 30, 40, 50, 60)[:, None]
    cx, cm = crop_to_mask(x, m)
    assert cx.shape[0] == 3 and cm.shape[0] == 1 and cx.shape[-2:] == cm.shape[-2:]
    assert cx.shape[-1] < 64 and cx.shape[-2] < 48
    assert cm.sum() == m.sum()  # the whole mask is inside the crop


# --- scripts/engine/comfy_engine.py ------------------------------------------------------------------------


def test_compose_input_turns_white_mask_into_transparency(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    mask = np.zeros((12, 10), np.uint8)
    mask[2:5, 3:7] = 255
    Image.fromarray(rgb).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = np.array(Image.open(compose_input(tmp_path / "img.png", tmp_path / "mask.png", tmp_path / "in.png")))
    assert np.array_equal(out[..., :3], rgb)
    assert np.array_equal(out[..., 3], 255 - mask)  # LoadImage's MASK = 1 - alpha = the white area
    Image.fromarray(mask[:6]).save(tmp_path / "small.png")
    with pytest.raises(SystemExit, match="10x6 but --image is 10x12"):
        compose_input(tmp_path / "img.png", tmp_path / "small.png", tmp_path / "in2.png")
    Image.fromarray(np.zeros_like(mask)).save(tmp_path / "black.png")
    with pytest.raises(SystemExit, match="all black"):
        compose_input(tmp_path / "img.png", tmp_path / "black.png", tmp_path / "in3.png")
    with pytest.raises(SystemExit, match="no alpha channel"):
        compose_input(tmp_path / "img.png", None, tmp_path / "in4.png")


def test_graph_edits_reject_typos():
    graph = {"1": {"class_type": "BlendedSampler", "inputs": {"seed": 0, "steps": "100"}}}
    set_inputs(graph, "BlendedSampler", seed=5)
    assert graph["1"]["inputs"]["seed"] == 5
    with pytest.raises(KeyError, match="no input 'sede'"):
        set_inputs(graph, "BlendedSampler", sede=1)
    with pytest.raises(KeyError, match="no LoadImage node"):
        set_inputs(graph, "LoadImage", image="x.png")


def test_model_paths_yaml_and_rejection_text(tmp_path):
    data = yaml.safe_load(write_model_paths(tmp_path / "models", tmp_path / "p.yaml").read_text())
    entry = data["blended_models"]
    assert entry["base_path"] == str((tmp_path / "models").resolve())
    assert entry["blended_diffusion"] == "blended_diffusion" and entry["blended_clip"] == "blended_clip"
    body = {
        "error": {"message": "Prompt outputs failed validation"},
        "node_errors": {"6": {"class_type": "BlendedSampler",
                              "errors": [{"message": "Value bigger than max", "details": "batch_size: 999 > 256"}]}},
    }
    text = describe_rejection(body)
    assert "node 6 (BlendedSampler): Value bigger than max: batch_size: 999 > 256" in text
