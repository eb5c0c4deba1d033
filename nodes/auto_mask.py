"""Blended Mask by DiffEdit: DiffEdit's mask through ComfyUI's own sampling stack.

The two predictions come from one run of ``comfy.sample.sample_custom`` (what core SamplerCustom
calls) with the target as positive and the reference as negative conditioning: the user's MODEL with
its patches, the family's conditioning (reference latents, Flux guidance, ...) and model loading stay
ComfyUI's. A post-CFG hook (``set_model_sampler_post_cfg_function``, the public patch) reads the
conditional and unconditional clean estimates of every model call, with the cfg-1 shortcut off so
both are computed; a probe SAMPLER makes the calls (``draws`` noisy copies of the source at the
level ``strength`` names on the model's own schedule) and hands them to ``blended.latent.auto_mask``.
"""

from __future__ import annotations

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import torch
from comfy_api.latest import io, ui

from ..blended.errors import InputError
from ..blended.latent.auto_mask import AutoMaskSettings, auto_mask, coverage_text
from ..blended.latent.crop_stitch import encoded_factor, temporal_factor
from .images import to_comfy_mask
from .latent_sampling import check_references, checked_latent, latent_factor, latent_frame_factor
from .validation import BlendedNode


class _DiffEditProbe(comfy.samplers.Sampler):
    """A SAMPLER that samples nothing: it asks the guider for ``settings.draws`` predictions of the
    noisy source at the run's one sigma and keeps DiffEdit's mask; the latent comes back unchanged."""

    def __init__(self, settings: AutoMaskSettings, seed: int, factor: int | None, frames: int | None, pairs: list):
        self.settings, self.seed, self.factor, self.frames, self.pairs = settings, int(seed), factor, frames, pairs
        self.result = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        check_references(getattr(model_wrap, "original_conds", {}), latent_image.shape,
                         getattr(model_wrap, "inner_model", None))
        sigma = sigmas[0]

        def predict(x):
            self.pairs.clear()
            model_wrap(x, sigma * x.new_ones(x.shape[0]), **extra_args)
            return self.pairs[-1]

        factor, per_cell = pixel_scale(model_wrap.inner_model, latent_image.shape, self.factor, self.frames)
        self.result = auto_mask(latent_image, float(sigma), model_wrap.inner_model.model_sampling.noise_scaling,
                                predict, self.settings, self.seed, factor, per_cell,
                                check=mm.throw_exception_if_processing_interrupted)
        return latent_image


def pixel_scale(base_model, latent_shape, image_factor: int | None, image_frames: int | None) -> tuple[int, int]:
    """(pixels per latent cell, frames per latent frame) of the mask to return: from the image the
    latent was encoded from when it is connected, else from the model's latent format."""
    factor = image_factor or latent_factor(base_model)
    if factor is None:
        raise InputError(f"this model's latent format ({type(base_model.latent_format).__name__}) does not say how "
                         "many pixels one latent cell covers: connect the image the latent was encoded from.")
    t = latent_shape[2] if len(latent_shape) == 5 else 1
    if t <= 1:
        return factor, 1
    if image_frames is not None:
        per_cell = temporal_factor(image_frames, t)
        if per_cell is None:
            raise InputError(f"image has {image_frames} frames but the video latent has {t} latent frames: connect "
                             "the very frames that were encoded (1 + k*(latent frames - 1)).")
        return factor, per_cell
    per_cell = latent_frame_factor(base_model)
    if per_cell is None:
        raise InputError("this video model's latent format does not say how many frames one latent frame holds: "
                         "connect the video the latent was encoded from (image input).")
    return factor, per_cell


def image_scale(image, latent_shape) -> tuple[int | None, int | None]:
    """The optional ``image`` input -> (its pixels per latent cell, its frames), checked against the latent."""
    if image is None:
        return None, None
    h, w = latent_shape[-2:]
    H, W = image.shape[1:3]
    f = encoded_factor((H, W), (h, w))
    if f is None:
        raise InputError(f"image is {W}x{H} px but the latent is {w}x{h} cells: connect the image this latent was "
                         "encoded from.")
    return f, (image.shape[0] if len(latent_shape) == 5 else None)


