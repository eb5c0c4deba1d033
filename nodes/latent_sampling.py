"""Blended latent sampling through ComfyUI's own sampling stack.

The run goes through ``comfy.sample.sample_custom`` (what core SamplerCustom calls), so the user's
MODEL with its LoRAs, model patches and wrappers, CONDITIONING with ControlNets, reference latents
and area settings, CFG, schedulers, samplers, previews and model loading all stay ComfyUI's. The
blending is a SAMPLER object (a ``comfy.samplers.Sampler`` subclass, the public type SamplerCustom
takes) that wraps the chosen core sampler: it receives the source latent in the model's space and
the run's noise from the guider, and hands the core sampler a denoiser that blends the sample with
the source at the level of every model call, and the clean estimate with the clean source. Nothing
in ComfyUI is patched.

Each node's execute calls one function here: ``run_latent_sampler`` (Blended Latent Sampler) and
``blending_sampler`` (Blended Latent SAMPLER). Both routes make the per-step masks with one library
call, ``blended.latent.blend.latent_step_masks``: the first for all its latents before sampling, the
SAMPLER in ``BlendingSampler.masks_for`` once the guider hands it the latent and the sigmas.
"""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..blended.errors import InputError
from ..blended.latent.blend import LatentBlend, latent_step_masks, pack_stream_masks, stream_noise_for_seeds
from ..blended.seeds import batch_seeds
from .images import mask_batch

# the video formats' pixels per latent cell: Wan 2.1 (also Cosmos Predict2's), Hunyuan Video, Mochi, Cosmos 1.0
# and CogVideoX (1.5's format for its 5B models) 8; Wan 2.2 5B's and HunyuanVideo 1.5's 16; LTXV's 32; and
# of ComfyUI 0.33's audio + video formats' video stream: LTX-2 32, MiniMax H3 16
_VIDEO_CELL_PX = {"Wan22": 16, "HunyuanVideo": 8, "HunyuanVideo15": 16, "Mochi": 8, "LTXV": 32, "Cosmos1CV8x8x8": 8,
                  "CogVideoX": 8, "CogVideoX1_5": 8, "LTXAV": 32, "MiniMaxH3AV": 16}

# pixels per latent cell, by ComfyUI's latent format (0.3.75's formats do not state it): SD1.x/2.x,
# SDXL (also AuraFlow's), SD3 (also Lumina 2's, Z-Image's), Flux.1 (also Chroma's, HiDream's, Omnigen2's)
# and Wan 2.1 (also Qwen-Image's, Cosmos Predict2's) are 8; Flux.2's packed 128 channels 16; HunyuanImage
# 2.1's 64 channels 32; Chroma Radiance's pixel space 1, and 0.33's HiDream-O1's (its model patches 32 px
# itself). Formats not listed take what they state (latent_factor).
_CELL_PX = {"SD15": 8, "SDXL": 8, "SD3": 8, "Flux": 8, "Wan21": 8, "Flux2": 16, "HunyuanImage21": 32,
            "ChromaRadiance": 1, "HiDreamO1Pixel": 1, **_VIDEO_CELL_PX}


# frames a causal video VAE folds into one latent frame, by latent format (Wan 2.1/2.2, Hunyuan Video 1 and
# 1.5 (also Kandinsky 5's), CogVideoX 4, Mochi 6, LTXV, LTX-2 and Cosmos 1.0 8; crop_stitch.TEMPORAL_FACTORS
# are these counts). MiniMax H3's VAE has no one count: crop_stitch.CHUNKED_VAES
_FRAMES_PER_CELL = {"Wan21": 4, "Wan22": 4, "HunyuanVideo": 4, "HunyuanVideo15": 4, "CogVideoX": 4, "CogVideoX1_5": 4,
                    "Mochi": 6, "LTXV": 8, "Cosmos1CV8x8x8": 8, "LTXAV": 8}

