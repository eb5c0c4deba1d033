"""Seam modes: offsets removed, outside the mask always the source bit for bit."""

import pytest
import torch

from blended import masks, region
from blended.errors import InputError
from blended.latent.seam import FEATHER_MODE_PX, MODES, apply_seam, colour_match, gradient_domain, paste_weights
from blended.metrics import seam_change, seam_score, seam_window


def _texture(n=2, h=48, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 8, w // 8, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.3 + 0.4 * smooth + 0.02 * torch.rand(n, 3, h, w, generator=g)).clamp(0, 1)


def _blob(n, h, w, cy=0.5, cx=0.5, r=0.25):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()[None].expand(n, h, w).clone()


def _masks(n, h, w):
    g = torch.Generator().manual_seed(3)
    rand = (torch.rand(n, h, w, generator=g) > 0.7).float()
    soft = _blob(n, h, w) * torch.rand(n, h, w, generator=g)
    return {
        "blob": _blob(n, h, w),
        "border": _blob(n, h, w, cy=0.0, cx=0.0, r=0.4),
        "random": rand,
        "soft": soft,
        "empty": torch.zeros(n, h, w),
        "full": torch.ones(n, h, w),
    }


def _seam(mode, edited, src, mask):
    """What the stitch runs at full size (and benchmarks/bench_seams.py measures): the mode's weights,
    then ``apply_seam`` -> (result, exact paste)."""
    weights, _ = paste_weights(mode, mask)
    return apply_seam(mode, edited, src, mask, weights)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["blob", "border", "random", "soft", "empty", "full"])
def test_outside_is_source_bit_for_bit(mode, kind):
    src = _texture()
    edited = (src + 0.2 + 0.05 * torch.randn_like(src)).clamp(0, 1)
    mask = _masks(*src.shape[:1], *src.shape[-2:])[kind]
    out, exact = _seam(mode, edited, src, mask)
    outside = (mask <= 0)[:, None].expand_as(src)
    assert torch.equal(out[outside], src[outside]) and torch.equal(exact[outside], src[outside])
    before, after = seam_change(exact, out, mask[:, None])
    assert len(before) == len(after) == src.shape[0]
    if kind == "empty":
        assert torch.equal(out, src)
    if kind == "full":  # no border: every mode, the feather included, gives the edit itself
        assert torch.equal(out, edited)


def test_feather_mode_is_the_shipped_feather():
    """The "feather" mode pastes with ``masks.feather`` (the pixel path's ``mask_feather`` too), 4 px
    when no feather is asked for: 0 outside the mask, 1 deeper than 2 x 4 px inside, a ramp between,
    and the tint's step at the border softened."""
    src = _texture()
    mask = _blob(2, *src.shape[-2:])
    edited = (src + torch.tensor([0.15, -0.1, 0.05])[None, :, None, None]).clamp(0, 1)
    weights, px = paste_weights("feather", mask)
    assert px == FEATHER_MODE_PX and torch.equal(weights, masks.feather(mask, FEATHER_MODE_PX))
    assert torch.equal(paste_weights("feather", mask, 3)[0], masks.feather(mask, 3))
    assert torch.equal(paste_weights("exact paste", mask)[0], mask)
    assert (weights[mask == 0] == 0).all() and (weights[masks.erode(mask, 2 * px) > 0] == 1).all()
    assert ((weights > 0) & (weights < 1)).any()
    out, exact = apply_seam("feather", edited, src, mask, weights)
    before, after = seam_change(exact, out, mask[:, None])
    assert all(a < 0.2 * b for b, a in zip(before, after)), (before, after)


@pytest.mark.parametrize("fn", [colour_match, gradient_domain])
def test_constant_offset_is_removed(fn):
    src = _texture()
    mask = _blob(2, *src.shape[-2:])
    edited = src + 0.2 * mask[:, None]
    untouched = seam_score(src, mask[:, None])
    pasted = seam_score(edited, mask[:, None])
    out = fn(edited, src, mask)
    fixed = seam_score(out, mask[:, None])
    assert (pasted > untouched + 0.1).all()
    # gradient domain restores the source exactly; colour match only matches the ring's
    # statistics, which a texture's inside differs from, so it removes >= 90% of the excess.
    exact = fn is gradient_domain
    slack = 1e-3 if exact else 0.1 * (pasted - untouched)
    assert (fixed <= untouched + slack).all(), (untouched, fixed)
    inside = (mask > 0)[:, None].expand_as(src)
    # the solve drops the cross-border gradient, so pixels at the border differ from the source
    # by its fine texture (amplitude 0.02 here); the mean error is far below that
    diff = (out[inside] - src[inside]).abs()
    assert diff.max() < (0.04 if exact else 0.08)
    assert diff.mean() < (0.01 if exact else 0.04), diff.mean()


def test_gradient_domain_keeps_the_edits_detail():
    src = _texture()
    mask = _blob(2, *src.shape[-2:])
    detail = 0.1 * torch.sin(torch.arange(src.shape[-1]).float())[None, None, None]
    out = gradient_domain(src + detail + 0.3, src, mask)
    inside = mask[:, None].expand_as(src) > 0
    assert (out - src)[inside].std() > 0.5 * detail.std()