def check_texts(target, reference) -> None:
    """Target and reference must come from the same text encoder: another encoder's embedding (an
    SDXL text on an SD1.5 model) would fail deep in the model with a shape error naming neither."""
    shapes = []
    for name, cond in (("target", target), ("reference", reference)):
        text = cond[0][0] if isinstance(cond, list) and cond and isinstance(cond[0], (list, tuple)) else None
        if not isinstance(text, torch.Tensor):
            raise InputError(f"{name} must be a CONDITIONING (CLIPTextEncode or the model's text-encode node).")
        shapes.append(text.shape[-1])
    if shapes[0] != shapes[1]:
        raise InputError(f"target's text embedding is {shapes[0]} wide but reference's is {shapes[1]}: encode both "
                         "with the text encoder of this model (the same CLIP / text-encoder loader).")


def find_mask(model, target, reference, latent, seed: int, settings: AutoMaskSettings, image=None):
    """Blended Mask by DiffEdit's one call: -> (mask [N,H,W], soft map [N,H,W], report text)."""
    check_texts(target, reference)
    source = checked_latent(model, latent)
    pairs: list = []
    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(
        lambda args: pairs.append((args["cond_denoised"], args["uncond_denoised"])) or args["denoised"],
        disable_cfg1_optimization=True)
    factor, frames = image_scale(image, source.shape)
    probe = _DiffEditProbe(settings, seed, factor, frames, pairs)
    ms = model.get_model_object("model_sampling")
    sigma = float(ms.percent_to_sigma(1.0 - settings.strength))
    sigmas = torch.tensor([sigma, 0.0])
    comfy.sample.sample_custom(patched, torch.zeros_like(source), 1.0, probe, sigmas, target, reference, source,
                               disable_pbar=True, seed=int(seed))
    mask, soft = probe.result
    text = coverage_text(mask, settings, sigma)
    if target is reference:
        text += "\ntarget and reference are the same conditioning: connect what the region shows now as reference."
    return mask, soft, text


class BlendedAutoMask(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedAutoMask",
            display_name="Blended Mask by DiffEdit",
            category="blended_diffusion/latent",
            description="Finds the region to edit without painting (DiffEdit): the model denoises noisy copies of "
            "the source under the target and the reference conditioning, and the mask is where the two "
            "differ. Costs 2 x draws predictions (draws model calls of target and reference), about draws/steps of "
            "one sampling run. Feed the mask to Blended Latent Sampler: outside it the source is kept bit for bit.",
            inputs=[
                io.Model.Input("model", tooltip="The MODEL that will make the edit (LoRAs and patches apply)."),
                io.Conditioning.Input("target", display_name="target conditioning",
                                      tooltip="What the region should become (the edit's positive prompt)."),
                io.Conditioning.Input("reference", display_name="reference conditioning",
                                      tooltip="What the region shows now; for an instruction editor, the "
                                      "same reference images with an empty instruction."),
                io.Latent.Input("latent", tooltip="VAEEncode of the image (or video) to edit."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the noise draws: the same seed gives the same mask."),
                io.Int.Input("draws", default=10, min=1, max=64,
                             tooltip="Noise draws averaged (DiffEdit: 10). Fewer is faster and noisier."),
                io.Float.Input("strength", default=0.5, min=0.05, max=0.95, step=0.05,
                               tooltip="Noise level of the draws as a fraction of the model's own schedule "
                               "(0.5 = the middle timestep; for flow models the family's shifted sigma there)."),
                io.Float.Input("threshold", default=0.5, min=0.05, max=0.95, step=0.05,
                               tooltip="Cut on the difference map, scaled to 0..1 at 3x its mean (DiffEdit: 0.5). "
                               "Lower finds a larger region."),
                io.Int.Input("grow_px", default=0, min=0, max=512, tooltip="Grow the found mask by this many pixels."),
                io.Image.Input("image", optional=True, tooltip="The image (or video frames) the latent was encoded "
                               "from: sets the mask's pixel size where the model's latent format does not."),
            ],
            outputs=[
                io.Mask.Output("found_mask", display_name="mask"),
                io.Mask.Output("soft_map", display_name="soft map"),
                io.String.Output("report", display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, model, target, reference, latent, seed, draws, strength, threshold, grow_px,
                image=None) -> io.NodeOutput:
        settings = AutoMaskSettings(draws=draws, strength=strength, threshold=threshold, grow_px=grow_px)
        mask, soft, text = find_mask(model, target, reference, latent, seed, settings, image)
        return io.NodeOutput(to_comfy_mask(mask[:, None]), to_comfy_mask(soft[:, None]), text,
                             ui=ui.PreviewText(text))
