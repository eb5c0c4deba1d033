"""Blended Latent Diffusion family by family, through ComfyUI's own sampling, on tiny random models
built with ComfyUI's classes (tests/support/latent_families.py). One case id per family: the README table's
names ("Latent path: model families").

Per family and for both ways in (the Blended Latent Sampler node's function, and the SAMPLER with
the family's usual guider as SamplerCustomAdvanced runs it):
- at every model call, the input outside that step's mask is the source (in the model's space,
  ``process_latent_in``) noised by that model's own ``model_sampling.noise_scaling`` at that call's
  sigma, bit for bit (the same float ops on the same values: no tolerance needed);
- the final latent's background is the source, bit for bit;
- the family's conditioning reaches the diffusion model unchanged (text context, pooled / adm,
  guidance, reference latents, concat latents, and each family's own keys: HiDream's Llama layers,
  HunyuanImage 2.1's ByT5 glyph tokens, Omnigen2's and Boogu's token count, HunyuanDiT's mT5 states and
  masks, Lens's and PixelDiT's masks, Anima's T5 ids and weights, PiD's latent, HiDream-O1's token ids,
  Kandinsky 5's pooled CLIP and attention mask; and the values of PixArt's and HunyuanDiT's size
  micro-conditions);
- exactly one model call per step with euler (heun: two per step but one on the last step);
- a crop at the family's multiple encodes to whole latent cells, and the stitch keeps every pixel
  outside the mask the original's, bit for bit;
- reference latents that cannot belong to the edited latent (another VAE's channels or layout) fail
  with a message naming the conditioning and the fix.
Model calls are recorded through ComfyUI's public ``set_model_unet_function_wrapper``.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from blended.errors import InputError
from blended.latent.blend import step_masks
from tests.support.latent_families import AUDIO_VIDEO_FAMILIES, FAMILIES, VIDEO_FAMILIES, build, engine_config
from tests.support.video_proof import recording

STEPS = 3


def _mask(factor, hw=(8, 8)):
    H, W = hw
    m = torch.zeros(1, 1, H * factor, W * factor)
    m[..., 2 * factor : 5 * factor, 3 * factor : 6 * factor] = 1
    m[..., 7 * factor, 1 * factor : 4 * factor] = 1  # a thin stroke keeps its cells
    return m


@pytest.fixture(scope="module", params=list(FAMILIES))
def fam(request):
    return build(request.param)


def _cfg(built):
    return 1.0 if built.family.guider == "basic" else 3.0


def _check_calls(built, calls, source, noise, sigmas, per_step, expect_calls):
    model = built.model
    ms = model.get_model_object("model_sampling")
    src = model.model.process_latent_in(source.float())
    assert len(calls) == expect_calls, f"{len(calls)} model calls for {STEPS} steps"
    pos_ctx = built.positive[0][0]
    for i, (x, timestep, cond_or_uncond, c) in enumerate(calls):
        n = len(cond_or_uncond)
        assert n == (1 if built.family.guider == "basic" else 2)
        for k, rows in enumerate(x.chunk(n)):
            t = timestep.chunk(n)[k]
            sigma = sigmas[i]
            assert torch.allclose(t.float().cpu(), sigma.float().expand_as(t), rtol=1e-6)  # the wrapper gets sigma
            expected = ms.noise_scaling(sigma.reshape(1).expand(rows.shape[0]).to(rows.dtype), noise.to(rows.dtype),
                                        src.expand_as(rows).to(rows.dtype))
            outside = (per_step[i] == 0).expand_as(rows)
            assert torch.equal(rows[outside], expected[outside]), f"call {i}: background is not the source at σ"
            if i > 0:
                assert not torch.equal(rows[~outside], expected[~outside])
        _check_conditioning(built, c, cond_or_uncond, pos_ctx, x.shape[0] // n)


def _check_conditioning(built, c, cond_or_uncond, pos_ctx, rows):
    """The family's conditioning as the diffusion model receives it, for the positive chunk."""
    fam, extra = built.family, built.positive[0][1]
    k = cond_or_uncond.index(0)
    n = len(cond_or_uncond)
    ctx = c["c_crossattn"].chunk(n)[k]
    want, n_tok = pos_ctx.expand(rows, -1, -1).to(ctx.dtype), pos_ctx.shape[1]
    # the text tokens unchanged, wherever the family puts them (Flux.2 pads the context with zeros)
    assert any(torch.equal(ctx[:, i : i + n_tok], want) for i in range(ctx.shape[1] - n_tok + 1))
    if "guidance" in extra:
        assert torch.equal(c["guidance"].chunk(n)[k], torch.full((rows,), float(extra["guidance"])))
    if fam.config == "SDXL":
        assert c["y"].shape == (n * rows, 2816)
        assert torch.equal(c["y"].chunk(n)[k][:, :1280], extra["pooled_output"].expand(rows, -1))
    if fam.config in ("SD3",):
        assert torch.equal(c["y"].chunk(n)[k], extra["pooled_output"].expand(rows, -1))
    if fam.config.startswith("Flux") and extra.get("pooled_output") is not None:
        assert torch.equal(c["y"].chunk(n)[k][:, :768], extra["pooled_output"].expand(rows, -1))
    for key, arg in fam.passes.items():  # as given, in the batch layout ComfyUI gives it (Anima's 1-D T5 ids: [1,N])
        got = c[arg].chunk(n)[k]
        assert torch.equal(got, extra[key].reshape(1, *got.shape[1:]).expand_as(got)), f"{key} -> {arg}"
    # the size micro-conditions: CLIPTextEncodePixArtAlpha's width and height, else ComfyUI's default (8 px a cell)
    h, w = extra.get("height", built.latent_hw[0] * 8), extra.get("width", built.latent_hw[1] * 8)
    if fam.config.startswith("PixArt"):
        assert torch.equal(c["c_size"].chunk(n)[k], torch.tensor([[h, w]], dtype=torch.float).expand(rows, -1))
        assert torch.equal(c["c_ar"].chunk(n)[k], torch.tensor([[h / w]], dtype=torch.float).expand(rows, -1))
    if fam.config.startswith("HunyuanDiT"):
        meta = torch.tensor([[h, w, h, w, 0, 0]], dtype=torch.float)
        assert torch.equal(c["image_meta_size"].chunk(n)[k], meta.expand(rows, -1))
    if fam.config in ("Omnigen2", "ZImagePixelSpace", "Boogu"):  # the text encoder's mask becomes the token count
        assert c["num_tokens"] == int(extra["attention_mask"].sum())
    if "reference_latents" in extra and fam.config == "HiDreamO1":
        _check_hidream_o1_references(built, c, k, n, rows)
    elif "reference_latents" in extra:
        refs = c["ref_latents"]
        assert len(refs) == len(extra["reference_latents"])
        for got, ref in zip(refs, extra["reference_latents"]):
            assert torch.equal(got[:1], built.model.model.process_latent_in(ref))
    if "concat_latent_image" in extra:
        cc = c["c_concat"].chunk(n)[k]
        assert cc.shape[1] == 80  # 16 latent channels + the 8x8-packed mask (64)
        assert torch.equal(cc[:1, :16], built.model.model.process_latent_in(extra["concat_latent_image"]))


