"""Video latents [B,C,T,H,W] on the latent path, family by family: every video family of
``VIDEO_FAMILIES`` (Wan 2.1 T2V / I2V / Fun Control / VACE, Wan 2.2 5B, LTXV, HunyuanVideo T2V / I2V,
HunyuanVideo 1.5, Mochi, Cosmos 1.0 T2V / I2V, Cosmos Predict2 I2V; CogVideoX T2V / I2V / Inpaint where the
engine has them) as a tiny model built as ComfyUI builds a checkpoint's (its detection of the family's real
layout picks the class in ``comfy.supported_models`` and gives the config, sizes shrunk; ``get_model()`` in
a ``ModelPatcher``), with conditioning of the family's real keys, sampled through ComfyUI's own sampling.

What the model is given at every call is recorded through ComfyUI's public UNet wrapper
(tests/support/video_proof.py) and compared with the source noised by the model's own
``model_sampling.noise_scaling`` at that call's sigma, outside a latent mask the test builds by hand from
the per-frame pixel masks (latent frame 0 = frame 0, latent frame t = frames k(t-1)+1..kt for the family's
k, a cell edited wherever any pixel of those frames is); the family's conditioning reaches the model
unchanged; one call per euler step; masks of the wrong frame count or size fail naming the mask and the
fix; crop and stitch keep every pixel outside a frame's mask. The Wan 2.1 VAE round trip and the frame
union's own rules are tested on Wan 2.1 alone.
"""

from __future__ import annotations

import pytest
import torch

from blended.errors import InputError
from blended.latent.crop_stitch import crop_for_model, frame_union, latent_pixel_mask, stitch
from tests.support import video_proof
from tests.support.latent_families import CTX, VIDEO_FAMILIES, build
from tests.support.sd15_fixture import comfy_engine_path
from tests.support.video_proof import clip_frames, expected_latent_mask, moving_mask

FRAMES, SIZE, LATENT_FRAMES = 9, 64, 3  # Wan: T = 1 + (F-1)//4


@pytest.fixture(scope="module")
def wan():
    """Wan 2.1 T2V as ComfyUI detects it from the real layout, sizes shrunk (tests/support/latent_families.py)."""
    return build("wan2.1").model


def wan_mask():
    """A blob that moves right frame by frame over a 9-frame clip, and a 1-px stroke in frame 6 only."""
    m = torch.zeros(FRAMES, SIZE, SIZE)
    for f in range(FRAMES):
        m[f, 20:32, 4 + 4 * f : 16 + 4 * f] = 1
    m[6, 50, 10:40] = 1
    return m


def conditioning(seed):
    return [[torch.randn(1, 8, CTX, generator=torch.Generator().manual_seed(seed)), {}]]