# models whose diffusion model takes one sample per call (MiniMax H3's raises on a batch): the Blended
# Latent Sampler draws their samples one run each; each sample's noise is its own seed's, so the
# samples are the same as in one batch
ONE_SAMPLE_PER_CALL = {"MiniMaxH3"}


def latent_factor(base_model) -> int | None:
    """The VAE downscale a ComfyUI model's latents come from, where its latent format tells it: the
    table above by the format's name (0.3.75's formats do not state it), else the
    ``spacial_downscale_ratio`` the format or a parent of it sets (0.33's do: its pixel-space
    ``ZImagePixelSpace`` and ``PixelDiTPixel`` inherit Chroma Radiance's 1, ``Wan22`` sets its own 16
    over Wan 2.1's 8). ``LatentFormat``'s own default (8 in 0.33) says nothing about a format and is
    not taken."""
    fmt = type(base_model.latent_format)
    if fmt.__name__ in _CELL_PX:
        return _CELL_PX[fmt.__name__]
    for cls in fmt.__mro__:
        if cls.__name__ == "LatentFormat":
            break
        if "spacial_downscale_ratio" in vars(cls):
            return int(vars(cls)["spacial_downscale_ratio"])
    return None


def latent_frame_factor(base_model) -> int | None:
    """How many frames one latent frame of a ComfyUI video model holds, where its latent format tells it."""
    return _FRAMES_PER_CELL.get(type(base_model.latent_format).__name__)


# Models whose "reference_latents" are IMAGEs [B,H,W,3], not latents: ComfyUI 0.33's HiDream-O1
# (HiDreamO1ReferenceImages attaches the pictures; the model reads them with its own ViT and 32 px patches).
_IMAGE_REFERENCES = {"HiDreamO1"}


def check_references(conds: dict, latent_shape, base_model=None) -> None:
    """Reference latents (ReferenceLatent, TextEncodeQwenImageEditPlus) must come from the VAE that
    encoded the latent being edited: same layout and channels. Another VAE's latent (an SD one on
    Flux Kontext, a 4-D one on Qwen-Image-Edit's 5-D Wan latents) would otherwise fail deep in the
    diffusion model with a shape error that names neither the input nor the fix. A model that takes
    reference images instead (``base_model``, ComfyUI's model: HiDream-O1) needs each one an IMAGE.

    ``conds``: name -> CONDITIONING ([[tensor, dict], ...]) or a guider's converted conds ([dict, ...]).
    Whether an edit model was given no reference at all cannot be told here: in ComfyUI 0.3.75 Flux
    Kontext and Qwen-Image-Edit load as the very classes and configs of Flux.1 dev and Qwen-Image."""
    images = type(base_model).__name__ in _IMAGE_REFERENCES
    want = (len(latent_shape), int(latent_shape[1]))
    for name, cond in conds.items():
        for entry in cond or ():
            extra = entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 else entry
            refs = extra.get("reference_latents") if isinstance(extra, dict) else None
            for i, ref in enumerate(refs or ()):
                if _reference_fits(ref, want, images):
                    continue
                got = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
                if images:
                    raise InputError(
                        f"{name}'s reference {i + 1} is {got} but {type(base_model).__name__} takes reference "
                        "images [B,H,W,3]: connect the IMAGE itself to HiDreamO1ReferenceImages, not a latent.")
                raise InputError(
                    f"{name}'s reference latent {i + 1} is {got} but the latent being edited is "
                    f"{tuple(latent_shape)}: encode the reference image with this model's VAE (the one that "
                    "encoded the latent), into ReferenceLatent or TextEncodeQwenImageEditPlus's vae input.")


def _reference_fits(ref, want: tuple[int, int], images: bool) -> bool:
    """An IMAGE [B,H,W,3] where the model takes images; else a latent of the edited one's layout and channels."""
    if not isinstance(ref, torch.Tensor) or ref.dim() < 2:
        return False
    if images:
        return ref.dim() == 4 and ref.shape[-1] == 3
    return (ref.dim(), int(ref.shape[1])) == want


