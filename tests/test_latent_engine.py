"""The latent path in ComfyUI's own sampling code, on a random SD1.5 checkpoint that core's
``load_checkpoint_guess_config`` (what CheckpointLoaderSimple calls) detects as SD1.5.

The sampler runs through ``comfy.sample.sample_custom`` with core CFG, conditioning and samplers.
What the UNet is given at every call is recorded through ComfyUI's public model wrapper
(``ModelPatcher.set_model_unet_function_wrapper``), independently of our code, and checked against
the source latent noised, by hand, to the level of that call. Tiny latents (64x64 px), few steps.
"""

from __future__ import annotations

import pytest
import torch

from blended.latent.blend import cover_mask, step_masks
from tests.support.comfy_harness import photo
from tests.support.latent_families import recording
from tests.support.sd15_fixture import encode_text

SIZE = 64


def source_image(seed=0):
    return torch.from_numpy(photo(SIZE, SIZE, seed)).float().div(255)[None]


def edit_mask():
    """A blob and a 1-px stroke (which an area downscale would lose)."""
    m = torch.zeros(1, SIZE, SIZE)
    m[:, 16:34, 30:50] = 1
    m[:, 52, 4:40] = 1
    return m


def test_random_checkpoint_is_detected_as_sd15(sd15):
    model, clip, vae = sd15
    assert type(model.model.model_config).__name__ == "SD15"
    assert type(model.get_model_object("model_sampling")).__name__.startswith("ModelSampling")
    assert vae.latent_channels == 4


@pytest.mark.parametrize("sampler_name,denoise,steps", [("euler", 1.0, 4), ("euler_ancestral", 0.6, 3)])
def test_background_is_the_source_at_the_samples_level_at_every_step(sd15, sampler_name, denoise, steps):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import schedule

    model, clip, vae = sd15
    image, mask = source_image(), edit_mask()
    latent = vae.encode(image).detach()
    patched, calls = recording(model)
    seed, batch = 7, 2
    out = run_latent_sampler(patched, encode_text(clip, "a red apple"), encode_text(clip, ""), {"samples": latent},
                             mask, seed, steps, 5.0, sampler_name, "normal", denoise, batch, 16, 0.5)
    assert out.shape == (batch, 4, SIZE // 8, SIZE // 8) and torch.isfinite(out).all()

    sigmas = schedule(model, steps, sampler_name, "normal", denoise)
    per_step = step_masks(mask[:, None], 8, steps, 16, 0.5)
    assert int(per_step[0].sum()) > int(per_step[-1].sum())  # the mask really shrinks
    src = model.model.latent_format.process_in(latent.float())
    noise = torch.cat([torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(seed + i))
                       for i in range(batch)])
    levels = [float(s) for s in sigmas[:-1]]
    assert len(calls) == steps  # euler / euler_ancestral: one (batched cond + uncond) UNet call per step
    for i, (x, timestep, cond_or_uncond) in enumerate(calls):
        assert len(cond_or_uncond) == 2
        for chunk, rows in enumerate(x.chunk(len(cond_or_uncond))):
            sigma = timestep.chunk(len(cond_or_uncond))[chunk]
            assert torch.allclose(sigma, torch.tensor(levels[i]), rtol=1e-6)  # the sample's own level
            expected = src + noise * sigma.reshape(-1, 1, 1, 1)  # x0 + σ·n, k-diffusion's eps-model level
            outside = (per_step[i] == 0).expand_as(rows)
            assert torch.equal(rows[outside], expected[outside]), f"step {i}: background is not the source at σ"
            if i > 0:  # (at the first step of a denoise < 1 run the whole sample is the noised source)
                assert not torch.equal(rows[~outside], expected[~outside])  # the edit area follows the sample

    final = per_step[-1].expand_as(out) == 0
    assert torch.equal(out[final], latent.expand_as(out)[final])  # the final background, bit for bit
    assert not torch.equal(out[~final], latent.expand_as(out)[~final])
    stroke = torch.zeros(1, 1, SIZE, SIZE)
    stroke[..., 52, 4:40] = 1
    cells = cover_mask(stroke, 8).expand_as(out) > 0
    assert bool(cells.any()) and not torch.equal(out[cells], latent.expand_as(out)[cells])  # thin stroke edited


def test_samples_are_reproducible_per_seed(sd15):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    model, clip, vae = sd15
    latent = vae.encode(source_image()).detach()
    pos, neg = encode_text(clip, "a red apple"), encode_text(clip, "")
    args = ("euler", "normal", 1.0)
    two = run_latent_sampler(model, pos, neg, {"samples": latent}, edit_mask(), 3, 2, 5.0, *args, 2, 0, 0.0)
    one = run_latent_sampler(model, pos, neg, {"samples": latent}, edit_mask(), 4, 2, 5.0, *args, 1, 0, 0.0)
    # same seed, other batch: equal up to batched-kernel rounding (random UNets give large latents)
    torch.testing.assert_close(two[1:2], one, rtol=2e-3, atol=2e-3)
    assert not torch.allclose(two[0], two[1])