def _check_hidream_o1_references(built, c, k, n, rows):
    """HiDream-O1 takes the reference IMAGE: its patches, its pixels for the ViT, and the prompt's ids
    with the reference's vision tokens are what ComfyUI's own conditioning makes of the given image."""
    from comfy.ldm.hidream_o1.conditioning import build_extra_conds

    extra = built.positive[0][1]
    want = build_extra_conds(extra["text_input_ids"], torch.empty(rows, 3, *built.latent_hw),
                             ref_images=extra["reference_latents"], target_patch_size=32)
    assert torch.equal(c["input_ids"].chunk(n)[k], want["input_ids"])
    assert torch.equal(c["ref_patches"].chunk(n)[k], want["ref_patches"].expand(rows, -1, -1))
    assert torch.equal(c["ref_pixel_values"].chunk(n)[k], want["ref_pixel_values"].expand(rows, -1, -1))


def test_blended_latent_sampler(fam):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import schedule

    source = torch.randn(fam.latent_shape, generator=torch.Generator().manual_seed(3))
    mask = _mask(fam.family.factor, fam.latent_hw)
    patched, calls = recording(fam.model)
    seed = 5
    out = run_latent_sampler(patched, fam.positive, fam.negative, {"samples": source}, mask[:, 0], seed, STEPS,
                             _cfg(fam), "euler", "simple", 1.0, 1, 16, 0.5)
    sigmas = schedule(fam.model, STEPS, "euler", "simple", 1.0)
    per_step = step_masks(mask, fam.family.factor, STEPS, 16, 0.5)
    noise = torch.randn((1, *source.shape[1:]), generator=torch.Generator().manual_seed(seed))
    _check_calls(fam, calls, source, noise, sigmas, per_step, STEPS)
    final = (per_step[-1] == 0).expand_as(out)
    assert torch.equal(out[final], source.expand_as(out)[final])
    assert not torch.equal(out[~final], source.expand_as(out)[~final])


