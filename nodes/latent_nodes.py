"""The latent path (Blended Latent Diffusion) on the user's own models and core sockets:
crop -> (core VAEEncode) -> blended latent sampler -> background reconstruction -> stitch."""

from __future__ import annotations

import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io, ui

from ..blended.errors import InputError
from ..blended.latent.crop_stitch import crop_for_model, stitch_with_report
from ..blended.latent.reconstruct import SEAM_MODES as RECONSTRUCT_SEAMS
from ..blended.latent.reconstruct import ReconstructSettings, reconstruct_all, report_text, tunable_for
from ..blended.latent.report import report_text as stitch_report_text
from ..blended.latent.seam import MODES as SEAM_MODES
from . import comfy_glue as glue
from .images import to_comfy_image, to_comfy_mask, to_library_mask, to_rgb01
from .latent_sampling import blending_sampler, run_latent_sampler
from .types import LatentCropSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion/latent"


class BlendedLatentCrop(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedLatentCrop",
            display_name="Blended Latent Crop",
            category=CATEGORY,
            description="Cuts a context box around the mask and scales it (aspect kept) to the model's resolution, "
            "in the multiples its VAE and UNet need. Encode the image output with VAEEncode; stitch the result back "
            "with Blended Latent Stitch.",
            inputs=[
                io.Image.Input("image", tooltip="The photo to edit, any size."),
                io.Mask.Input("mask", tooltip="White (1) = edit here, drawn on this image (LoadImage's MASK is "
                              "1 - alpha)."),
                io.Int.Input("resolution", default=512, min=64, max=4096, step=8,
                             tooltip="Short side of the crop in pixels: 512 for SD1.x, 768 for SD2.x-768, 1024 for "
                             "SDXL and Flux."),
                io.Int.Input("multiple", default=8, min=8, max=128, step=8,
                             tooltip="Size step the model needs: 8 for SD1.x/SD2.x/SDXL, 16 for Flux, SD3, Qwen-Image, "
                             "Z-Image, Wan 2.1/2.2 A14B, Hunyuan Video 1 and 1.5, Mochi, Cosmos and CogVideoX, 32 for "
                             "HunyuanImage 2.1, LTXV and Wan 2.2 5B."),
                io.Float.Input("context_margin", default=0.25, min=0.0, max=4.0, step=0.05,
                               tooltip="Context around the mask's bounding box, as a fraction of the box size."),
                io.Int.Input("mask_dilate", default=0, min=0, max=512,
                             tooltip="Grow the mask by this many pixels (full resolution) first."),
            ],
            outputs=[
                io.Image.Output("crop_image", display_name="image"),
                io.Mask.Output("crop_mask", display_name="mask"),
                LatentCropSocket.Output("crop", display_name="crop"),
            ],
        )

    @classmethod
    def execute(cls, image, mask, resolution, multiple, context_margin, mask_dilate) -> io.NodeOutput:
        img, m, crop = crop_for_model(to_rgb01(image), to_library_mask(mask, image), resolution, multiple,
                                      context_margin, mask_dilate)
        return io.NodeOutput(to_comfy_image(img), to_comfy_mask(m), crop)


class BlendedLatentSampler(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedLatentSampler",
            display_name="Blended Latent Sampler",
            category=CATEGORY,
            description="Blended Latent Diffusion with your own checkpoint: the masked area follows the prompt, the "
            "rest is the source latent noised to the sample's level at every step (the model's own noise "
            "scaling: SD1.x, SD2.x, SDXL, SD3, Flux), with progressive mask shrinking. Outside the mask the "
            "returned latent is the source latent, bit for bit.",
            inputs=[
                io.Model.Input("model", tooltip="Your checkpoint's MODEL (LoRAs and model patches apply as usual)."),
                io.Conditioning.Input("positive", tooltip="What the masked area should show (CLIPTextEncode; "
                                      "ControlNet and reference latents pass through untouched)."),
                io.Conditioning.Input("negative", tooltip="Classifier-free guidance's negative conditioning."),
                io.Latent.Input("latent", tooltip="VAEEncode of the image to edit (the Blended Latent Crop's image)."),
                io.Mask.Input("mask", tooltip="The edit mask at the encoded image's size (the crop's mask). Every "
                              "latent cell a mask pixel touches is edited, so thin strokes survive. Video latents: "
                              "one mask for all frames or one per frame (1 + 4n frames for Wan, Hunyuan Video and "
                              "CogVideoX, 1 + 6n for Mochi, 1 + 8n for LTXV and Cosmos 1.0)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Sample i uses seed + i: a sample is reproducible whatever the batch size."),
                io.Int.Input("steps", default=30, min=1, max=10000, tooltip="Sampling steps actually run."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                               tooltip="ComfyUI's sampler that takes the steps."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS), default="normal",
                               tooltip="ComfyUI's noise schedule."),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Strength: 1 starts from noise; lower starts later from the source noised "
                               "less, keeping more of its layout and colours (like KSampler's denoise)."),
                io.Int.Input("batch_size", default=4, min=1, max=256,
                             tooltip="Samples per input latent; rank them and keep the best."),
                io.Int.Input("shrink_px", default=16, min=0, max=512,
                             tooltip="Progressive mask shrinking: how many pixels the mask is dilated at the first "
                             "step; it shrinks linearly to the precise mask. 0 = off."),
                io.Float.Input("shrink_fraction", default=0.25, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps over which the dilated mask shrinks to the precise "
                               "one."),
            ],
            outputs=[io.Latent.Output("samples", display_name="latent")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, mask, seed, steps, cfg, sampler_name, scheduler, denoise,
                batch_size, shrink_px, shrink_fraction) -> io.NodeOutput:
        samples = run_latent_sampler(model, positive, negative, latent, mask, seed, steps, cfg, sampler_name,
                                     scheduler, denoise, batch_size, shrink_px, shrink_fraction)
        return io.NodeOutput({"samples": samples})


