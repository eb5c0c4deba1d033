"""The latent path's arithmetic: covering masks, the shrinking schedule, step lookup, and the noise
level the source is blended at, for an eps and a flow ``model_sampling`` of ComfyUI's own."""

from __future__ import annotations

import math

import pytest
import torch

from blended.errors import InputError
from blended.latent.blend import LatentBlend, cover_mask, noise_for_seeds, shrink_radii, step_index, step_masks
from tests.support.sd15_fixture import comfy_engine_path


def test_cover_mask_keeps_a_one_pixel_stroke_and_only_touched_cells():
    m = torch.zeros(1, 1, 64, 64)
    m[..., 10, 3:60] = 1  # a 1-px horizontal line: average pooling would leave 1/8 in its cells
    m[..., 40:42, 17] = 1
    cov = cover_mask(m, 8)
    assert cov.shape == (1, 1, 8, 8)
    expected = torch.zeros(8, 8)
    expected[1, 0:8] = 1  # columns 3..59 touch cells 0..7
    expected[5, 2] = 1
    assert torch.equal(cov[0, 0], expected)
    # bilinear/area downscaling, what core does with a noise mask, loses the stroke at 0.5
    area = torch.nn.functional.avg_pool2d(m, 8)
    assert (area > 0.5).sum() == 0


def test_cover_mask_odd_sizes_round_up():
    m = torch.zeros(1, 1, 20, 12)
    m[..., 19, 11] = 1
    cov = cover_mask(m, 8)
    assert cov.shape == (1, 1, 3, 2) and cov[0, 0, 2, 1] == 1 and cov.sum() == 1