class _BlendingDenoiser:
    """Stands in for the guider that a core sampler calls: blend in, denoise, blend out. Every other
    attribute (``inner_model``, ``model_patcher``, ...) is the guider's, so samplers that look
    through it find what they expect."""

    def __init__(self, guider, blend: LatentBlend, on_call=None):
        self._guider = guider
        self._blend = blend
        self._on_call = on_call

    def __getattr__(self, name):
        return getattr(self._guider, name)

    def __call__(self, x, sigma, model_options={}, seed=None, **kwargs):
        mm.throw_exception_if_processing_interrupted()
        x = self._blend.blend_input(x, sigma)
        if self._on_call is not None:
            self._on_call(x, sigma)
        out = self._guider(x, sigma, model_options=model_options, seed=seed, **kwargs)
        return self._blend.blend_denoised(out, sigma)


class BlendingSampler(comfy.samplers.Sampler):
    """A SAMPLER: the core sampler ``sampler_name`` with Blended Latent Diffusion's blending.

    ``step_masks`` gives one latent mask per step (shrinking); or, for core SamplerCustom, which
    decides the steps itself, ``pixel_mask`` ([B|1,1,H,W] at the encoded image's size) and the
    shrinking settings, turned into per-step masks when the run's sigmas are known.
    ``on_call(x, sigma)`` sees every blended sample before the model does (tests and debugging).
    A latent with audio next to the video (ComfyUI 0.33's LTX-2 and MiniMax H3) is sampled as one
    packed tensor: the masks edit its video stream, and the audio stays the source at every call
    (``edit_audio`` regenerates it instead; ``pack_stream_masks``).
    """

    def __init__(self, sampler_name: str, step_masks=None, on_call=None, pixel_mask=None, shrink_px: int = 0,
                 shrink_fraction: float = 0.0, edit_audio: bool = False):
        if step_masks is None and pixel_mask is None:
            raise InputError("the blended sampler needs a mask.")
        self.inner = comfy.samplers.sampler_object(sampler_name)
        self.step_masks = step_masks
        self.pixel_mask = pixel_mask
        self.shrink = (int(shrink_px), float(shrink_fraction))
        self.on_call = on_call
        self.edit_audio = bool(edit_audio)

    def masks_for(self, sigmas, latent_image, factor: int | None = None, frames_per_latent: int | None = None):
        """One latent mask per step of ``sigmas``: the given ones, or the pixel mask's for this latent
        (a tensor, or the shape of its video stream)."""
        if self.step_masks is not None:
            return self.step_masks
        shape = latent_image.shape if isinstance(latent_image, torch.Tensor) else latent_image
        return latent_step_masks(self.pixel_mask, shape, len(sigmas) - 1, *self.shrink, factor=factor,
                                 frames_per_latent=frames_per_latent)

    def max_denoise(self, model_wrap, sigmas):
        return self.inner.max_denoise(model_wrap, sigmas)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        if latent_image is None:
            raise InputError("the blended sampler needs the source latent (VAEEncode of the image to edit).")
        shapes = packed_shapes(getattr(model_wrap, "inner_model", None), latent_image)
        check_references(getattr(model_wrap, "original_conds", {}), shapes[0], getattr(model_wrap, "inner_model", None))
        if self.pixel_mask is not None and nothing_to_edit(self.pixel_mask):
            return latent_image
        ms = model_wrap.inner_model.model_sampling
        factor = latent_factor(model_wrap.inner_model)
        per_frame = latent_frame_factor(model_wrap.inner_model)
        masks = [m.to(noise.device) for m in self.masks_for(sigmas, shapes[0], factor, per_frame)]
        if len(shapes) > 1:
            masks = [pack_stream_masks(m, shapes, self.edit_audio) for m in masks]
        blend = LatentBlend(latent_image, noise, masks, sigmas, ms.noise_scaling)
        wrapped = _BlendingDenoiser(model_wrap, blend, self.on_call)
        samples = self.inner.sample(wrapped, sigmas, extra_args, callback, noise, latent_image, None, disable_pbar)
        # samples come back after inverse_noise_scaling: compare with the source in the same space
        return blend.finish(samples)