def test_sampler_for_sampler_custom_advanced(fam):
    """SamplerCustomAdvanced's own call: guider.sample(noise, latent, sampler, sigmas)."""
    import comfy.sample
    import comfy.samplers

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler

    source = torch.randn(fam.latent_shape, generator=torch.Generator().manual_seed(4))
    mask = _mask(fam.family.factor, fam.latent_hw)
    patched, calls = recording(fam.model)
    ms = fam.model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", STEPS).cpu()
    if fam.family.guider == "basic":
        from comfy_extras.nodes_custom_sampler import Guider_Basic  # core BasicGuider's guider

        guider = Guider_Basic(patched)
        guider.set_conds(fam.positive)
    else:
        guider = comfy.samplers.CFGGuider(patched)
        guider.set_conds(fam.positive, fam.negative)
        guider.set_cfg(3.0)
    noise = comfy.sample.prepare_noise(source, 11)
    sampler = BlendingSampler("euler", pixel_mask=mask, shrink_px=8, shrink_fraction=0.5)
    out = guider.sample(noise, source, sampler, sigmas, seed=11).cpu()
    per_step = step_masks(mask, fam.family.factor, STEPS, 8, 0.5)
    _check_calls(fam, calls, source, noise, sigmas, per_step, STEPS)
    final = (per_step[-1] == 0).expand_as(out)
    # process_latent_out(process_latent_in(x)) rounds for families with a scale and shift (a few ulp)
    torch.testing.assert_close(out[final], source.expand_as(out)[final], rtol=1e-6, atol=1e-6)