class BlendedLatentSamplerObject(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedLatentSamplerObject",
            display_name="Blended Latent SAMPLER",
            category=CATEGORY,
            description="The same blending as a SAMPLER for core SamplerCustom / SamplerCustomAdvanced, so any "
            "guider, noise and sigmas work (e.g. Flux Kontext or Qwen-Image-Edit graphs). Connect the latent "
            "of the image to edit as SamplerCustom's latent_image, without a noise mask.",
            inputs=[
                io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                               tooltip="ComfyUI's sampler that takes the steps."),
                io.Mask.Input("mask", tooltip="The edit mask at the encoded image's size. Every latent cell a mask "
                              "pixel touches is edited."),
                io.Int.Input("shrink_px", default=16, min=0, max=512,
                             tooltip="Progressive mask shrinking: dilation in pixels at the first step. 0 = off."),
                io.Float.Input("shrink_fraction", default=0.25, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps over which the dilated mask shrinks to the precise "
                               "one."),
            ],
            outputs=[io.Sampler.Output("sampler", display_name="sampler")],
        )

    @classmethod
    def execute(cls, sampler_name, mask, shrink_px, shrink_fraction) -> io.NodeOutput:
        return io.NodeOutput(blending_sampler(sampler_name, mask, shrink_px, shrink_fraction))


class BlendedLatentStitch(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedLatentStitch",
            display_name="Blended Latent Stitch",
            category=CATEGORY,
            description="Pastes the edited crops back into the full-size original inside the mask; every pixel "
            "outside the mask is the original's, bit for bit.",
            inputs=[
                LatentCropSocket.Input("crop", tooltip="The Blended Latent Crop this edit was made from."),
                io.Image.Input("images", tooltip="Edited crops (VAEDecode or Blended Reconstruction)."),
                io.Int.Input("mask_feather", default=0, min=0, max=512,
                             tooltip="Soften the paste over this many pixels inside the mask edge; pixels outside "
                             "the mask never change."),
                io.Boolean.Input("video", default=False, optional=True,
                                 tooltip="On for a video: the crop's images are the frames of one clip and the "
                                 "edited images whole clips one after another (VAEDecode of a video latent batch). "
                                 "Off: a batch of photos, each image's samples together."),
                io.Combo.Input("seam", options=list(SEAM_MODES), default="exact paste", optional=True,
                               tooltip="How the edit meets the original at the mask border. exact paste: as is. "
                               "feather: soft edge inside the mask (mask_feather px, 4 if 0). colour match: the "
                               "edit's colour mean/spread matched to a ring of original just outside. gradient "
                               "domain: Poisson blend, keeps the edit's detail and removes colour/brightness "
                               "offsets at the border. Outside the mask the original stays bit for bit."),
            ],
            outputs=[
                io.Image.Output("full_images", display_name="images"),
                io.Mask.Output("paste_mask", display_name="mask", tooltip="Paste weights, for ranking and evaluation."),
                io.String.Output("report", display_name="report",
                                 tooltip="Per stitched image: the seam mode, what colour match / gradient domain "
                                 "changed inside the mask (mean RGB change, RMS, largest), and the seam score of the "
                                 "exact paste -> the result (0 = seamless)."),
            ],
        )

    @classmethod
    def execute(cls, crop, images, mask_feather, video=False, seam="exact paste") -> io.NodeOutput:
        full, weights, stats = stitch_with_report(crop, to_rgb01(images, "images"), mask_feather, video, seam)
        text = stitch_report_text(stats)
        return io.NodeOutput(to_comfy_image(full), to_comfy_mask(weights), text, ui=ui.PreviewText(text))


