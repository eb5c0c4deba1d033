"""ComfyUI 0.33's video families whose latents carry audio next to the video, LTX-2 (``LTXAV``) and
MiniMax H3 (``MiniMaxH3``), and Kandinsky 5 video (``Kandinsky5``), on the latent path: tiny models
built as ComfyUI builds a checkpoint's (its detection of the real layout, sizes shrunk;
tests/support/latent_families.py), sampled through ``comfy.sample.sample_custom``.

An audio + video latent is a NestedTensor [video, audio] (core Concat AV Latent, Empty MiniMax H3 AV
Latent); ComfyUI samples it as one flat pack [B,1,N] (``comfy.utils.pack_latents``). The mask edits
the picture: the video outside the step's mask, and by default the whole audio, are the source
noised at every model call; the final background and the final audio are the source, bit for bit.
``edit_audio`` regenerates the audio instead.

Per family, at every model call recorded through ComfyUI's public UNet wrapper: the input outside the
step's mask (the mask built here by hand from the per-frame pixel masks: the union of the frames each
latent frame encodes, dilated, max-pooled to cells) is the source (``process_latent_in``, MiniMax H3's
audio scale included) noised by the model's own ``noise_scaling`` at that call's sigma, bit for bit;
the conditioning reaches the diffusion model as the family's own ``extra_conds`` makes it (LTX-2 and
MiniMax H3 run their text through the model's connectors / token refiner once per sampling); one
model evaluation per step. On ComfyUI 0.3.75 these classes do not exist: the model tests skip, naming
the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from blended.errors import InputError
from blended.latent.blend import pack_stream_masks
from blended.latent.crop_stitch import frame_groups, frame_union
from tests.support.latent_families import CTX, _pooled, build
from tests.support.sd15_fixture import comfy_engine_path


@dataclass(frozen=True)
class Case:
    frames: int  # frames of the clip the video latent was encoded from
    groups: tuple  # by hand: the frames [start, end) each latent frame encodes
    px: tuple  # (H, W) of the frames
    factor: int  # pixels per latent cell
    audio: tuple | None  # the audio stream's shape (batch 1), None for a video-only family
    batch: int  # samples per run (MiniMax H3 runs one sample per model call)
    evaluations: int  # model calls per step (MiniMax H3: cond and uncond apart; their layouts differ)


CASES = {
    # LTX-2: 8 frames per latent frame after the first; audio [B, 8 channels, T_a, 16 mel bins]
    "ltx2": Case(17, ((0, 1), (1, 9), (9, 17)), (96, 128), 32, (1, 8, 10, 16), 2, 1),
    # MiniMax H3: chunks of 17 frames, each 4-fold causal into 5 latent frames, the last 3 dropped
    "minimax-h3": Case(22, ((0, 1), (1, 5), (5, 9), (9, 13), (13, 17), (17, 18), (18, 22)), (64, 96), 16,
                       (1, 32, 2, 37), 1, 2),
    # Kandinsky 5 video: Hunyuan Video's VAE, 4 frames per latent frame after the first; no audio
    "kandinsky5-video": Case(9, ((0, 1), (1, 5), (5, 9)), (64, 64), 8, None, 2, 1),
}
STEPS, SEED, SHRINK = 4, 7, 0.5


@pytest.fixture(scope="module", params=list(CASES))
def family(request):
    built = build(request.param)
    return request.param, CASES[request.param], built


def moving_mask(case: Case) -> torch.Tensor:
    """A blob moving right frame by frame ([F,H,W]), one cell wide at least at every size."""
    H, W = case.px
    m = torch.zeros(case.frames, H, W)
    for f in range(case.frames):
        x = 2 + f * (W - 3 * case.factor) // case.frames
        m[f, case.factor : 2 * case.factor + 2, x : x + case.factor] = 1
    return m


def expected_latent_mask(case: Case, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """By hand: per latent frame the union of its frames, dilated by ``radius`` px, max-pooled to cells."""
    out = []
    for a, b in case.groups:
        u = mask[a:b].amax(0)[None, None]
        if radius:
            u = F.max_pool2d(u, 2 * radius + 1, stride=1, padding=radius)
        out.append(F.max_pool2d(u, case.factor, case.factor, ceil_mode=True))
    return torch.stack(out, dim=2)  # [1,1,T,h,w]


def source_streams(built, case: Case) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    h, w = case.px[0] // case.factor, case.px[1] // case.factor
    video = torch.randn(1, built.family.channels, len(case.groups), h, w, generator=gen)
    return [video] + ([torch.randn(case.audio, generator=gen)] if case.audio else [])


def as_latent(streams):
    if len(streams) == 1:
        return streams[0]
    import comfy.nested_tensor

    return comfy.nested_tensor.NestedTensor(streams)


def conditioning(built, seed: int, name: str):
    """What the family's text encoder node gives: LTX-2's Gemma 3 features (not yet through the
    model's connectors), MiniMax H3's Qwen3-VL states, Kandinsky 5's Qwen2.5-VL + CLIP-L pooled."""
    ctx = torch.randn(1, 8, CTX, generator=torch.Generator().manual_seed(seed))
    extra = {"pooled_output": _pooled(seed)} if name == "kandinsky5-video" else dict(built.family.cond(0, 0, seed))
    return [[ctx, extra]]


def recording(model):
    """A clone of ``model`` whose diffusion-model calls are recorded: (input, sigma, cond_or_uncond, c)."""
    calls = []
    patched = model.clone()

    def wrapper(apply_model, args):
        calls.append((args["input"].detach().clone(), args["timestep"].detach().clone(),
                      list(args["cond_or_uncond"]), dict(args["c"])))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    return patched, calls


def model_space(model, streams):
    """The source as the sampler carries it: ``process_latent_in`` of the pack (MiniMax H3 scales its
    audio onto the video schedule there), unpacked again."""
    import comfy.utils

    packed, shapes = comfy.utils.pack_latents([s.float() for s in streams])
    base = model.model
    base.latent_shapes = shapes
    return comfy.utils.unpack_latents(base.process_latent_in(packed), shapes) if len(shapes) > 1 else \
        [base.process_latent_in(packed.reshape(streams[0].shape))]


def run_noise(streams, batch: int) -> list[torch.Tensor]:
    """The run's noise by hand: per sample (seed, seed + 1, ...) one generator draws video, then audio."""
    per_seed = []
    for i in range(batch):
        g = torch.Generator().manual_seed(SEED + i)
        per_seed.append([torch.randn((1, *s.shape[1:]), generator=g) for s in streams])
    return [torch.cat([p[k] for p in per_seed]) for k in range(len(streams))]


def unpack(x, streams):
    import comfy.utils

    if len(streams) == 1:
        return [x]
    return comfy.utils.unpack_latents(x, [(x.shape[0], *s.shape[1:]) for s in streams])


def expected_context(built, name: str, positive):
    """The text the diffusion model must get: the family's own preprocessing of the node's output."""
    ctx, extra = positive[0]
    dm = built.model.model.diffusion_model
    with torch.no_grad():
        if name == "ltx2":
            return dm.preprocess_text_embeds(ctx, unprocessed=extra["unprocessed_ltxav_embeds"])
        if name == "minimax-h3":
            return dm.preprocess_text_embeds(ctx)
    return ctx


def run(built, name, case, edit_audio=False):
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler

    streams = source_streams(built, case)
    positive, negative = conditioning(built, 1, name), conditioning(built, 2, name)
    patched, calls = recording(built.model)
    out = run_latent_sampler(patched, positive, negative, {"samples": as_latent(streams)}, moving_mask(case), SEED,
                             STEPS, 3.0, "euler", "simple", 1.0, case.batch, case.factor, SHRINK, edit_audio=edit_audio)
    return streams, positive, negative, calls, out


def test_every_call_sees_the_noised_source_outside_the_mask_and_the_audio_whole(family):
    from blended_diffusion_pack.nodes.latent_sampling import schedule, streams_of

    name, case, built = family
    streams, positive, negative, calls, out = run(built, name, case)
    ms = built.model.get_model_object("model_sampling")
    sigmas = schedule(built.model, STEPS, "euler", "simple", 1.0)
    radii = [case.factor, round(case.factor * 0.5), 0, 0]  # shrink over half of 4 steps, then the precise mask
    per_step = [expected_latent_mask(case, moving_mask(case), r) for r in radii]
    assert int(per_step[0].sum()) > int(per_step[-1].sum()) > 0
    src = model_space(built.model, streams)
    noise = run_noise(streams, case.batch)
    contexts = {0: expected_context(built, name, positive), 1: expected_context(built, name, negative)}
    assert len(calls) == STEPS * case.evaluations  # one evaluation of cond and uncond per euler step
    for n, (x, timestep, cond_or_uncond, c) in enumerate(calls):
        i = n // case.evaluations
        assert x.shape[0] == case.batch * len(cond_or_uncond)
        for chunk, kind in enumerate(cond_or_uncond):
            rows = unpack(x.chunk(len(cond_or_uncond))[chunk], streams)
            sigma = timestep.chunk(len(cond_or_uncond))[chunk]
            torch.testing.assert_close(sigma, torch.full_like(sigma, float(sigmas[i])), rtol=1e-6, atol=0)
            expected = [ms.noise_scaling(sigma, nz, s) for nz, s in zip(noise, src)]
            outside = (per_step[i] == 0).expand_as(rows[0])
            assert torch.equal(rows[0][outside], expected[0][outside]), f"call {n}: background is not the noised source"
            if i > 0:
                assert not torch.equal(rows[0][~outside], expected[0][~outside])
            for audio, want in zip(rows[1:], expected[1:]):
                assert torch.equal(audio, want), f"call {n}: the audio is not the noised source audio"
            context = c["c_crossattn"].chunk(len(cond_or_uncond))[chunk]
            torch.testing.assert_close(context, contexts[kind].expand_as(context), rtol=0, atol=0)
        if name == "kandinsky5-video":  # the pooled CLIP-L reaches the model as its y
            pooled = torch.cat([(positive, negative)[k][0][1]["pooled_output"] for k in cond_or_uncond])
            assert torch.equal(c["y"], pooled.repeat_interleave(case.batch, 0))
        if name == "ltx2":
            assert c["frame_rate"] == 25.0
            assert [tuple(s) for s in c["latent_shapes"]] == [(case.batch, *s.shape[1:]) for s in streams]
    final = (per_step[-1] == 0)
    video, *audio = streams_of(out)
    assert video.shape == (case.batch, *streams[0].shape[1:])
    assert torch.equal(video[final.expand_as(video)], streams[0].expand_as(video)[final.expand_as(video)])
    assert not torch.equal(video[~final.expand_as(video)], streams[0].expand_as(video)[~final.expand_as(video)])
    for got, source in zip(audio, streams[1:]):
        assert torch.equal(got, source.expand_as(got)), "the audio came back changed"


@pytest.fixture(scope="module", params=[name for name, case in CASES.items() if case.audio])
def av_family(request):
    return request.param, CASES[request.param], build(request.param)


def test_edit_audio_regenerates_the_audio_and_keeps_the_picture_background(av_family):
    from blended_diffusion_pack.nodes.latent_sampling import schedule, streams_of

    name, case, built = av_family
    streams, _, _, calls, out = run(built, name, case, edit_audio=True)
    ms = built.model.get_model_object("model_sampling")
    sigmas = schedule(built.model, STEPS, "euler", "simple", 1.0)
    src, noise = model_space(built.model, streams), run_noise(streams, case.batch)
    radii = [case.factor, round(case.factor * 0.5), 0, 0]
    outside = [expected_latent_mask(case, moving_mask(case), r) == 0 for r in radii]
    final = outside[-1]
    for n, (x, timestep, cond_or_uncond, _) in enumerate(calls):
        rows = unpack(x.chunk(len(cond_or_uncond))[0], streams)
        sigma = timestep.chunk(len(cond_or_uncond))[0]
        assert float(sigma[0]) == pytest.approx(float(sigmas[n // case.evaluations]))
        expected = [ms.noise_scaling(sigma, nz, s) for nz, s in zip(noise, src)]
        step = outside[n // case.evaluations].expand_as(rows[0])
        assert torch.equal(rows[0][step], expected[0][step])
        if n >= case.evaluations:  # from the second step on the audio is the sampler's own
            assert not torch.equal(rows[1], expected[1])
    video, audio = streams_of(out)
    assert torch.equal(video[final.expand_as(video)], streams[0].expand_as(video)[final.expand_as(video)])
    assert audio.shape == (case.batch, *streams[1].shape[1:]) and torch.isfinite(audio).all()
    assert not torch.equal(audio, streams[1].expand_as(audio))


def test_sampler_object_keeps_background_and_audio_inside_core_sample_custom(family):
    """The Blended Latent SAMPLER in core SamplerCustom: ComfyUI packs a NestedTensor latent and its
    noise (``prepare_noise``) itself; the SAMPLER finds the streams on the model and masks the pack."""
    import comfy.sample

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler, schedule, streams_of

    name, case, built = family
    streams = source_streams(built, case)
    latent = as_latent(streams)
    patched, calls = recording(built.model)
    sigmas = schedule(built.model, 3, "euler", "simple", 1.0)
    mask = moving_mask(case)
    sampler = BlendingSampler("euler", pixel_mask=mask[:, None], shrink_px=0, shrink_fraction=0.0)
    noise = comfy.sample.prepare_noise(latent, 11)
    out = comfy.sample.sample_custom(patched, noise, 2.0, sampler, sigmas, conditioning(built, 1, name),
                                     conditioning(built, 2, name), latent, seed=11)  # as core SamplerCustom
    ms = built.model.get_model_object("model_sampling")
    src = model_space(built.model, streams)
    cover = expected_latent_mask(case, mask, 0)
    assert len(calls) == 3 * case.evaluations
    for x, timestep, cond_or_uncond, _ in calls:
        for chunk in range(len(cond_or_uncond)):
            rows = unpack(x.chunk(len(cond_or_uncond))[chunk], streams)
            sigma = timestep.chunk(len(cond_or_uncond))[chunk]
            expected = [ms.noise_scaling(sigma, nz, s) for nz, s in zip(streams_of(noise), src)]
            outside = (cover == 0).expand_as(rows[0])
            assert torch.equal(rows[0][outside], expected[0][outside])
            for audio, want in zip(rows[1:], expected[1:]):
                assert torch.equal(audio, want)
    video, *audio = streams_of(out)
    outside = (cover == 0).expand_as(video)
    # through process_latent_out the background and the audio are the source up to its rounding
    torch.testing.assert_close(video[outside], streams[0][outside], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(video[~outside], streams[0][~outside])
    for got, source in zip(audio, streams[1:]):
        torch.testing.assert_close(got, source, rtol=1e-6, atol=1e-6)


def test_wrong_frame_count_and_size_name_the_mask_and_the_fix(family):
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler

    name, case, built = family
    latent = {"samples": as_latent(source_streams(built, case))}
    positive, negative = conditioning(built, 1, name), conditioning(built, 2, name)

    def sample(mask):
        run_latent_sampler(built.model, positive, negative, latent, mask, 0, 2, 1.0, "euler", "simple", 1.0, 1, 0, 0.0)

    T = len(case.groups)
    # the model's own k where its format has one (LTX-2, Kandinsky 5); MiniMax H3's chunked VAE: its clip length
    fix = {"ltx2": r"folds 8 frames .*1 \+ 8\*2 = 17", "minimax-h3": r"MiniMax H3: 22",
           "kandinsky5-video": r"folds 4 frames .*1 \+ 4\*2 = 9"}[name]
    with pytest.raises(InputError, match=rf"mask has {case.frames - 1} frames but the video latent has {T} latent "
                                         rf"frames.*{fix}.*Give one mask for all frames"):
        sample(moving_mask(case)[:-1])
    H, W = case.px
    with pytest.raises(InputError, match=rf"mask is {W * 2}x{H * 2} px but the latent is .* one cell of "
                                         rf"{case.factor}x{case.factor} px"):
        sample(torch.ones(1, H * 2, W * 2))


@pytest.mark.parametrize("name", list(CASES))
def test_a_crop_at_the_family_multiple_is_whole_cells_and_the_stitch_exact(name):
    """The Blended Latent Crop at the row's multiple cuts every frame of the clip at one box of whole
    latent cells (and whole patches); the stitch pastes each decoded frame back exactly."""
    from blended.latent.crop_stitch import crop_for_model, stitch
    from tests.support.latent_families import AUDIO_VIDEO_FAMILIES

    case, fam = CASES[name], AUDIO_VIDEO_FAMILIES[name]
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(case.frames, 3, 200, 280, generator=gen)
    mask = torch.zeros(case.frames, 1, 200, 280)
    for f in range(case.frames):
        mask[f, :, 60:110, 40 + 4 * f : 90 + 4 * f] = 1
    crop_img, crop_mask, crop = crop_for_model(frames, mask, 4 * fam.multiple, fam.multiple, 0.25)
    assert crop_img.shape[0] == case.frames and crop_mask.shape[0] == case.frames
    assert all(side % fam.multiple == 0 and side % case.factor == 0 for side in crop.size)
    edited = torch.rand(case.frames, 3, *crop.size, generator=gen)
    full, _ = stitch(crop, edited, video=True)
    outside = (mask == 0).expand_as(frames)
    assert torch.equal(full[outside], frames[outside]) and not torch.equal(full[~outside], frames[~outside])


def test_frame_groups_of_the_chunked_and_the_causal_vaes():
    """MiniMax H3's VAE: 17n + 5 frames <-> 5n + 2 latent frames, each chunk of 17 causal 4-fold (what
    ComfyUI 0.33's ``MiniMaxH3VideoVAE.encode_temporal`` does: 17-frame clips, 3 tokens dropped)."""
    assert frame_groups(22, 7) == list(CASES["minimax-h3"].groups)
    assert frame_groups(39, 12)[5:] == [(17, 18), (18, 22), (22, 26), (26, 30), (30, 34), (34, 35), (35, 39)]
    assert frame_groups(5, 2) == [(0, 1), (1, 5)]  # one chunk: the same as a causal 4-fold VAE
    assert frame_groups(17, 3) == list(CASES["ltx2"].groups)
    assert frame_groups(21, 7) is None and frame_groups(23, 7) is None  # not what the VAE decodes back
    m = torch.rand(22, 1, 4, 4)
    u = frame_union(m, 7)
    assert torch.equal(u[0, 0, 5], m[17, 0]) and torch.equal(u[0, 0, 6], m[18:22, 0].amax(0))


def test_packed_mask_is_the_video_mask_where_comfy_packs_the_video():
    """``pack_stream_masks`` lays the mask out as ``comfy.utils.pack_latents`` lays out the latent."""
    comfy_engine_path()
    pytest.importorskip("comfy.nested_tensor", reason="this ComfyUI has no comfy.nested_tensor (packed latents)")
    import comfy.utils

    mask = (torch.rand(2, 1, 3, 2, 4) > 0.5).float()
    shapes = [(2, 5, 3, 2, 4), (2, 8, 10, 16)]
    packed, _ = comfy.utils.pack_latents([mask.expand(2, 5, 3, 2, 4), torch.zeros(2, 8, 10, 16)])
    assert torch.equal(pack_stream_masks(mask, shapes), packed)
    regenerate = pack_stream_masks(mask, shapes, edit_others=True)
    video = 5 * 3 * 2 * 4
    assert torch.equal(regenerate[..., :video], packed[..., :video]) and bool((regenerate[..., video:] == 1).all())
    with pytest.raises(InputError, match=r"covers a video latent of \(3, 2, 4\).*video stream is \(2, 5, 3, 4, 4\)"):
        pack_stream_masks(mask, [(2, 5, 3, 4, 4), (2, 8, 10, 16)])


def test_auto_mask_refuses_an_audio_video_latent_with_the_node_that_splits_it(av_family):
    from blended_diffusion_pack.nodes.latent_sampling import checked_latent

    _, case, built = av_family
    latent = {"samples": as_latent(source_streams(built, case))}
    with pytest.raises(InputError, match=r"latent is an audio \+ video latent.*Separate AV Latent's video_latent"):
        checked_latent(built.model, latent)
    assert checked_latent(built.model, latent, streams=True) is latent["samples"]


def test_the_readme_families_table_has_a_row_for_each_family_here():
    """README's "Latent path: model families" table names each family's class, engine and case id here."""
    from pathlib import Path

    from tests.support.latent_families import AUDIO_VIDEO_FAMILIES

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = text.split("### Latent path: model families", 1)[1].split("\n\n| family |", 1)[1].split("\n\n", 1)[0]
    for name in CASES:
        rows = [line for line in table.splitlines() if line.startswith(f"| `{name}` ")]
        assert len(rows) == 1, f"README: no row for {name}"
        config = AUDIO_VIDEO_FAMILIES[name].config
        assert f"(`{config}`)" in rows[0] and "| 0.33.0 (no such class in 0.3.75) |" in rows[0]


def test_ltx2_text_connectors_take_the_sizes_its_kwargs_are_given():
    """LTX-2 reads its text connectors' sizes from ``**kwargs`` (no named parameter would catch a
    rename): the tiny model's connectors are the sizes asked for, or the engine renamed them."""
    built = build("ltx2")
    dm = built.model.model.diffusion_model
    for connector in (dm.video_embeddings_connector, dm.audio_embeddings_connector):
        assert len(connector.transformer_1d_blocks) == 1 and connector.inner_dim == CTX == dm.caption_channels


def test_the_node_takes_core_concat_av_latent_and_core_separate_av_latent_splits_its_output():
    """The Blended Latent Sampler node as the executor runs it (inference mode), between core's own
    LTX nodes: Concat AV Latent in, Separate AV Latent out; the audio stream comes out the source's."""
    case, built = CASES["ltx2"], build("ltx2")  # skips where the engine has no LTXAV, else puts it on the path
    from comfy_extras.nodes_lt import LTXVConcatAVLatent, LTXVSeparateAVLatent

    from blended_diffusion_pack.nodes.latent_nodes import BlendedLatentSampler

    video, audio = source_streams(built, case)
    with torch.inference_mode():
        (latent,) = LTXVConcatAVLatent.execute({"samples": video}, {"samples": audio, "type": "audio"}).result
        positive, negative = conditioning(built, 1, "ltx2"), conditioning(built, 2, "ltx2")
        (out,) = BlendedLatentSampler.execute(built.model, positive, negative, latent, moving_mask(case), 3, 2, 3.0,
                                              "euler", "simple", 1.0, 2, 0, 0.0).result
        edited_video, edited_audio = LTXVSeparateAVLatent.execute(out).result
    outside = (expected_latent_mask(case, moving_mask(case), 0) == 0).expand(2, *video.shape[1:])
    assert edited_video["samples"].shape == (2, *video.shape[1:])
    assert torch.equal(edited_video["samples"][outside], video.expand(2, *video.shape[1:])[outside])
    assert not torch.equal(edited_video["samples"][~outside], video.expand(2, *video.shape[1:])[~outside])
    assert torch.equal(edited_audio["samples"], audio.expand(2, *audio.shape[1:]))


def test_minimax_h3_samples_a_batch_one_run_per_sample_each_its_own_seeds():
    """MiniMax H3's diffusion model takes one sample per call: a batch_size of 2 is two runs, and
    sample i is what a run of batch 1 with seed + i gives, bit for bit."""
    case, built = CASES["minimax-h3"], build("minimax-h3")  # skips where the engine lacks the class
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler, streams_of

    latent = {"samples": as_latent(source_streams(built, case))}
    positive, negative = conditioning(built, 1, "minimax-h3"), conditioning(built, 2, "minimax-h3")
    patched, calls = recording(built.model)

    def sample(model, seed, batch):
        return streams_of(run_latent_sampler(model, positive, negative, latent, moving_mask(case), seed, 2, 3.0,
                                             "euler", "simple", 1.0, batch, 0, 0.0))

    video, audio = sample(patched, SEED, 2)
    assert video.shape[0] == audio.shape[0] == 2 and all(x.shape[0] == 1 for x, *_ in calls)
    assert len(calls) == 2 * 2 * case.evaluations  # two runs of two steps
    for i in range(2):
        alone_video, alone_audio = sample(built.model, SEED + i, 1)
        assert torch.equal(video[i : i + 1], alone_video) and torch.equal(audio[i : i + 1], alone_audio)
    assert not torch.equal(video[0], video[1])


def test_an_empty_mask_returns_the_streams_without_a_model_call():
    case, built = CASES["ltx2"], build("ltx2")
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler, streams_of

    streams = source_streams(built, case)
    patched, calls = recording(built.model)
    out = run_latent_sampler(patched, conditioning(built, 1, "ltx2"), conditioning(built, 2, "ltx2"),
                             {"samples": as_latent(streams)}, torch.zeros(1, *case.px), 0, 2, 3.0, "euler", "simple",
                             1.0, 3, 0, 0.0)
    assert not calls
    for got, source in zip(streams_of(out), streams, strict=True):
        assert torch.equal(got, source.expand(3, *source.shape[1:]))