def test_bad_inputs_name_the_input():
    src = _texture()
    blob = _blob(2, *src.shape[-2:])
    with pytest.raises(InputError, match="mode"):
        paste_weights("blur", blob)
    with pytest.raises(InputError, match="mode"):
        apply_seam("blur", src, src, blob, blob)
    with pytest.raises(InputError, match="mask"):
        apply_seam("feather", src, src, torch.ones(2, 5, 5), torch.ones(2, 5, 5))
    with pytest.raises(InputError, match="video"):
        apply_seam("feather", src[None], src[None], blob, blob)


def _tinted_stitch_inputs():
    from blended.latent.crop_stitch import crop_for_model

    image = _texture(n=2, h=72, w=96, seed=5)
    mask = _blob(1, 72, 96, cy=0.45, cx=0.55, r=0.22)[:, None]
    crop_img, _, crop = crop_for_model(image, mask, 64, 8, 0.25)
    tint = torch.tensor([0.15, -0.1, 0.05])[None, :, None, None]
    edited = (torch.cat([crop_img, crop_img]) + tint).clamp(0, 1)  # 2 samples per image, image-major
    edited[1] = (edited[1] + 0.03 * torch.randn_like(edited[1])).clamp(0, 1)
    return image, mask, crop, edited


@pytest.mark.parametrize("mode", MODES)
def test_stitch_report_gives_each_images_mode_and_both_scores(mode):
    from blended.latent.crop_stitch import stitch, stitch_with_report
    from blended.latent.report import report_text

    image, mask, crop, edited = _tinted_stitch_inputs()
    full, weights, stats = stitch_with_report(crop, edited, 0, seam_mode=mode)
    plain_full, plain_weights = stitch(crop, edited, 0, seam_mode=mode)
    assert torch.equal(full, plain_full) and torch.equal(weights, plain_weights)  # the report changes no pixel
    outside = (mask[0, 0] <= 0)
    exact, _ = stitch(crop, edited, 0)
    assert [s["source"] for s in stats] == [0, 0, 1, 1] and all(s["mode"] == mode for s in stats)
    text = report_text(stats)
    lines = text.splitlines()[1:]
    assert len(lines) == 4
    for i, (s, line) in enumerate(zip(stats, lines)):
        k = i // 2
        assert torch.equal(full[i][:, outside], image[k][:, outside]), (mode, i)
        # the windowed scores are the whole image's: before = the exact paste, after = the result
        whole_before = float(seam_score(exact[i : i + 1], mask)[0])
        whole_after = float(seam_score(full[i : i + 1], mask)[0])
        assert abs(s["seam_before"] - whole_before) < 1e-6 and abs(s["seam_after"] - whole_after) < 1e-6
        assert s["seam_before"] > 0.02  # the tint is a visible step
        assert line.startswith(f"image {i} (source {k}): {mode}")
        assert f"seam score {s['seam_before']:.4f} exact paste -> {s['seam_after']:.4f}" in line
        if mode == "exact paste":
            assert s["seam_after"] == s["seam_before"]
        if mode in ("colour match", "gradient domain"):
            # the ring's own texture leaves colour match some step; the Poisson blend removes it
            assert s["seam_after"] < (0.1 if mode == "gradient domain" else 0.7) * s["seam_before"], (mode, s)
            assert "mean RGB change" in line and s["mean_change"][0] < 0 < s["mean_change"][1]  # tint undone
        else:
            assert "mean_change" not in s


def test_stitch_report_scores_a_feathered_exact_paste_against_the_hard_one():
    from blended.latent.crop_stitch import stitch, stitch_with_report
    from blended.latent.report import report_text

    image, mask, crop, edited = _tinted_stitch_inputs()
    full, _, stats = stitch_with_report(crop, edited, 3)
    hard, _ = stitch(crop, edited, 0)
    for i, s in enumerate(stats):
        assert abs(s["seam_before"] - float(seam_score(hard[i : i + 1], mask)[0])) < 1e-6
        assert s["seam_after"] != s["seam_before"] and s["feather_px"] == 3
    assert "exact paste with a 3 px feather inside the mask edge" in report_text(stats)
    assert seam_window(torch.zeros(1, 1, 8, 8)) is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("feather", [0, 3])
def test_the_stitch_is_apply_seam_on_the_edit_resized_back(mode, feather):
    """The stitch runs exactly ``paste_weights`` + ``apply_seam`` on the full-size edit, so what the
    tests and benchmarks/bench_seams.py measure of a mode is what Blended Latent Stitch ships."""
    from blended.latent.crop_stitch import stitch

    image, _, crop, edited = _tinted_stitch_inputs()
    full, weights = stitch(crop, edited, feather, seam_mode=mode)
    w, _ = paste_weights(mode, crop.mask, feather)
    for i in range(edited.shape[0]):
        original = image[i // 2 : i // 2 + 1]
        out, _ = apply_seam(mode, region.resize_full(edited[i : i + 1], crop.box, original), original, crop.mask, w)
        assert torch.equal(full[i : i + 1], out) and torch.equal(weights[i : i + 1], w), (mode, i)