def example_photo(size):
    """The shipped example photo (scikit-image's CC0 coffee), scaled: real image statistics."""
    import numpy as np
    from PIL import Image

    from tests.support.comfy_harness import WORKFLOWS

    im = Image.open(WORKFLOWS / "examples" / "blended_object.png").convert("RGB").resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im).copy()).float().div(255)[None]


# small enough for the 2-core CI box; iterations and learning rate are the node's defaults
REC_SIZE = 32


def test_background_reconstruction_lowers_the_error_outside_and_leaves_the_shared_vae_alone(sd15):
    from blended.latent.reconstruct import ReconstructSettings
    from blended_diffusion_pack.nodes.latent_nodes import reconstruct_images

    _, _, vae = sd15
    source = example_photo(REC_SIZE)
    mask = torch.zeros(1, REC_SIZE, REC_SIZE)
    mask[:, 8:24, 8:20] = 1
    latent = vae.encode(source).detach()
    cells = cover_mask(mask[:, None], 8).expand_as(latent) > 0
    edited = torch.where(cells, torch.randn(latent.shape, generator=torch.Generator().manual_seed(0)), latent)
    before = {k: v.detach().clone() for k, v in vae.first_stage_model.state_dict().items()}
    settings = ReconstructSettings(background_weight=100.0, feather=2)
    images, report, stats = reconstruct_images(vae, source, mask, {"samples": edited}, settings)

    after = vae.first_stage_model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the shared VAE's weights changed"
    (s,) = stats
    # the paper's objective (squared error outside the mask, in the band the stitch shows) at least 10x
    # lower than the plain decode
    assert (s["plain_outside"] / s["tuned_outside"]) ** 2 >= 10, report
    # ... while inside the mask the edit is kept: the tuned decode stays closer to the plain decode of
    # the edited latent than the source photo is (the background's pull does not paint the source in)
    with torch.no_grad():
        plain = vae.decode(edited).float()[..., :3]
    inside = (mask > 0)[..., None].expand_as(plain)
    source_vs_plain = float((plain[inside] - source[inside]).pow(2).mean().sqrt())
    assert s["inside_change"] < source_vs_plain, (report, source_vs_plain)
    outside = (mask == 0)[..., None].expand_as(images)
    assert torch.equal(images[outside], source[outside])  # exact paste: the caller's own values
    assert s["max_outside"] == 0 and "outside the mask max |diff| 0 (0 = exact)" in report
    assert s["max_band"] > 0  # feathered: the band blends the edit into the source
    assert not torch.equal(images[~outside], source[~outside])


def test_reconstruction_reports_bad_inputs(sd15):
    from blended.errors import InputError
    from blended.latent.reconstruct import ReconstructSettings
    from blended_diffusion_pack.nodes.latent_nodes import reconstruct_images

    _, _, vae = sd15
    source = example_photo(32)
    latent = {"samples": vae.encode(source).detach()}
    mask = torch.ones(1, 32, 32)
    with pytest.raises(InputError, match="source image is 64x64"):
        reconstruct_images(vae, example_photo(64), torch.ones(1, 64, 64), latent, ReconstructSettings(iterations=0))
    with pytest.raises(InputError, match="learning_rate"):
        reconstruct_images(vae, source, mask, latent, ReconstructSettings(learning_rate=0))
    with pytest.raises(InputError, match="LATENT"):
        reconstruct_images(vae, source, mask, None, ReconstructSettings(iterations=0))


def test_sampler_object_blends_inside_core_sample_custom(sd15):
    """The SAMPLER for core SamplerCustom: core noise, core sigmas, the same per-step background."""
    import comfy.sample

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler, schedule

    model, clip, vae = sd15
    mask = edit_mask()
    latent = vae.encode(source_image(1)).detach()
    patched, calls = recording(model)
    sigmas = schedule(model, 3, "euler", "normal", 1.0)
    sampler = BlendingSampler("euler", pixel_mask=mask[:, None], shrink_px=8, shrink_fraction=0.5)
    noise = comfy.sample.prepare_noise(latent, 11)
    out = comfy.sample.sample_custom(patched, noise, 4.0, sampler, sigmas, encode_text(clip, "a cat"),
                                     encode_text(clip, ""), latent)
    per_step = step_masks(mask[:, None], 8, 3, 8, 0.5)
    src = model.model.latent_format.process_in(latent.float())
    assert len(calls) == 3
    for i, (x, timestep, cond_or_uncond) in enumerate(calls):
        for chunk, rows in enumerate(x.chunk(len(cond_or_uncond))):
            sigma = timestep.chunk(len(cond_or_uncond))[chunk].reshape(-1, 1, 1, 1)
            outside = (per_step[i] == 0).expand_as(rows)
            assert torch.equal(rows[outside], (src + noise * sigma)[outside])
    final = per_step[-1].expand_as(out) == 0
    # through process_latent_out the background is the source up to float rounding
    torch.testing.assert_close(out[final], latent[final], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[~final], latent[~final])
