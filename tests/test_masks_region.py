"""Mask shaping and the any-size context box."""

import numpy as np
import pytest
import torch
from skimage import data

from blended import masks, region
from blended.errors import InputError


def blob(h=40, w=60, box=(10, 30, 20, 45)):
    m = torch.zeros(1, 1, h, w)
    m[..., box[0] : box[1], box[2] : box[3]] = 1
    return m


def test_dilate_and_erode_are_exact():
    m = blob()
    d = masks.dilate(m, 3)
    assert d[..., 7:33, 17:48].eq(1).all() and d.sum() == 26 * 31
    assert torch.equal(masks.erode(d, 3), m)
    assert torch.equal(masks.dilate(m, 0), m)


def test_feather_never_leaks_outside_and_is_full_inside():
    m = blob()
    f = masks.feather(m, 4)
    assert torch.equal(f[m == 0], torch.zeros_like(f[m == 0]))
    assert f[..., 18:22, 30:35].eq(1).all()  # deeper than 2*px inside
    edge = f[0, 0, 10, 20:45]
    assert (edge > 0).all() and (edge < 1).all()
    thin = torch.zeros(1, 1, 30, 30)
    thin[..., 15, 5:25] = 1  # a 1-px scribble survives feathering
    ft = masks.feather(thin, 3)
    assert (ft[thin > 0] > 0).all() and ft[thin == 0].eq(0).all()


def test_context_box_square_inside_image_and_min_size():
    m = blob(100, 200, (40, 50, 90, 100))
    box = region.context_box(m, margin=0.5)
    assert box.height == box.width == 20
    assert box.top <= 40 and box.top + box.height >= 50 and box.left <= 90 and box.left + box.width >= 100
    big = region.context_box(m, margin=0.25, min_size=64)
    assert (big.height, big.width) == (64, 64) and big.top >= 0 and big.top + 64 <= 100
    edge = region.context_box(blob(100, 200, (0, 5, 195, 200)), min_size=64)
    assert edge.left + edge.width == 200 and edge.top == 0


def test_non_square_canvas_keeps_aspect():
    m = torch.zeros(1, 1, 50, 200)
    m[..., :, 150:] = 1  # outpainting strip on a panorama: box must be 50 high, wider than tall
    box = region.context_box(m, margin=0.25)
    assert box.height == 50 and box.width > 50
    size = region.model_input_size(box, 32, multiple=8)
    assert size[0] == 32 and size[1] % 8 == 0
    ch, cw = region.content_size(box, size)
    assert abs(cw / ch - box.width / box.height) < 1 / ch + 1e-9  # aspect within a pixel


def test_crop_resize_round_trip_on_a_real_photo():
    photo = torch.from_numpy(data.astronaut()[:300, :451].astype(np.float32) / 255).permute(2, 0, 1)[None]
    H, W = photo.shape[-2:]
    m = torch.zeros(1, 1, H, W)
    m[..., 100:180, 200:260] = 1
    box = region.context_box(m, margin=0.3, min_size=64)
    size = region.model_input_size(box, 64, multiple=16)
    small = region.crop_resize(photo, box, size)
    assert tuple(small.shape[-2:]) == size
    out = region.paste_back(photo, small, box, m)
    assert torch.equal(out[(m == 0).expand_as(out)], photo[(m == 0).expand_as(photo)])
    inside = (out - photo).abs()[(m > 0).expand_as(out)]
    assert inside.mean() < 0.08  # resampling error only (downscaled to 64 and back)


