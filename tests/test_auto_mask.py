"""Blended Mask by DiffEdit: the model finds the region to edit.

What is proven here with random weights (not mask quality on real photos):
- on a test model whose prediction depends on the text only inside a known region (a tiny real SD1.5
  model fed a fixed text, plus a term of the text gated to the region), the found mask is that region
  (IoU printed), and with the same text as target and reference it is empty and the blended sampler
  then returns the source without a model call;
- the same seed gives the same mask; the cost is ``draws`` model calls, each with target and
  reference (2 x draws predictions), at the sigma that ``strength`` names on the model's schedule;
- on every tiny family: shapes at the image's pixel size, the call count, and the blended sampler's
  exact background with the found mask;
- the library's normalisation and thresholds on known maps, and the bad inputs.
"""

from __future__ import annotations

import pytest
import torch

from blended.errors import InputError
from blended.latent.auto_mask import AutoMaskSettings, cells_to_pixels, normalise, threshold_mask
from blended.latent.blend import cover_mask
from tests.support.latent_families import FAMILIES, build, recording

REGION = (slice(2, 6), slice(1, 4))  # latent rows 2-5, columns 1-3 of an 8x8 latent


def _gated(model, region_cells):
    """``model`` whose text reaches the prediction only inside ``region_cells`` [1,1,h,w]: the UNet
    sees a fixed (zero) text everywhere, and the mean of the real text, times the region, is added."""
    patched = model.clone()

    def wrapper(apply_model, args):
        c = dict(args["c"])
        text = c["c_crossattn"]
        c["c_crossattn"] = torch.zeros_like(text)
        out = apply_model(args["input"], args["timestep"], **c)
        return out + text.mean((1, 2)).view(-1, 1, 1, 1) * region_cells.to(out)

    patched.set_model_unet_function_wrapper(wrapper)
    return patched


def _region(h=8, w=8):
    m = torch.zeros(1, 1, h, w)
    m[..., REGION[0], REGION[1]] = 1
    return m


def _source(built, seed=3):
    return torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(seed))


def _find(model, target, reference, source, seed=0, **settings):
    from blended_diffusion_pack.nodes.auto_mask import find_mask

    return find_mask(model, target, reference, {"samples": source}, seed, AutoMaskSettings(**settings))


@pytest.fixture(scope="module")
def sd15():
    return build("sd15")


def test_the_mask_covers_the_region_where_the_text_matters_and_nothing_else(sd15):
    model = _gated(sd15.model, _region())
    mask, soft, report = _find(model, sd15.positive, sd15.negative, _source(sd15), draws=4)
    want = _region()[0].repeat_interleave(8, 1).repeat_interleave(8, 2)  # [1,64,64] pixels
    assert mask.shape == want.shape == (1, 64, 64) and soft.shape == (1, 64, 64)
    inter, union = float((mask * want).sum()), float(((mask + want) > 0).sum())
    iou = inter / union
    print(f"auto mask IoU with the conditioning-gated region: {iou:.3f}")
    assert iou == 1.0
    assert "covers 18.8% of the image" in report  # 12 of 64 cells


def test_the_same_text_twice_finds_nothing_and_the_sampler_returns_the_source(sd15):
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler

    model = _gated(sd15.model, _region())
    source = _source(sd15)
    mask, soft, report = _find(model, sd15.positive, sd15.positive, source, draws=2)
    assert not mask.any() and not soft.any()
    assert "EMPTY" in report
    patched, calls = recording(sd15.model)
    out = run_latent_sampler(patched, sd15.positive, sd15.negative, {"samples": source}, mask, 0, 3, 3.0, "euler",
                             "simple", 1.0, 2, 0, 0.0)
    assert calls == [] and out.shape == (2, *source.shape[1:])
    assert torch.equal(out, source.expand_as(out))


def test_the_same_seed_gives_the_same_mask_and_draws_cost_one_call_each(sd15):
    patched, calls = recording(sd15.model)
    source = _source(sd15)
    first = _find(patched, sd15.positive, sd15.negative, source, seed=7, draws=3)
    assert len(calls) == 3 and all(sorted(c[2]) == [0, 1] for c in calls)  # target and reference in every call
    ms = sd15.model.get_model_object("model_sampling")
    sigma = ms.percent_to_sigma(0.5)
    assert all(torch.allclose(c[1].float(), torch.tensor(sigma).float()) for c in calls)
    again = _find(sd15.model, sd15.positive, sd15.negative, source, seed=7, draws=3)
    other = _find(sd15.model, sd15.positive, sd15.negative, source, seed=8, draws=3)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_finds_a_mask_at_pixel_size_and_the_sampler_keeps_the_rest_exact(name):
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler

    built = build(name)
    h, w = built.latent_hw
    f = built.family.factor
    source = _source(built)
    patched, calls = recording(built.model)
    mask, soft, _ = _find(patched, built.positive, built.negative, source, draws=2, threshold=0.3)
    assert mask.shape == soft.shape == (1, h * f, w * f)
    assert len(calls) == 2 and all(len(c[2]) == 2 for c in calls)
    assert 0 < float(mask.mean()) < 1, "the random model's map should cut somewhere"
    cfg = 1.0 if built.family.guider == "basic" else 3.0
    out = run_latent_sampler(built.model, built.positive, built.negative, {"samples": source}, mask, 1, 2, cfg,
                             "euler", "simple", 1.0, 1, 0, 0.0)
    keep = (cover_mask(mask[:, None], f) == 0)
    if out.dim() == 5:
        keep = keep[:, :, None]
    keep = keep.expand_as(out)
    assert torch.equal(out[keep], source.expand_as(out)[keep])