def packed_shapes(base_model, latent_image) -> list:
    """The shapes of the streams a sampler's latent packs: ComfyUI 0.33 samples a NestedTensor latent
    (video + audio) as one flat tensor [B,1,N] and records the streams' shapes on the model
    (``latent_shapes``); any other latent is its own one stream."""
    shapes = getattr(base_model, "latent_shapes", None)
    if shapes is not None and len(shapes) > 1 and latent_image.dim() == 3:
        return [tuple(s) for s in shapes]
    return [tuple(latent_image.shape)]


def blending_sampler(sampler_name: str, mask: torch.Tensor, shrink_px: int, shrink_fraction: float) -> BlendingSampler:
    """The Blended Latent SAMPLER node: a MASK -> the SAMPLER, which makes its per-step masks once
    SamplerCustom hands it the latent and the sigmas (``masks_for``)."""
    pixel_mask = mask_batch(mask)
    return BlendingSampler(sampler_name, pixel_mask=pixel_mask.clone(), shrink_px=shrink_px,
                           shrink_fraction=shrink_fraction)


def run_latent_sampler(model, positive, negative, latent, mask, seed, steps, cfg, sampler_name, scheduler, denoise,
                       batch_size, shrink_px, shrink_fraction, on_call=None, edit_audio: bool = False):
    """The Blended Latent Sampler node: every latent of ``latent`` x ``batch_size`` samples
    (image-major) -> LATENT samples (a tensor, or for an audio + video latent a NestedTensor of the
    same streams). The per-step masks of all the latents are made once, before sampling, from the
    video stream's shape, and each latent is sampled with its own (one run per sample for the models
    in ``ONE_SAMPLE_PER_CALL``)."""
    source = checked_latent(model, latent, streams=True)
    check_references({"positive": positive, "negative": negative}, source.shape, model.model)
    pixel_mask = mask_batch(mask)
    if nothing_to_edit(pixel_mask):
        return as_latent([s.float().repeat_interleave(batch_size, dim=0) for s in streams_of(source)])
    sigmas = schedule(model, steps, sampler_name, scheduler, denoise)
    masks = latent_step_masks(pixel_mask, source.shape, len(sigmas) - 1, shrink_px, shrink_fraction,
                              latent_factor(model.model), latent_frame_factor(model.model))
    seeds = batch_seeds(seed, batch_size)
    runs = [[s] for s in seeds] if type(model.model).__name__ in ONE_SAMPLE_PER_CALL else [seeds]
    outs = [streams_of(sample_blended(model, positive, negative, source[b : b + 1], masks_of(masks, b), sigmas,
                                      sampler_name, cfg, run, on_call=on_call, edit_audio=edit_audio))
            for b in range(source.shape[0]) for run in runs]
    return as_latent([torch.cat(parts) for parts in zip(*outs)])


def streams_of(latent) -> list[torch.Tensor]:
    """A LATENT's samples as its streams: ComfyUI 0.33's audio + video latents (LTX-2, MiniMax H3)
    are NestedTensors [video, audio]; any other latent is one stream."""
    return list(latent.unbind()) if is_nested(latent) else [latent]


def as_latent(streams: list[torch.Tensor]):
    """``streams_of``'s inverse: one stream is the tensor itself, several a ComfyUI NestedTensor."""
    if len(streams) == 1:
        return streams[0]
    import comfy.nested_tensor  # ComfyUI 0.33+: only reached with a latent of several streams

    return comfy.nested_tensor.NestedTensor(streams)


def is_nested(samples) -> bool:
    return bool(getattr(samples, "is_nested", False)) and hasattr(samples, "unbind")