@pytest.mark.parametrize("factor", [1, 8, 16, 32])
def test_cover_of_the_grown_mask_is_dilating_then_covering(factor):
    """The one-pass cover (a strided max per axis) gives the cells of dilating the pixel mask and
    covering that, on soft masks, odd sizes, sizes below one cell, radii past the image and video."""
    from blended.masks import binarize, dilate

    gen = torch.Generator().manual_seed(factor)
    for shape in [(2, 1, 37, 53), (1, 1, 5, 70), (1, 1, 3, 4, 41)]:
        m = (torch.rand(shape, generator=gen) > 0.995).float() * torch.rand(shape, generator=gen)
        m[(0,) * (len(shape) - 2) + (shape[-2] // 2, shape[-1] // 3)] = 0.3
        for r in (0, 1, 3, 8, 17, 90):
            grown = binarize(m, 0.0)
            if m.dim() == 5:
                frames = grown.permute(0, 2, 1, 3, 4).flatten(0, 1)
                ref = torch.nn.functional.max_pool2d(dilate(frames, r), factor, factor, ceil_mode=True)
                ref = ref.unflatten(0, (shape[0], shape[2])).permute(0, 2, 1, 3, 4)
            else:
                ref = torch.nn.functional.max_pool2d(dilate(grown, r), factor, factor, ceil_mode=True)
            assert torch.equal(cover_mask(m, factor, r), ref), (shape, r)


def test_shrink_schedule_linear_then_precise():
    r = shrink_radii(10, 16, 0.5)
    assert r[0] == 16 and r[5:] == [0] * 5
    assert all(a >= b for a, b in zip(r, r[1:]))
    assert r == [round(16 * (1 - i / 5)) for i in range(5)] + [0] * 5
    assert shrink_radii(4, 0, 0.5) == [0, 0, 0, 0]
    assert shrink_radii(4, 8, 0.0) == [0, 0, 0, 0]
    with pytest.raises(InputError, match="shrink_fraction"):
        shrink_radii(4, 8, 1.5)


def test_step_masks_shrink_to_the_cover_of_the_precise_mask():
    m = torch.zeros(1, 1, 64, 64)
    m[..., 28:36, 28:36] = 1
    ms = step_masks(m, 8, 8, shrink_px=16, shrink_fraction=0.5)
    areas = [int(x.sum()) for x in ms]
    assert areas[0] > areas[3] >= areas[4] and areas[4:] == [areas[-1]] * 4
    assert torch.equal(ms[-1], cover_mask(m, 8))
    for a, b in zip(ms, ms[1:]):  # each mask contains the next: shrinking never adds cells
        assert bool((b <= a).all())


def test_step_index_maps_levels_to_steps():
    sigmas = torch.tensor([14.6, 3.0, 1.0, 0.03, 0.0])
    assert [step_index(sigmas, float(s)) for s in sigmas[:-1]] == [0, 1, 2, 3]
    assert step_index(sigmas, 2.0) == 1  # between steps: the earlier (larger) mask
    assert step_index(sigmas, 20.0) == 0 and step_index(sigmas, 0.0) == 3


def test_noise_for_seeds_is_per_sample():
    a = noise_for_seeds((4, 8, 8), [5, 6, 7])
    b = noise_for_seeds((4, 8, 8), [6])
    assert torch.equal(a[1:2], b) and not torch.equal(a[0], a[1])


# Stable Diffusion's training schedule ("scaled linear" betas), written out independently of ComfyUI
SD_ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2, 0)


def _model_sampling(kind):
    comfy_engine_path()
    import comfy.model_sampling as cms

    if kind == "eps":
        class MS(cms.ModelSamplingDiscrete, cms.EPS):
            pass
    elif kind == "v":
        class MS(cms.ModelSamplingDiscrete, cms.V_PREDICTION):
            pass
    else:
        class MS(cms.ModelSamplingDiscreteFlow, cms.CONST):
            pass
    return MS()


def _blend_for(ms, source, noise, steps=5):
    sigmas = torch.cat([ms.sigmas.flip(0)[:: len(ms.sigmas) // steps][:steps], torch.zeros(1)])
    mask = torch.zeros(1, 1, *source.shape[-2:])
    mask[..., :2, :2] = 1
    return LatentBlend(source, noise, [mask] * steps, sigmas, ms.noise_scaling), sigmas, mask


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_eps_and_v_background_is_the_source_at_the_samples_ddpm_level(kind):
    """For eps/v models, k-diffusion's x = x0 + σ·n at σ = sqrt((1-ᾱ)/ᾱ); scaled by 1/sqrt(1+σ²) it is
    DDPM's q_sample sqrt(ᾱ)·x0 + sqrt(1-ᾱ)·n at the *same* timestep as the sample (not one earlier)."""
    ms = _model_sampling(kind)
    g = torch.Generator().manual_seed(0)
    source, noise = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    blend, sigmas, mask = _blend_for(ms, source, noise)
    for i, sigma in enumerate(sigmas[:-1]):
        x = torch.randn(2, 4, 4, 4, generator=g) * 100
        out = blend.blend_input(x, sigma.expand(2))
        t = ms.timestep(sigma).round().long()
        abar = SD_ALPHAS_CUMPROD[t]
        assert math.isclose(float(sigma), math.sqrt((1 - abar) / abar), rel_tol=1e-4)
        ddpm = abar.sqrt() * source.double() + (1 - abar).sqrt() * noise.double()
        outside = (mask == 0).expand_as(out)
        got = out.double() / math.sqrt(1 + float(sigma) ** 2)
        torch.testing.assert_close(got[outside], ddpm[outside], rtol=1e-5, atol=1e-5)
        # one level too noisy (the reference scripts) would be clearly different
        if i + 1 < len(sigmas) - 1:
            t_prev = ms.timestep(sigmas[i] if i == 0 else sigmas[i - 1]).round().long()
            if t_prev != t:
                a2 = SD_ALPHAS_CUMPROD[t_prev]
                wrong = a2.sqrt() * source.double() + (1 - a2).sqrt() * noise.double()
                assert not torch.allclose(got[outside], wrong[outside], atol=1e-3)
        inside = ~outside
        assert torch.equal(out[inside], x[inside])


def test_flow_background_is_the_interpolation_at_the_samples_level():
    ms = _model_sampling("flow")
    g = torch.Generator().manual_seed(1)
    source, noise = torch.randn(1, 16, 4, 4, generator=g), torch.randn(1, 16, 4, 4, generator=g)
    blend, sigmas, mask = _blend_for(ms, source, noise)
    assert float(sigmas[0]) <= 1.0
    for sigma in sigmas[:-1]:
        x = torch.randn(1, 16, 4, 4, generator=g)
        out = blend.blend_input(x, sigma.reshape(1))
        s = float(sigma)
        expected = (1 - s) * source + s * noise
        outside = (mask == 0).expand_as(out)
        torch.testing.assert_close(out[outside], expected[outside], rtol=1e-6, atol=1e-6)
    final = blend.finish(torch.randn(1, 16, 4, 4, generator=g))
    assert torch.equal(final[(mask == 0).expand_as(final)], source[(mask == 0).expand_as(source)])


def test_denoised_background_is_the_clean_source_so_euler_follows_its_noising_path():
    ms = _model_sampling("eps")
    g = torch.Generator().manual_seed(2)
    source, noise = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g)
    blend, sigmas, mask = _blend_for(ms, source, noise)
    s0, s1 = sigmas[0], sigmas[1]
    x = blend.blend_input(torch.randn(1, 4, 4, 4, generator=g), s0.reshape(1))
    d = blend.blend_denoised(torch.randn(1, 4, 4, 4, generator=g), s0.reshape(1))
    x1 = x + (x - d) / s0 * (s1 - s0)  # one Euler step
    outside = (mask == 0).expand_as(x1)
    torch.testing.assert_close(x1[outside], blend.background(s1.reshape(1), x1)[outside], rtol=1e-5, atol=1e-5)


def test_one_mask_per_step_is_required():
    with pytest.raises(InputError, match="one mask per step"):
        LatentBlend(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), [torch.ones(1, 1, 2, 2)], torch.ones(4),
                    lambda s, n, x: x)