def test_both_ways_in_make_their_step_masks_with_one_library_call(monkeypatch):
    """One route for the masks: the Blended Latent Sampler's function makes the per-step masks of all
    its latents with one ``latent_step_masks`` call before sampling, the SAMPLER with one call once
    the guider hands it the latent and sigmas; each latent of a batch is sampled with its own mask,
    bit for bit as if it came alone."""
    built = build("sd15")  # puts ComfyUI on the path
    import comfy.sample
    import comfy.samplers

    from blended_diffusion_pack.nodes import latent_sampling
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    made = []

    def counting(*args, **kwargs):
        made.append(args[1])
        return step_masks_of(*args, **kwargs)

    step_masks_of = latent_sampling.latent_step_masks
    monkeypatch.setattr(latent_sampling, "latent_step_masks", counting)
    factor = built.family.factor
    source = torch.randn(2, *built.latent_shape[1:], generator=torch.Generator().manual_seed(3))
    mask = torch.cat([_mask(factor, built.latent_hw), _mask(factor, built.latent_hw).flip(-1)])[:, 0]
    rest = (7, STEPS, 3.0, "euler", "simple", 1.0, 2, 8, 0.5)
    both = run_latent_sampler(built.model, built.positive, built.negative, {"samples": source}, mask, *rest)
    assert made == [source.shape]
    for b in range(2):
        alone = run_latent_sampler(built.model, built.positive, built.negative, {"samples": source[b : b + 1]},
                                   mask[b : b + 1], *rest)
        assert torch.equal(both[2 * b : 2 * b + 2], alone)
    made.clear()
    guider = comfy.samplers.CFGGuider(built.model)
    guider.set_conds(built.positive, built.negative)
    guider.set_cfg(3.0)
    sigmas = comfy.samplers.calculate_sigmas(built.model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    sampler = latent_sampling.BlendingSampler("euler", pixel_mask=mask[:, None], shrink_px=8, shrink_fraction=0.5)
    guider.sample(comfy.sample.prepare_noise(source, 1), source, sampler, sigmas, seed=1)
    assert made == [source.shape]


def test_heun_counts_two_model_calls_per_step_but_the_last(fam):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    source = torch.randn(fam.latent_shape, generator=torch.Generator().manual_seed(3))
    patched, calls = recording(fam.model)
    mask = _mask(fam.family.factor, fam.latent_hw)[:, 0]
    run_latent_sampler(patched, fam.positive, fam.negative, {"samples": source}, mask, 1, STEPS, _cfg(fam),
                       "heun", "simple", 1.0, 1, 0, 0.0)
    assert len(calls) == 2 * STEPS - 1  # heun: a second evaluation per step, none after the final (sigma 0) one


# the Wan 2.1 latent format
TIME_AXIS = ["qwen-image", "qwen-image-edit", "cosmos-predict2", "anima", "krea2", "joyimage"]


@pytest.mark.parametrize("name", TIME_AXIS)
def test_an_image_latent_without_the_time_axis_is_one_frame_as_core_takes_it(name):
    """Qwen-Image's, Cosmos's, Krea 2's and JoyImage's format has a time axis; a 4-D latent
    (EmptySD3LatentImage's, or one saved without it) is sampled as one frame, as core KSampler's
    ``fix_empty_latent_channels`` does."""
    built = build(name)  # puts ComfyUI on the path
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    assert len(built.latent_shape) == 5
    source = torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(3))
    mask = _mask(built.family.factor, built.latent_hw)[:, 0]
    args = (built.positive, built.negative)
    rest = (mask, 5, 2, _cfg(built), "euler", "simple", 1.0, 1, 8, 0.5)
    five = run_latent_sampler(built.model, *args, {"samples": source}, *rest)
    four = run_latent_sampler(built.model, *args, {"samples": source[:, :, 0]}, *rest)
    assert four.shape == five.shape == source.shape
    assert torch.equal(four, five)


def test_a_mask_of_another_size_names_the_mask_and_the_fix(fam):
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler

    source = torch.randn(fam.latent_shape)
    sd15_sized = torch.ones(1, 512, 512)  # an SD1.5-sized mask on this family's small latent
    h, w = fam.latent_hw
    with pytest.raises(InputError, match=rf"mask is 512x512 px but the latent is {w}x{h} cells.*Blended Latent Crop"):
        run_latent_sampler(fam.model, fam.positive, fam.negative, {"samples": source}, sd15_sized, 0, 2, _cfg(fam),
                           "euler", "simple", 1.0, 1, 0, 0.0)


