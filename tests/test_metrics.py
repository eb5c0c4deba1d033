"""Edit metrics on real photos (scikit-image) with real LPIPS weights."""

import math

import numpy as np
import pytest
import torch
from skimage import data, transform

from blended.lpips_model import load_lpips
from blended.metrics import background_lpips, background_psnr, clip_score_in_box, diversity, evaluate


def photo(name, size=64):
    img = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def lpips(real_lpips_path):
    return load_lpips(real_lpips_path)


@pytest.fixture
def scene():
    src = photo("astronaut")
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:40, 20:40] = 1
    inside_only = torch.where(mask > 0, photo("coffee"), src)
    return src, mask, inside_only


def test_psnr_sees_only_the_background(scene):
    src, mask, inside_only = scene
    assert math.isinf(background_psnr(src, src, mask).item())
    assert math.isinf(background_psnr(inside_only, src, mask).item())
    changed = inside_only.clone()
    changed[..., 50:, 50:] = photo("chelsea")[..., 50:, 50:]
    assert background_psnr(changed, src, mask).item() < 30


def test_band_excludes_pixels_next_to_the_mask(scene):
    src, mask, _ = scene
    seam = src.clone()
    seam[..., 18:42, 18:42] += 0.2  # a 2-px halo around the mask
    assert background_psnr(seam, src, mask, band_px=0).item() < 40
    assert math.isinf(background_psnr(seam, src, mask, band_px=2).item())


def test_background_lpips_and_diversity(scene, lpips):
    src, mask, inside_only = scene
    assert background_lpips(inside_only, src, mask, lpips).item() == pytest.approx(0, abs=1e-6)
    other = photo("chelsea")
    assert background_lpips(other, src, mask, lpips).item() > 0.1
    assert diversity(src, lpips) == 0.0
    assert diversity(torch.cat([src, src]), lpips) == pytest.approx(0, abs=1e-6)
    assert diversity(torch.cat([src, other, photo("coffee")]), lpips) > 0.1


def test_clip_score_and_evaluate(scene, lpips, tiny_clip):
    src, mask, inside_only = scene
    scores = clip_score_in_box(torch.cat([src, inside_only]), mask, "a cup of coffee", tiny_clip)
    assert scores.shape == (2,) and scores.abs().max() <= 100
    report = evaluate(torch.cat([src, inside_only]), src, mask, "a cup of coffee", tiny_clip, lpips, band_px=2)
    assert report["background_psnr"] == [math.inf, math.inf]
    assert len(report["clip_score"]) == 2 and report["diversity_lpips"] > 0