def test_empty_mask_is_an_input_error():
    with pytest.raises(InputError, match="mask is empty"):
        region.context_box(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("seed", range(4))
def test_radius_independent_dilate_and_box_mean_equal_the_pooling_they_replace(seed):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    for _ in range(8):
        h, w = torch.randint(1, 70, (2,), generator=g).tolist()
        m = (torch.rand(2, 1, h, w, generator=g) > 0.85).float()
        for px in (1, 3, 8, 40):
            assert torch.equal(masks.dilate(m, px), F.max_pool2d(m, 2 * px + 1, 1, px))
            assert torch.equal(masks.box_mean(m, px),
                               F.avg_pool2d(m, 2 * px + 1, 1, px, count_include_pad=False))


def test_huge_radii_on_a_large_mask_finish():
    """dilate 200 on 2000x1500 used to run for minutes (a (2r+1)^2 window); now the cost does not grow
    with the radius. The bound is generous on purpose; benchmarks/bench_masks.py measures the ratio."""
    import time

    m = torch.zeros(1, 1, 1500, 2000)
    m[..., 400:1100, 500:1500] = 1
    start = time.monotonic()
    grown = masks.dilate(m, 512)
    soft = masks.feather(grown, 512)
    assert time.monotonic() - start < 120
    assert grown[..., 0, 0] == 1 and soft[m > 0].eq(1).all() and soft[grown == 0].eq(0).all()


def test_model_input_of_an_extreme_strip_stays_bounded():
    """A 1x300 image once asked for a 32x9600 model input (256x76800 at real size) and the server was
    killed for memory; the input is now at most MAX_ASPECT times as long as the model's size."""
    for h, w in ((1, 300), (300, 1), (2, 5000), (1, 20000)):
        box = region.Box(0, 0, h, w)
        size = region.model_input_size(box, 32, 8)
        assert max(size) <= region.MAX_ASPECT * 32 and min(size) == 32
        ch, cw = region.content_size(box, size)
        assert 1 <= ch <= size[0] and 1 <= cw <= size[1]
        x = torch.rand(1, 3, h, w)
        small = region.crop_resize(x, box, size)
        assert small.shape[-2:] == size
        back = region.resize_back(small, box, (h, w))
        assert back.shape[-2:] == (h, w)


@pytest.mark.parametrize("feather", [0, 2, 4])
def test_pixel_paste_feathers_a_band_inside_the_mask_only(feather):
    """edit()'s paste-back on a tinted crop: outside the mask the source bit for bit, weights below 1
    only in a band of 2 x feather px inside the border, and the tint's step at the border softened."""
    from blended.metrics import seam_score
    from blended.pixel.edit import RegionSettings, prepare_masks

    g = torch.Generator().manual_seed(4)
    coarse = torch.rand(1, 3, 8, 8, generator=g)
    source = 0.3 + 0.4 * torch.nn.functional.interpolate(coarse, size=(96, 120), mode="bilinear")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 120), indexing="ij")
    mask = (((yy - 0.5) / 0.3) ** 2 + ((xx - 0.45) / 0.25) ** 2 < 1).float()[None, None]

    def paste(px):
        edit_mask, weights = prepare_masks(mask, RegionSettings(0, px, 0.25))
        box = region.context_box(edit_mask, 0.25)
        crop = region.crop_resize(source, box, region.model_input_size(box, 64, 8))
        tinted = (crop + torch.tensor([0.15, -0.1, 0.05])[None, :, None, None]).clamp(0, 1)
        return region.paste_back(source, tinted, box, weights), weights, edit_mask

    out, weights, edit_mask = paste(feather)
    outside = (edit_mask == 0).expand_as(source)
    assert torch.equal(out[outside], source[outside])
    core = masks.erode(edit_mask, 2 * feather)
    assert (weights[core > 0] == 1).all() and (weights[edit_mask == 0] == 0).all()
    if feather:
        assert ((weights > 0) & (weights < 1)).any()
        hard = float(seam_score(paste(0)[0], edit_mask)[0])
        assert float(seam_score(out, edit_mask)[0]) < 0.2 * hard, hard


def test_paste_keeps_the_outside_bit_for_bit():
    """The one paste every path ends with: where the weight is 0 the source's own float (a -0.0 stays
    -0.0, a NaN edit never leaks), the blend where it is above 0, and ``clamp`` bounds the blend only."""
    from blended.paste import paste

    g = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 8, 8, generator=g) * 1.5 - 0.25  # outside 0..1 too: never clamped
    source[..., 0, 0] = -0.0
    edited = torch.full_like(source, float("nan"))
    edited[..., 4:, :] = 2.0
    w = torch.zeros(1, 1, 8, 8)
    w[..., 4:, :] = 1
    w[..., 4, :] = 0.5
    out = paste(edited, source, w, clamp=(0, 1))
    outside = (w == 0).expand_as(source)
    assert torch.equal(out[outside], source[outside]) and torch.signbit(out[..., 0, 0]).all()
    assert torch.equal(out[..., 4, :], (2.0 * 0.5 + source[..., 4, :] * 0.5).clamp(0, 1))
    assert (out[..., 5:, :] == 1).all()
    assert torch.equal(paste(edited, source, w)[..., 5:, :], edited[..., 5:, :])  # no clamp asked: none