def nothing_to_edit(pixel_mask: torch.Tensor) -> bool:
    """An empty mask asks for no change: the sampler returns the source without a model call. A mask
    found by Blended Mask by DiffEdit is empty where target and reference agree everywhere (its report says
    so); a painted one where nothing was painted: the console says it either way."""
    if (pixel_mask > 0).any():
        return False
    logging.warning("Blended Latent Sampler: the mask is empty, nothing to edit; the source latent is returned "
                    "unchanged (paint the area to edit, or lower Blended Mask by DiffEdit's threshold).")
    return True


def checked_latent(model, latent, streams: bool = False):
    """The LATENT to edit, checked, with the time axis its model's format wants: as core KSampler
    does, formats with one (Wan 2.1's, Qwen-Image's) take an image latent as one frame. With
    ``streams``, an audio + video latent (a NestedTensor whose first stream is the video) is taken
    as it is; elsewhere it is refused with the node that splits it."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if is_nested(samples):
        return _checked_streams(samples, streams)
    if not isinstance(samples, torch.Tensor):
        raise InputError("latent must be a LATENT from VAEEncode of the image to edit.")
    if samples.dim() not in (4, 5):
        raise InputError(f"latent must be an image latent [batch, channels, height, width] or a video latent "
                         f"[batch, channels, frames, height, width]; got {tuple(samples.shape)}.")
    _check_not_empty(samples)
    return comfy.sample.fix_empty_latent_channels(model, samples)


def _checked_streams(samples, allowed: bool):
    video = samples.unbind()[0]
    if not allowed:
        raise InputError("latent is an audio + video latent (LTX-2, MiniMax H3): connect its video stream "
                         "(core Separate AV Latent's video_latent); LTX-2 denoises a video alone, MiniMax H3 does "
                         "not: for it, paint the mask.")
    if video.dim() != 5:
        raise InputError(f"latent has several streams but its first is not a video latent [batch, channels, frames, "
                         f"height, width]: got {tuple(video.shape)} (core Concat AV Latent takes the video first).")
    _check_not_empty(video)
    return samples


def _check_not_empty(samples: torch.Tensor) -> None:
    if not samples.abs().sum() > 0:
        raise InputError("latent is empty (all zeros): connect VAEEncode of the image to edit, not EmptyLatentImage.")


def masks_of(step_masks, b: int):
    """Latent ``b``'s masks of a run's per-step masks (one mask for every latent, or one per latent)."""
    return [m[b : b + 1] if m.shape[0] > 1 else m for m in step_masks]


def schedule(model, steps: int, sampler_name: str, scheduler: str, denoise: float) -> torch.Tensor:
    """The sigmas core KSampler would use for these settings (``denoise`` < 1 starts later)."""
    ks = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                 scheduler=scheduler, denoise=denoise, model_options=model.model_options)
    return ks.sigmas.detach().float().cpu()


def sample_blended(model, positive, negative, source_latent, step_masks, sigmas, sampler_name, cfg, seeds,
                   on_call=None, edit_audio: bool = False):
    """``len(seeds)`` samples of one source latent [1,C,h,w] (ComfyUI's raw VAE latent; or its
    streams, video first), with ComfyUI's preview and progress bar."""
    sources = [s.float() for s in streams_of(source_latent)]
    noise = stream_noise_for_seeds([s.shape[1:] for s in sources], seeds)
    batch = [s.expand(len(seeds), *s.shape[1:]).contiguous() for s in sources]
    sampler = BlendingSampler(sampler_name, step_masks, on_call=on_call, edit_audio=edit_audio)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    out = comfy.sample.sample_custom(model, as_latent(noise), cfg, sampler, sigmas, positive, negative,
                                     as_latent(batch), noise_mask=None, callback=callback,
                                     disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=int(seeds[0]))
    # process_latent_out(process_latent_in(x)) is not always x in floats: the returned background (and
    # the audio the mask does not edit) is the caller's own latent values
    video, *others = streams_of(out)
    final = step_masks[-1].to(video.device)
    kept = [o.float() if edit_audio else s.to(o.device).expand_as(o).clone() for o, s in zip(others, sources[1:])]
    return as_latent([torch.where(final > 0, video.float(), sources[0].to(video.device)), *kept])
