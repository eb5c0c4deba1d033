"""A maskless edit confined to what it changed (Blended Confine Edit).

On synthetic instruction edits of the shipped photo (a region re-textured, plus the drift editors add:
a global tint, a shift of a few pixels, a zoom of about 1.5 %), the found region matches the true one
(IoU printed; without the alignment it does not), and the confined result is the source bit for bit
outside it, in every seam mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from blended.errors import InputError
from blended.latent.change_mask import ChangeSettings, change_mask, confine, warp
from blended.latent.seam import MODES
from tests.support import pack_import
from tests.support.sd15_fixture import comfy_engine_path

PHOTO = Path(__file__).resolve().parents[1] / "workflows" / "examples" / "blended_landscape.png"


@pytest.fixture(scope="module")
def scene():
    img = torch.from_numpy(np.array(Image.open(PHOTO).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(192, 256), mode="area")
    truth = torch.zeros(1, 1, 192, 256)
    truth[..., 60:120, 100:165] = 1
    tex = torch.rand(1, 3, 192, 256, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    return img, truth, torch.where(truth > 0, tex, img)


def drifted(edit, gain=1.0, offset=0.0, zoom=1.0, dx=0.0, dy=0.0):
    out = (edit * gain + offset).clamp(0, 1)
    return warp(out, 1 / zoom, -dx, -dy) if (zoom, dx, dy) != (1.0, 0.0, 0.0) else out


def iou(a, b):
    return float((a * b).sum() / ((a + b) > 0).sum())


DRIFTS = {"none": {}, "tint": dict(gain=1.08, offset=0.03), "shift": dict(dx=3, dy=-2), "zoom": dict(zoom=1.015),
          "all": dict(gain=1.08, offset=0.03, zoom=1.015, dx=3, dy=-2)}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_the_found_region_is_the_edited_one_after_the_drift_is_undone(scene, drift):
    img, truth, edit = scene
    found, aligned, stats = change_mask(drifted(edit, **DRIFTS[drift]), img, ChangeSettings(grow_px=0))
    plain, _, _ = change_mask(drifted(edit, **DRIFTS[drift]), img, ChangeSettings(grow_px=0, align=False,
                                                                                  match_colour=False))
    print(f"change mask IoU, drift {drift}: aligned {iou(found, truth):.3f}, plain difference {iou(plain, truth):.3f}")
    assert iou(found, truth) > 0.85  # what is lost: the blur's band at the region's edge
    if drift != "none":
        assert iou(plain, truth) < 0.6  # without undoing the drift the whole picture looks edited
    assert found.shape == truth.shape and aligned.shape == img.shape


@pytest.mark.parametrize("mode", MODES)
def test_confined_keeps_the_source_bit_for_bit_outside_and_reports_the_unconfined_change(scene, mode):
    img, truth, edit = scene
    edited = drifted(edit, **DRIFTS["all"])
    out, found, report = confine(edited, img, ChangeSettings(), mode)
    outside = (found == 0).expand_as(out)
    assert torch.equal(out[outside], img.expand_as(out)[outside])
    assert not torch.equal(out[~outside], img.expand_as(out)[~outside])
    assert report.startswith(f"confined with {mode}") and "region " in report and "max " in report
    raw = (edited - img).abs().amax(1, keepdim=True)[found == 0]
    assert f"max {float(raw.max()):.4f}" in report


def test_an_edit_at_another_size_is_brought_to_the_sources_and_a_batch_to_one_source(scene):
    img, truth, edit = scene
    big = F.interpolate(edit, size=(384, 512), mode="bicubic").clamp(0, 1)
    out, found, _ = confine(torch.cat([big, big]), img, ChangeSettings(grow_px=0))
    assert out.shape == (2, 3, 192, 256) and iou(found[:1], truth) > 0.85 and torch.equal(found[0], found[1])


def test_no_change_finds_nothing(scene):
    img, _, _ = scene
    out, found, report = confine(img.clone(), img)
    assert not found.any() and torch.equal(out, img) and "EMPTY" in report


def test_bad_inputs_name_the_input(scene):
    img, _, edit = scene
    with pytest.raises(InputError, match="threshold is 0"):
        ChangeSettings(threshold=0)
    with pytest.raises(InputError, match="source has 2 images for 3 edits"):
        change_mask(torch.cat([edit] * 3), torch.cat([img] * 2))


def test_the_node_runs_the_library_call(scene, comfy_temp_folder):
    comfy_engine_path()
    pack_import.register()
    from blended_diffusion_pack.nodes.confine_node import BlendedConfineEdit

    img, truth, edit = scene
    images, mask, report = BlendedConfineEdit.execute(img.movedim(1, -1), drifted(edit, gain=1.05).movedim(1, -1),
                                                      0.08, 0, True, "exact paste").result
    assert images.shape == (1, 192, 256, 3) and mask.shape == (1, 192, 256) and iou(mask[:, None], truth) > 0.85
    with pytest.raises(ValueError, match="seam"):
        BlendedConfineEdit.execute(img.movedim(1, -1), edit.movedim(1, -1), 0.08, 0, True, "blur")