def test_a_crop_at_the_family_multiple_encodes_to_whole_cells_and_the_stitch_keeps_the_outside(fam):
    """Crop -> (the family's VAE: one cell per ``factor`` px) -> stitch of any decoded crop: the crop
    is in the family's multiple, its mask maps onto whole latent cells of this model, and every pixel
    outside the mask is the original's float, bit for bit."""
    from blended_diffusion_pack.nodes.latent_nodes import BlendedLatentCrop, BlendedLatentStitch
    from blended_diffusion_pack.nodes.latent_sampling import latent_factor
    from tests.support.comfy_harness import photo

    multiple, factor = fam.family.multiple, fam.family.factor
    resolution = max(64, 4 * multiple)  # the crop's smallest resolution is 64
    image = torch.from_numpy(photo(150, 110, seed=1)).float().div(255)[None]
    mask = torch.zeros(1, 110, 150)
    mask[:, 40:70, 60:100] = 1
    mask[:, 90, 20:50] = 1  # a 1-px stroke
    with torch.inference_mode():
        crop_img, crop_mask, crop = BlendedLatentCrop.execute(image, mask, resolution, multiple, 0.25, 0).result
    h, w = crop_img.shape[1:3]
    assert h % multiple == 0 and w % multiple == 0 and min(h, w) == resolution
    assert latent_factor(fam.model.model) == factor  # the mask-size check knows this family's cell
    shape = (*fam.latent_shape[:-2], h // factor, w // factor)
    from blended.latent.crop_stitch import latent_pixel_mask

    cells, f = latent_pixel_mask(crop_mask[:, None], shape, 1, factor)
    assert f == factor
    decoded = torch.rand(2, h, w, 3, generator=torch.Generator().manual_seed(2))  # two samples, any pixels
    with torch.inference_mode():
        full, paste, _ = BlendedLatentStitch.execute(crop, decoded, 0).result
    outside = (mask[0] == 0)[..., None].expand(-1, -1, 3)
    for i in range(2):
        assert torch.equal(full[i][outside], image[0][outside]), f"sample {i}: a pixel outside the mask changed"
        assert not torch.equal(full[i][~outside], image[0][~outside])


def test_anima_in_inference_mode_gets_its_llm_adapters_context():
    """ComfyUI runs nodes under ``torch.inference_mode``, and there Anima's ``extra_conds`` runs the
    model's LLM adapter on the Qwen3 states and the T5 ids once, before sampling (outside it, as in the
    cases above, the ids go to every call). Either way each call gets the adapter's context for the
    positive (512 tokens, the same the adapter gives on its own) and the background is the source at
    every call's sigma, bit for bit."""
    built = build("anima")  # puts ComfyUI on the path
    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import schedule

    source = torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(3))
    mask = _mask(built.family.factor, built.latent_hw)
    patched, calls = recording(built.model)
    ctx, extra = built.positive[0]
    with torch.inference_mode():
        out = run_latent_sampler(patched, built.positive, built.negative, {"samples": source}, mask[:, 0], 5, STEPS,
                                 3.0, "euler", "simple", 1.0, 1, 16, 0.5)
        adapted = built.model.model.diffusion_model.preprocess_text_embeds(
            ctx, extra["t5xxl_ids"][None], t5xxl_weights=extra["t5xxl_weights"][None, :, None])
    assert adapted.shape[1] == 512 and all("t5xxl_ids" not in c for *_, c in calls)
    as_run = dataclasses.replace(built, positive=[[adapted.clone(), {}]],
                                 family=dataclasses.replace(built.family, passes={}))
    per_step = step_masks(mask, built.family.factor, STEPS, 16, 0.5)
    noise = torch.randn((1, *source.shape[1:]), generator=torch.Generator().manual_seed(5))
    _check_calls(as_run, calls, source, noise, schedule(built.model, STEPS, "euler", "simple", 1.0), per_step, STEPS)
    final = (per_step[-1] == 0).expand_as(out)
    assert torch.equal(out[final], source.expand_as(out)[final])