def test_normalise_clips_at_the_ratio_of_the_mean_per_image():
    diff = torch.tensor([[[0.0, 1.0], [1.0, 10.0]], [[0.0, 0.0], [0.0, 0.0]]])
    soft = normalise(diff, 3.0)
    top = 3.0 * 12.0 / 4
    assert torch.allclose(soft[0], torch.tensor([[0.0, 1 / top], [1 / top, 1.0]]))
    assert torch.equal(soft[1], torch.zeros(2, 2))  # nothing differs: nothing found


def test_threshold_and_grow():
    soft = torch.zeros(1, 9, 9)
    soft[0, 4, 4] = 0.8
    soft[0, 0, 0] = 0.4
    assert threshold_mask(soft, 0.5, 0).sum() == 1
    assert threshold_mask(soft, 0.3, 0).sum() == 2
    assert threshold_mask(soft, 0.5, 1).sum() == 9


def test_a_video_map_gets_one_mask_per_decoded_frame():
    cells = torch.arange(3.0).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # 3 latent frames
    px = cells_to_pixels(cells, 8, 4)
    assert px.shape == (9, 16, 16)  # 1 + 4 * 2 frames
    assert px[:, 0, 0].tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("bad, message", [
    (dict(draws=0), "draws is 0"), (dict(strength=1.0), "strength is 1.0"), (dict(threshold=0.0), "threshold is 0.0"),
    (dict(clamp_ratio=0.5), "clamp_ratio is 0.5"), (dict(grow_px=-1), "grow_px is -1")])
def test_bad_settings_name_the_input(bad, message):
    with pytest.raises(InputError, match=message):
        AutoMaskSettings(**bad)


def test_a_reference_of_another_encoder_names_the_conditioning_and_the_fix(sd15):
    other = build("sdxl")
    with pytest.raises(InputError, match="target's text embedding is 768 wide but reference's is 2048"):
        _find(sd15.model, sd15.positive, other.negative, _source(sd15), draws=1)
    with pytest.raises(InputError, match="reference must be a CONDITIONING"):
        _find(sd15.model, sd15.positive, "a cat", _source(sd15), draws=1)


def test_the_same_conditioning_twice_says_so(sd15):
    _, _, report = _find(sd15.model, sd15.positive, sd15.positive, _source(sd15), draws=1)
    assert "EMPTY" in report and "the same conditioning" in report


def test_cancel_stops_the_draws(sd15):
    import comfy.model_management as mm

    calls = []
    patched = sd15.model.clone()

    def wrapper(apply_model, args):
        calls.append(1)
        mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _find(patched, sd15.positive, sd15.negative, _source(sd15), draws=5)
    finally:
        mm.interrupt_current_processing(False)
    assert len(calls) == 1


def test_a_video_latent_gets_one_mask_per_decoded_frame_and_keeps_the_rest_exact():
    """Wan 2.1: 3 latent frames decode to 9 frames; each latent frame's mask lands on the frames it
    encodes, and the blended sampler keeps every cell outside the found mask the source's."""
    from blended.latent.crop_stitch import frame_union
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler

    built = build("wan2.1")
    source = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    patched, calls = recording(built.model)
    mask, soft, _ = _find(patched, built.positive, built.negative, source, draws=2, threshold=0.3)
    assert mask.shape == soft.shape == (9, 64, 64) and len(calls) == 2
    assert torch.equal(mask[1], mask[4]) and torch.equal(mask[5], mask[8])  # latent frames 1 and 2
    assert 0 < float(mask.mean()) < 1
    out = run_latent_sampler(built.model, built.positive, built.negative, {"samples": source}, mask, 0, 2, 3.0,
                             "euler", "simple", 1.0, 1, 0, 0.0)
    keep = (cover_mask(frame_union(mask[:, None], source.shape[2]), 8) == 0).expand_as(out)
    assert torch.equal(out[keep], source.expand_as(out)[keep])