class BlendedBackgroundReconstruction(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedBackgroundReconstruction",
            display_name="Blended Reconstruction",
            category=CATEGORY,
            description="Decodes edited latents with a private, per-image fine-tuned copy of the VAE decoder's last "
            "block so the decode matches the source in a band around the mask (Blended Latent Diffusion's step, "
            "on the mask's box only), then pastes the exact source pixels outside the mask. The shared VAE is "
            "never modified. The text reports per image what was done, the seam score and what is exact.",
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE the latent was encoded with."),
                io.Image.Input("source", tooltip="The image the latent was encoded from (the crop's image)."),
                io.Mask.Input("mask", tooltip="The edit mask at the source's size (the crop's mask)."),
                io.Latent.Input("latent", tooltip="Edited latents from the Blended Latent Sampler."),
                io.Image.Input("edited", optional=True,
                               tooltip="Optional: the edit to keep inside the mask (default: the plain decode of "
                               "the latent)."),
                io.Int.Input("iterations", default=75, min=0, max=1000,
                             tooltip="The most Adam steps per image (the paper: 75-100); it stops sooner once the "
                             "error in the band outside the mask is 20x below the plain decode's or stops falling. "
                             "0 = plain decode + exact paste."),
                io.Float.Input("learning_rate", default=5e-4, min=1e-7, max=1.0, step=1e-5, round=1e-7,
                               tooltip="Adam's learning rate for the copy of the decoder's last block (5e-4: a low "
                               "inside change in few steps; the paper's 1e-4 was for the whole decoder)."),
                io.Float.Input("background_weight", default=100.0, min=0.0, max=1e6, step=1.0,
                               tooltip="λ: weight of matching the source outside the mask against keeping the "
                               "edit inside."),
                io.Int.Input("mask_feather", default=0, min=0, max=512,
                             tooltip="Soften the paste over this many pixels inside the mask edge; outside the "
                             "mask the source stays exact."),
                io.Combo.Input("seam", options=list(RECONSTRUCT_SEAMS), default=RECONSTRUCT_SEAMS[0], optional=True,
                               tooltip="reconstruct decoder: the tuned decode pasted exactly (with mask_feather). "
                               "reconstruct + gradient domain: the tuned decode then Poisson-blended into the "
                               "source at the border (keeps its detail, removes a colour/brightness step the "
                               "tuning left). Outside the mask the source stays bit for bit in both; the report "
                               "gives the seam score before and after."),
            ],
            outputs=[
                io.Image.Output("images", display_name="images"),
                io.String.Output("report", display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, vae, source, mask, latent, iterations, learning_rate, background_weight, mask_feather,
                edited=None, seam=RECONSTRUCT_SEAMS[0]) -> io.NodeOutput:
        settings = ReconstructSettings(iterations, learning_rate, background_weight, mask_feather, seam)
        images, text, _ = reconstruct_images(vae, source, mask, latent, settings, edited)
        return io.NodeOutput(images, text, ui=ui.PreviewText(text))


def reconstruct_images(vae, source, mask, latent, settings: ReconstructSettings, edited=None):
    """-> (IMAGE [N,H,W,3], report text, per-image figures). N latents, image-major over the sources."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise InputError("latent must be a LATENT (the Blended Latent Sampler's output).")
    if latent["samples"].dim() == 5:
        raise InputError("latent is a video latent [batch, channels, frames, height, width]: Background Reconstruction "
                         "tunes an image decoder. For a video, decode with VAEDecode and paste with Blended Latent "
                         "Stitch (video on), which keeps every frame's background exact.")
    source01, lib_mask = to_rgb01(source, "source"), to_library_mask(mask, source)
    edited01 = None if edited is None else to_rgb01(edited, "edited")
    device = glue.work_device()
    first_stage = vae.first_stage_model
    bar = comfy.utils.ProgressBar(1)  # the library's callback brings the total (iterations x latents)
    glue.make_room_for([first_stage] * 4, device)  # room for a whole copy + gradients + Adam's two moments
    glue.mm.load_models_gpu([vae.patcher])  # the frozen part runs on the shared VAE itself

    def make_tunable(z, hard_mask):
        glue.mm.soft_empty_cache()  # the previous image's copy and its Adam state are gone by now
        return tunable_for(first_stage, z, hard_mask, settings, device)

    images, stats = reconstruct_all(make_tunable, latent["samples"], source01, lib_mask, settings, edited01,
                                    callback=lambda done, total: bar.update_absolute(done, total),
                                    check=glue.check_interrupt)
    return to_comfy_image(images), report_text(stats), stats