def test_the_mask_check_takes_the_cell_a_latent_format_states_or_inherits():
    """The cell (px per latent cell) of a format: the pack's table by name (0.3.75's formats do not state
    it), else the ``spacial_downscale_ratio`` the format or a parent sets (0.33's pixel-space formats
    inherit Chroma Radiance's 1; Wan 2.2's 16 overrides Wan 2.1's 8); ComfyUI's base default is no
    statement, so a format that sets nothing stays unchecked."""
    engine_config("sd15")  # puts ComfyUI on the path
    from types import SimpleNamespace

    from blended_diffusion_pack.nodes.latent_sampling import latent_factor

    class LatentFormat:
        spacial_downscale_ratio = 8

    class ChromaRadiance(LatentFormat):
        spacial_downscale_ratio = 1

    class ZImagePixelSpace(ChromaRadiance):
        pass

    class Wan21(LatentFormat):
        pass

    class Wan22(Wan21):
        spacial_downscale_ratio = 16

    class SomeNewFormat(LatentFormat):  # a format the table does not list and that sets nothing
        pass

    cells = {fmt.__name__: latent_factor(SimpleNamespace(latent_format=fmt()))
             for fmt in (ChromaRadiance, ZImagePixelSpace, Wan21, Wan22, SomeNewFormat)}
    assert cells == {"ChromaRadiance": 1, "ZImagePixelSpace": 1, "Wan21": 8, "Wan22": 16, "SomeNewFormat": None}


EDIT_FAMILIES = [name for name, f in FAMILIES.items() if f.reference]


@pytest.mark.parametrize("name", EDIT_FAMILIES)
def test_a_reference_from_another_vae_names_the_conditioning_and_the_fix(name):
    """An edit model's reference encoded by another VAE (an SD1.5 latent, or one without the time
    axis the edited latent has) is refused before sampling, on both ways in, naming which
    conditioning and which reference; HiDream-O1, which takes the reference IMAGE, refuses a latent.
    (An edit model given no reference at all cannot be told from its base model in ComfyUI 0.3.75:
    same class, same config; that edit simply ignores the image.)"""
    built = build(name)  # puts ComfyUI on the path
    import comfy.sample
    import comfy.samplers

    from blended_diffusion_pack.nodes.latent_nodes import run_latent_sampler
    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler

    source = torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(3))
    mask = _mask(built.family.factor, built.latent_hw)
    h, w = built.latent_hw
    good = built.positive[0][1]["reference_latents"]
    wrong = [torch.randn(1, 4, h, w)]  # an SD1.5 VAE's latent
    if source.dim() == 5:
        wrong.append(good[0][:, :, 0])  # the right VAE's channels, but not its 5-D layout
    for bad in wrong:
        refs = [*good[:1], bad]
        positive = [[built.positive[0][0], {**built.positive[0][1], "reference_latents": refs}]]
        negative = [[built.negative[0][0], {**built.negative[0][1], "reference_latents": refs}]]
        shape = re.escape(str(tuple(bad.shape)))
        message = rf"positive's reference latent 2 is {shape} but the latent being edited is .*this model's VAE"
        if built.family.config == "HiDreamO1":  # it takes the reference IMAGE, not a latent
            message = rf"positive's reference 2 is {shape} but HiDreamO1 takes reference images .*IMAGE itself"
        with pytest.raises(InputError, match=message):
            run_latent_sampler(built.model, positive, built.negative, {"samples": source}, mask[:, 0], 0, 2,
                               _cfg(built), "euler", "simple", 1.0, 1, 0, 0.0)
        with pytest.raises(InputError, match=message.replace("positive", "negative")):
            run_latent_sampler(built.model, built.positive, negative, {"samples": source}, mask[:, 0], 0, 2,
                               _cfg(built), "euler", "simple", 1.0, 1, 0, 0.0)
        if built.family.config == "HiDreamO1":  # its conditioning (core's, in the guider) reads the reference
            continue  # images before any SAMPLER runs, so there the failure is ComfyUI's own
        guider = comfy.samplers.CFGGuider(built.model)
        guider.set_conds(positive, built.negative)
        guider.set_cfg(_cfg(built))
        sigmas = comfy.samplers.calculate_sigmas(built.model.get_model_object("model_sampling"), "simple", 2).cpu()
        with pytest.raises(InputError, match=message):
            guider.sample(comfy.sample.prepare_noise(source, 1), source, BlendingSampler("euler", pixel_mask=mask),
                          sigmas, seed=1)


