"""Video latents [B,C,T,H,W] on the latent path: a tiny Wan 2.1 model built as ComfyUI builds a
checkpoint's (its detection of the real Wan 2.1 14B layout picks ``supported_models.WAN21_T2V`` and
gives the config, sizes shrunk; ``get_model()`` in a ``ModelPatcher``; Wan 2.2 A14B has the same layout
and VAE), sampled through ``comfy.sample.sample_custom``.

What the model is given at every call is recorded through ComfyUI's public UNet wrapper and
compared with the source noised by the model's own ``model_sampling.noise_scaling`` at that call's
sigma, outside a latent mask the test builds by hand from the per-frame pixel masks (latent frame 0
= frame 0, latent frame t = frames 4t-3..4t, a cell edited wherever any pixel of those frames is).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blended.errors import InputError
from blended.latent.crop_stitch import crop_for_model, frame_union, latent_pixel_mask, stitch
from tests.support.latent_families import CTX, build, recording
from tests.support.sd15_fixture import comfy_engine_path

FRAMES, SIZE, LATENT_FRAMES = 9, 64, 3  # Wan: T = 1 + (F-1)//4


@pytest.fixture(scope="module")
def wan():
    """Wan 2.1 T2V as ComfyUI detects it from the real layout, sizes shrunk (tests/support/latent_families.py)."""
    return build("wan2.1").model


def moving_mask():
    """A blob that moves right frame by frame, and a 1-px stroke in frame 6 only."""
    m = torch.zeros(FRAMES, SIZE, SIZE)
    for f in range(FRAMES):
        m[f, 20:32, 4 + 4 * f : 16 + 4 * f] = 1
    m[6, 50, 10:40] = 1
    return m


def expected_latent_mask(mask, radius=0):
    """By hand: per latent frame the union of the pixel frames it encodes, dilated, max-pooled by 8."""
    groups = [[0]] + [list(range(4 * t - 3, 4 * t + 1)) for t in range(1, LATENT_FRAMES)]
    out = []
    for g in groups:
        u = mask[g].amax(0)[None, None]
        if radius:
            u = F.max_pool2d(u, 2 * radius + 1, stride=1, padding=radius)
        out.append(F.max_pool2d(u, 8, 8))
    return torch.stack(out, dim=2)  # [1,1,T,h,w]


def conditioning(seed):
    return [[torch.randn(1, 8, CTX, generator=torch.Generator().manual_seed(seed)), {}]]


def video_latent():
    return torch.randn(1, 16, LATENT_FRAMES, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))


def test_frame_union_is_the_union_of_the_frames_each_latent_frame_encodes():
    m = moving_mask()[:, None]
    u = frame_union(m, LATENT_FRAMES)
    assert u.shape == (1, 1, LATENT_FRAMES, SIZE, SIZE)
    assert torch.equal(u[0, 0, 0], m[0, 0])
    assert torch.equal(u[0, 0, 1], m[1:5, 0].amax(0)) and torch.equal(u[0, 0, 2], m[5:9, 0].amax(0))
    one = frame_union(m[4:5], LATENT_FRAMES)  # one mask for every frame
    assert one.shape == u.shape and all(torch.equal(one[0, 0, t], m[4, 0]) for t in range(LATENT_FRAMES))
    same = frame_union(m[:3], 3)  # no temporal compression: frame by frame
    assert torch.equal(same[0, 0], m[:3, 0])
    eight = frame_union(torch.cat([m, m]).narrow(0, 0, 17), 3)  # LTXV / Cosmos: 8 frames per latent frame
    assert torch.equal(eight[0, 0, 2], torch.cat([m, m])[9:17, 0].amax(0))


@pytest.mark.parametrize("frames,latent_frames", [(7, 3), (9, 1), (8, 3), (11, 3)])
def test_wrong_frame_count_names_the_mask_and_the_fix(frames, latent_frames):
    with pytest.raises(InputError, match=r"mask has \d+ frames but the video latent has \d+ latent frames.*1 \+ 4n"):
        latent_pixel_mask(torch.ones(frames, 1, SIZE, SIZE), (1, 16, latent_frames, SIZE // 8, SIZE // 8), 1)


def test_video_background_is_the_source_at_every_call_and_final(wan):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import schedule

    latent, mask = video_latent(), moving_mask()
    patched, calls = recording(wan)
    steps, seed, batch, shrink = 4, 5, 2, 8
    out = run_latent_sampler(patched, conditioning(0), conditioning(1), {"samples": latent}, mask, seed, steps, 3.0,
                             "euler", "simple", 1.0, batch, shrink, 0.5)
    assert out.shape == (batch, *latent.shape[1:]) and torch.isfinite(out).all()

    ms = wan.get_model_object("model_sampling")
    sigmas = schedule(wan, steps, "euler", "simple", 1.0)
    radii = [shrink, 4, 0, 0]  # shrink_px 8 over half of 4 steps: 8, round(8 * 0.5), then the precise mask
    per_step = [expected_latent_mask(mask, r) for r in radii]
    assert int(per_step[0].sum()) > int(per_step[-1].sum())
    src = wan.model.latent_format.process_in(latent.float())
    noise = torch.cat([torch.randn((1, *latent.shape[1:]), generator=torch.Generator().manual_seed(seed + i))
                       for i in range(batch)])
    assert len(calls) == steps  # one batched cond + uncond model call per euler step
    for i, (x, timestep, cond_or_uncond) in enumerate(calls):
        assert len(cond_or_uncond) == 2 and x.dim() == 5
        for chunk, rows in enumerate(x.chunk(2)):
            sigma = timestep.chunk(2)[chunk]
            torch.testing.assert_close(sigma, torch.full_like(sigma, float(sigmas[i])), rtol=1e-6, atol=0)
            expected = ms.noise_scaling(sigma, noise, src)  # (1-σ)·x0 + σ·n for Wan's flow model
            outside = (per_step[i] == 0).expand_as(rows)
            assert torch.equal(rows[outside], expected[outside]), f"call {i}: background is not the noised source"
            if i > 0:
                assert not torch.equal(rows[~outside], expected[~outside])
            if radii[i] > 0 and i > 0:  # the dilated ring is still edited: shrinking is per frame
                ring = ((per_step[i] > 0) & (per_step[-1] == 0)).expand_as(rows)
                assert bool(ring.any()) and not torch.equal(rows[ring], expected[ring])
    final = (per_step[-1] == 0).expand_as(out)
    assert torch.equal(out[final], latent.expand_as(out)[final])  # the final background, bit for bit
    assert not torch.equal(out[~final], latent.expand_as(out)[~final])
    stroke_only = expected_latent_mask(torch.where(torch.arange(FRAMES)[:, None, None] == 6, moving_mask(), 0) *
                                       (torch.arange(SIZE)[:, None] == 50))
    cells = (stroke_only > 0).expand_as(out)
    assert bool(cells[:, :, 2].any()) and not torch.equal(out[cells], latent.expand_as(out)[cells])


def test_sampler_object_blends_a_video_latent_inside_core_sample_custom(wan):
    import comfy.sample

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler, schedule

    latent, mask = video_latent(), moving_mask()
    patched, calls = recording(wan)
    sigmas = schedule(wan, 3, "euler", "simple", 1.0)
    sampler = BlendingSampler("euler", pixel_mask=mask[:, None], shrink_px=0, shrink_fraction=0.0)
    noise = comfy.sample.prepare_noise(latent, 11)
    out = comfy.sample.sample_custom(patched, noise, 2.0, sampler, sigmas, conditioning(0), conditioning(1), latent)
    ms = wan.get_model_object("model_sampling")
    src = wan.model.latent_format.process_in(latent.float())
    cover = expected_latent_mask(mask)
    assert len(calls) == 3
    for x, timestep, cond_or_uncond in calls:
        for chunk, rows in enumerate(x.chunk(len(cond_or_uncond))):
            outside = (cover == 0).expand_as(rows)
            expected = ms.noise_scaling(timestep.chunk(len(cond_or_uncond))[chunk], noise, src)
            assert torch.equal(rows[outside], expected[outside])
    final = (cover == 0).expand_as(out)
    # through process_latent_out (Wan's per-channel mean/std) the background is the source up to rounding
    torch.testing.assert_close(out[final], latent[final], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[~final], latent[~final])


def test_video_crop_and_stitch_per_frame_keep_the_background_exact():
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(FRAMES, 3, 96, 128, generator=gen)
    mask = torch.zeros(FRAMES, 1, 96, 128)
    for f in range(FRAMES):
        mask[f, :, 30:50, 20 + 5 * f : 40 + 5 * f] = 1
    crop_img, crop_mask, crop = crop_for_model(frames, mask, 64, 16, 0.25)
    assert crop_img.shape[0] == FRAMES and crop_mask.shape[0] == FRAMES  # one box for the whole clip
    samples = 2
    edited = torch.rand(samples * FRAMES, 3, *crop.size, generator=gen)  # VAEDecode of 2 clips: clip after clip
    full, weights = stitch(crop, edited, video=True)
    assert full.shape == (samples * FRAMES, 3, 96, 128)
    for i in range(samples * FRAMES):
        outside = (mask[i % FRAMES] == 0).expand(3, -1, -1)
        assert torch.equal(full[i][outside], frames[i % FRAMES][outside]), f"frame {i}: background changed"
        assert not torch.equal(full[i][~outside], frames[i % FRAMES][~outside])
        assert torch.equal(weights[i], mask[i % FRAMES])
    with pytest.raises(InputError, match="the 9 frames of the cropped clip"):
        stitch(crop, edited[:-1], video=True)


@pytest.fixture(scope="module")
def wan_vae():
    """A Wan 2.1 VAE that core's ``comfy.sd.VAE`` detects from its keys (its width is read off
    ``decoder.head.0.gamma``: 8 here, 96 in the real file), random weights."""
    comfy_engine_path()
    import comfy.ldm.wan.vae
    import comfy.sd

    torch.manual_seed(1)
    net = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    # ComfyUI builds its modules without initialising them: every tensor gets a value here
    sd = {k: (torch.randn_like(v) * 0.1 if v.dim() > 1 else torch.zeros_like(v)) for k, v in net.state_dict().items()}
    return comfy.sd.VAE(sd=sd)


def test_video_edit_through_the_nodes_and_a_wan_vae_keeps_every_frame_outside_its_mask(wan, wan_vae):
    """Crop -> Wan VAE encode (9 frames -> 3 latent frames) -> sampler -> Wan VAE decode ->
    stitch with ``video`` on: every output frame outside its own mask is the source frame."""
    from blended_diffusion_pack.nodes.latent_nodes import BlendedLatentCrop, BlendedLatentStitch, run_latent_sampler
    from tests.support.comfy_harness import photo

    h, w, samples = 80, 112, 2
    frames = torch.stack([torch.from_numpy(photo(w, h, seed=f)).float().div(255) for f in range(FRAMES)])
    mask = torch.zeros(FRAMES, h, w)
    for f in range(FRAMES):
        mask[f, 30:46, 20 + 6 * f : 36 + 6 * f] = 1
    with torch.inference_mode():
        crop_img, crop_mask, crop = BlendedLatentCrop.execute(frames, mask, 64, 16, 0.25, 0).result
        latent = {"samples": wan_vae.encode(crop_img[..., :3])}  # what core VAEEncode runs
        assert latent["samples"].shape[:3] == (1, 16, LATENT_FRAMES)
        out = run_latent_sampler(wan, conditioning(0), conditioning(1), latent, crop_mask, 2, 3, 2.0, "euler",
                                 "simple", 1.0, samples, 8, 0.5)
        clips = wan_vae.decode(out)
        assert clips.shape[:2] == (samples, FRAMES)  # Wan decodes 4T-3 frames per latent clip
        decoded = clips.reshape(-1, *clips.shape[-3:])  # as core VAEDecode flattens them: clip after clip
        full, paste, _ = BlendedLatentStitch.execute(crop, decoded, 0, video=True).result
    assert full.shape == (samples * FRAMES, h, w, 3)
    for i in range(samples * FRAMES):
        f = i % FRAMES
        outside = (mask[f] == 0)[..., None].expand(-1, -1, 3)
        assert torch.equal(full[i][outside], frames[f][outside]), f"output frame {i}: background changed"
        assert not torch.equal(full[i][~outside], frames[f][~outside])
        assert torch.equal(paste[i], mask[f])


def test_background_reconstruction_refuses_a_video_latent_with_the_fix(wan_vae):
    from blended.latent.reconstruct import ReconstructSettings
    from blended_diffusion_pack.nodes.latent_nodes import reconstruct_images

    frames = torch.rand(FRAMES, 64, 64, 3)
    latent = {"samples": torch.randn(1, 16, LATENT_FRAMES, 8, 8)}
    with pytest.raises(InputError, match=r"latent is a video latent.*VAEDecode.*Blended Latent Stitch \(video on\)"):
        reconstruct_images(wan_vae, frames, torch.ones(FRAMES, 64, 64), latent, ReconstructSettings(iterations=0))