def test_frame_union_is_the_union_of_the_frames_each_latent_frame_encodes():
    m = wan_mask()[:, None]
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
    with pytest.raises(InputError, match=r"mask has \d+ frames but the video latent has \d+ latent frames.*1 \+ kn"):
        latent_pixel_mask(torch.ones(frames, 1, SIZE, SIZE), (1, 16, latent_frames, SIZE // 8, SIZE // 8), 1)


@pytest.fixture(scope="module", params=list(VIDEO_FAMILIES))
def vid(request):
    """Each video family as ComfyUI detects it from its real layout, sizes shrunk (tests/support/latent_families.py)."""
    return build(request.param)


def _source(built, seed=3):
    return torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(seed))


def test_each_family_knows_its_cells_and_frames(vid):
    """The mask checks read the model's own pixels per cell and frames per latent frame."""
    from blended_diffusion_pack.nodes.latent_sampling import latent_factor, latent_frame_factor

    base = vid.model.model
    assert base.latent_format.latent_dimensions == 3 and base.latent_format.latent_channels == vid.family.channels
    assert (latent_factor(base), latent_frame_factor(base)) == (vid.family.factor, vid.family.temporal)


def test_background_is_the_source_at_every_call_and_final(vid):
    """The Blended Latent Sampler's way in: per call, per step's mask (shrinking from one cell), the
    background bit for bit, the conditioning unchanged; a 1-px stroke in one frame edits its latent frame."""
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import schedule

    fam, source, mask = vid.family, _source(vid), moving_mask(vid.family)
    patched, calls = video_proof.recording(vid.model)
    steps, seed, shrink = 3, 5, fam.factor
    out = run_latent_sampler(patched, vid.positive, vid.negative, {"samples": source}, mask, seed, steps, 3.0, "euler",
                             "simple", 1.0, 1, shrink, 0.5)
    assert out.shape == source.shape and torch.isfinite(out).all()
    radii = [shrink, round(shrink / 2), 0]  # shrink_px over half of 3 steps (2 of them), then the precise mask
    per_step = [expected_latent_mask(mask, fam, r) for r in radii]
    assert int(per_step[0].sum()) > int(per_step[-1].sum())
    noise = torch.randn(source.shape, generator=torch.Generator().manual_seed(seed))
    video_proof.check_calls(vid, calls, source, noise, schedule(vid.model, steps, "euler", "simple", 1.0), per_step)
    ring = ((per_step[1] > 0) & (per_step[-1] == 0)).expand_as(calls[1][0][:1])  # still edited: shrinking per frame
    assert bool(ring.any()) and not torch.equal(calls[1][0][:1][ring], calls[2][0][:1][ring])
    final = (per_step[-1] == 0).expand_as(out)
    assert torch.equal(out[final], source[final])  # the final background, bit for bit
    assert not torch.equal(out[~final], source[~final])
    stroke = torch.zeros_like(mask)
    stroke[-2] = mask[-2] * (torch.arange(mask.shape[1]) == 6 * fam.factor + 1)[:, None]
    cells = (expected_latent_mask(stroke, fam) > 0).expand_as(out)
    assert bool(cells[:, :, -1].any()) and not bool(cells[:, :, :-1].any())
    assert not torch.equal(out[cells], source[cells])


def test_sampler_object_inside_core_sample_custom(vid):
    """SamplerCustom's way in: the SAMPLER makes its masks from the run's sigmas, same proof per call."""
    import comfy.sample

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler, schedule

    source, mask = _source(vid, 4), moving_mask(vid.family)
    patched, calls = video_proof.recording(vid.model)
    sigmas = schedule(vid.model, 2, "euler", "simple", 1.0)
    sampler = BlendingSampler("euler", pixel_mask=mask[:, None], shrink_px=0, shrink_fraction=0.0)
    noise = comfy.sample.prepare_noise(source, 11)
    out = comfy.sample.sample_custom(patched, noise, 2.0, sampler, sigmas, vid.positive, vid.negative, source)
    cover = expected_latent_mask(mask, vid.family)
    video_proof.check_calls(vid, calls, source, noise, sigmas, [cover, cover])
    final = (cover == 0).expand_as(out)
    # through process_latent_out (a scale, or a per-channel mean/std) the background is the source up to rounding
    torch.testing.assert_close(out[final], source[final], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[~final], source[~final])


def test_a_mask_of_the_wrong_frames_or_size_names_the_mask_and_the_fix(vid):
    """Frame counts that no clip of this model's VAE has, one that another VAE's k would explain (a Wan latent
    with LTXV's 17 frames), and a mask at another model's scale: each refused before any model call."""
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    fam, source = vid.family, _source(vid)
    mask = moving_mask(fam)
    k = fam.temporal
    other_k = 8 if k != 8 else 4
    args = (vid.positive, vid.negative, {"samples": source})
    for frames in (mask.shape[0] - 1, mask.shape[0] + 1, 1 + other_k * (fam.latent_frames - 1)):
        wrong = torch.ones(frames, *mask.shape[1:])
        message = (rf"mask has {frames} frames but the video latent has {fam.latent_frames} latent frames: this "
                   rf"model's VAE folds {k} frames .* {mask.shape[0]} frames.*1 \+ {k}n frames before VAEEncode")
        with pytest.raises(InputError, match=message):
            run_latent_sampler(vid.model, *args, wrong, 0, 2, 2.0, "euler", "simple", 1.0, 1, 0, 0.0)
    h, w = vid.latent_hw
    other = fam.factor * 2 if fam.factor < 32 else 8  # drawn at another VAE's scale
    with pytest.raises(InputError, match=rf"mask is {w * other}x{h * other} px but the latent is {w}x{h} cells"):
        run_latent_sampler(vid.model, *args, torch.ones(1, h * other, w * other), 0, 2, 2.0, "euler", "simple", 1.0,
                           1, 0, 0.0)


def test_crop_at_the_family_multiple_maps_onto_whole_cells_and_the_stitch_is_exact(vid):
    """Crop a clip at the family's multiple (its cell x patch), map the crop's per-frame mask onto this
    model's latent cells and frames, stitch any decoded clips: every pixel outside its frame's mask is the
    source's, bit for bit."""
    fam = vid.family
    frames_n = clip_frames(fam)
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(frames_n, 3, 90, 130, generator=gen)
    mask = torch.zeros(frames_n, 1, 90, 130)
    for f in range(frames_n):
        mask[f, :, 30:50, 20 + 3 * f : 40 + 3 * f] = 1
    resolution = max(64, 2 * fam.multiple)
    crop_img, crop_mask, crop = crop_for_model(frames, mask, resolution, fam.multiple, 0.25)
    h, w = crop.size
    assert h % fam.multiple == 0 and w % fam.multiple == 0 and min(h, w) == resolution
    shape = (1, fam.channels, fam.latent_frames, h // fam.factor, w // fam.factor)
    cells, f = latent_pixel_mask(crop_mask, shape, 1, fam.factor, fam.temporal)
    assert f == fam.factor and cells.shape == (1, 1, fam.latent_frames, h, w)
    assert torch.equal(cells[0, 0, -1], crop_mask[-fam.temporal :, 0].amax(0))
    samples = 2
    edited = torch.rand(samples * frames_n, 3, h, w, generator=gen)
    full, weights = stitch(crop, edited, video=True)
    for i in range(samples * frames_n):
        outside = (mask[i % frames_n] == 0).expand(3, -1, -1)
        assert torch.equal(full[i][outside], frames[i % frames_n][outside]), f"frame {i}: background changed"
        assert not torch.equal(full[i][~outside], frames[i % frames_n][~outside])


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