def test_the_readme_families_table_and_the_case_ids_are_the_same_list():
    """Each row of README's "Latent path: model families" table names its id in the first column and
    says ``yes, `[id]` ``: the image families' case ids here, the video families' (``VIDEO_FAMILIES``) in
    tests/test_latent_video.py, the audio + video ones' (``AUDIO_VIDEO_FAMILIES``) in
    tests/test_latent_audio_video.py; a family added on one side only shows up here."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = text.split("### Latent path: model families", 1)[1].split("\n\n| family |", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    ids = {}
    for row in rows:
        named = re.match(r"`([a-z0-9.-]+)` ", row[0])
        if named:
            ids[named.group(1)] = row[-1]
    groups = (set(FAMILIES), set(VIDEO_FAMILIES), set(AUDIO_VIDEO_FAMILIES))
    cases = set().union(*groups)
    assert sum(map(len, groups)) == len(cases), "an id is in two of the image, video and audio + video families"
    assert set(ids) == cases, f"README only: {set(ids) - cases}; tests only: {cases - set(ids)}"
    for name, tested in ids.items():
        assert tested.startswith(f"yes, `[{name}]`"), f"README row {name}: {tested}"
    assert not [row[0] for row in rows if not row[-1].startswith("yes")], "a family row the tests do not cover"


def test_a_field_the_engines_detection_does_not_give_fails_naming_the_class_and_the_field(monkeypatch):
    """Every field but the sizes comes from the engine's own detection of the family's real layout (a
    field a newer ComfyUI adds comes with it); where detection does not give a required one (simulated
    here: it forgets ``qkv_bias``), building names the parameter class and the field."""
    engine_config("sd15")  # puts ComfyUI on the path
    import comfy.model_detection

    detect = comfy.model_detection.detect_unet_config

    def forgetful(*args, **kwargs):
        config = detect(*args, **kwargs)
        config.pop("qkv_bias", None)
        return config

    monkeypatch.setattr(comfy.model_detection, "detect_unet_config", forgetful)
    with pytest.raises(LookupError, match=r"family 'flux-dev': ComfyUI's FluxParams requires qkv_bias, .* detection"):
        build("flux-dev")


@pytest.mark.parametrize(("name", "cls"), [("flux-dev", "FluxParams"), ("sd15", "UNetModel")])
def test_a_size_the_model_does_not_have_fails_naming_the_class(monkeypatch, name, cls):
    """The tests set sizes only, by the engine's field names: a name the model class lacks (a field a
    newer ComfyUI renamed) fails naming the class and the field."""
    fam = FAMILIES[name]
    monkeypatch.setitem(FAMILIES, name, dataclasses.replace(fam, sizes={**fam.sizes, "hidden_width": 8}))
    with pytest.raises(LookupError, match=rf"family '{name}': ComfyUI's {cls} has no field hidden_width"):
        build(name)


def test_each_family_is_the_class_the_engines_detection_picks_for_its_layout(monkeypatch):
    """A layout the engine's detection takes for another family fails naming both; a family whose class
    the engine lacks is skipped naming the class."""
    fam = FAMILIES["flux-dev"]
    monkeypatch.setitem(FAMILIES, "flux-dev", dataclasses.replace(fam, config="FluxSchnell"))
    with pytest.raises(LookupError, match=r"detection takes the FluxSchnell layout .* for Flux;"):
        engine_config("flux-dev")
    monkeypatch.setitem(FAMILIES, "flux-dev", dataclasses.replace(fam, config="NoSuchFamily"))
    skip = r"this ComfyUI \(\d+\.\d+\.\d+\) has no comfy.supported_models.NoSuchFamily \(family 'flux-dev'\)"
    with pytest.raises(pytest.skip.Exception, match=skip):
        engine_config("flux-dev")
