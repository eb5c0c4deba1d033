"""Edit metrics on real photos (scikit-image) with real LPIPS weights."""

import math

import numpy as np
import pytest
import torch
from skimage import data, transform

from blended.errors import InputError
from blended.lpips_model import load_lpips
from blended.metrics import background_lpips, background_psnr, clip_score_in_box, diversity, evaluate, seam_score


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


def test_seam_score_sees_steps_not_changes(scene):
    src, mask, inside_only = scene  # inside_only: another photo pasted into the mask with a hard edge
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    assert seam_score(ramp, mask).item() == 0  # a smooth gradient across the border is no seam
    assert seam_score(inside_only, mask).item() > 0.1
    # copying the background earns nothing over new content with the same texture: fresh noise
    # inside a noise background scores like the noise itself, a pasted brightness step does not
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 64, 64, generator=g)
    fresh = torch.where(mask > 0, torch.rand(1, 3, 64, 64, generator=g), noise)
    stepped = torch.where(mask > 0, noise * 0.5 + 0.5, noise * 0.5)
    copy, new, step = (seam_score(x, mask).item() for x in (noise, fresh, stepped))
    assert abs(copy - new) < 0.01 and step > 5 * max(copy, new)
    # per sample, any band width; a mask per sample or one for all
    both = torch.cat([src, inside_only])
    per = seam_score(both, mask.expand(2, -1, -1, -1), band_px=3)
    assert per.shape == (2,) and per[0] < per[1] and torch.equal(per, seam_score(both, mask, band_px=3))
    whole = torch.ones_like(mask)  # no border inside the image: nothing to measure
    assert seam_score(both, whole).tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="seam band_px 0"):
        seam_score(both, mask, band_px=0)


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
    assert report["seam"] == seam_score(torch.cat([src, inside_only]), mask).tolist() and report["seam"][1] > 0.1


def test_evaluate_script_on_files(tmp_path, real_lpips_path, tiny_clip):
    from PIL import Image

    from scripts.cli.evaluate import main

    def save(t, name):
        Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / name)
        return tmp_path / name

    src = photo("astronaut")
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:40, 20:40] = 1
    Image.fromarray((mask[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    clip_file = tmp_path / "eval_clip.safetensors"
    from tests.support.tiny_clip import save_tiny_clip

    save_tiny_clip(clip_file, seed=1)
    edits = [save(torch.where(mask > 0, photo("coffee"), src), "a.png"), save(photo("chelsea"), "b.png")]
    argv = ["--source", str(save(src, "src.png")), "--mask", str(tmp_path / "mask.png"), "--prompt", "a cup",
            "--clip", str(clip_file), "--lpips", str(real_lpips_path), "--band", "1",
            "--json", str(tmp_path / "r.json"),
            *map(str, edits)]
    assert main(argv) == 0
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert math.isinf(report["background_psnr"][0]) and report["background_psnr"][1] < 30
    assert report["background_lpips"][0] == pytest.approx(0, abs=1e-6) and report["background_lpips"][1] > 0.1
    assert len(report["clip_score"]) == 2 and report["files"] == [str(e) for e in edits]
    assert len(report["seam"]) == 2 and report["seam"][0] > 0.1  # the coffee pasted with a hard edge
    with pytest.raises(SystemExit, match="--seam-px 0: use 1 or more"):
        main([*argv, "--seam-px", "0"])
    with pytest.raises(SystemExit, match="all black"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "black.png")
        main([*argv[:2], "--mask", str(tmp_path / "black.png"), *argv[4:]])


@pytest.mark.parametrize("w, h", [(1, 1), (3, 3), (5, 2), (2, 9)])
def test_seam_score_on_crops_too_small_for_the_bands_is_zero(w, h):
    """A one-pixel mask's crop can be a few pixels wide: no room for the bands, so no seam (it
    used to fail in torch.arange)."""
    images = torch.rand(2, 3, h, w)
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 2, w // 2] = 1
    assert torch.equal(seam_score(images, mask, band_px=2), torch.zeros(2))


@pytest.mark.parametrize("where", ["middle", "corner", "edge strip", "scattered", "empty", "full"])
def test_seam_change_scores_the_whole_image_on_a_window(scene, where):
    """``seam_change`` (the stitch's, the reconstruction's and the seam benchmark's before -> after)
    scores each image on its mask's padded box; that is the whole image's ``seam_score``."""
    from blended.metrics import seam_change

    src, _, _ = scene
    mask = torch.zeros(2, 1, 64, 64)
    if where == "middle":
        mask[0, :, 20:40, 22:41] = 1
        mask[1, :, 10:30, 30:50] = 1
    elif where == "corner":
        mask[..., :18, :25] = 1
    elif where == "edge strip":
        mask[..., :, 50:] = 1
    elif where == "scattered":
        mask = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.8).float()
    elif where == "full":
        mask[:] = 1
    before = torch.cat([src, photo("chelsea")])
    after = torch.where(mask > 0, (before + 0.15).clamp(0, 1), before)
    scores_before, scores_after = seam_change(before, after, mask)
    for got, image in ((scores_before, before), (scores_after, after)):
        whole = seam_score(image, mask).tolist()
        assert len(got) == 2 and all(abs(a - b) < 1e-6 for a, b in zip(got, whole)), (got, whole)
    same, again = seam_change(after, after, mask)  # nothing changed: scored once
    assert same == again == scores_after
    assert seam_change(before, before, mask[:1])[0][0] == scores_before[0]  # one mask for all images
