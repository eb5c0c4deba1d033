"""The sampler node: Blended Diffusion (Algorithm 2) or local CLIP-guided diffusion (Algorithm 1)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..blended.masks import EDIT_THRESHOLD
from ..blended.memory import MEMORY_MODES, PRECISIONS, autocast_for
from ..blended.pixel.edit import RegionSettings, edit
from ..blended.pixel.sampler import METHODS, MODES, SamplerSettings
from ..blended.seeds import batch_seeds
from . import comfy_glue as glue
from .images import to_comfy_image, to_comfy_mask, to_library_mask, to_rgb01
from .types import DiffusionModelSocket, GuidanceSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"


class BlendedSampler(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedSampler",
            display_name="Blended Sampler",
            category=CATEGORY,
            description="Edits the masked area of the image to match the guidance; every pixel outside the "
            "(dilated) mask is returned exactly as it came in. Works at any image size.",
            inputs=[
                DiffusionModelSocket.Input("model", tooltip="ADM from the Blended Model Loader."),
                GuidanceSocket.Input("guidance", tooltip="From Blended CLIP Guidance (and, for mode 'local', Blended "
                               "Background Loss)."),
                io.Image.Input("image", tooltip="The photo to edit, any size."),
                io.Mask.Input("mask", tooltip="White (1) = edit here. LoadImage's MASK is 1 - alpha: erase the "
                              "area to edit in the mask editor. Must have the image's size."),
                io.String.Input("steps", default="100",
                                tooltip="Respacing of the 1000-step schedule: '100' (the paper), 'ddim50' for DDIM "
                                "striding, or section counts like '10,20,30'."),
                io.Int.Input("skip_timesteps", default=25, min=0, max=999,
                             tooltip="Steps skipped at the start: sampling begins from the input noised to step "
                             "steps - skip. More keeps more of the input's layout and colours (scribbles: 40-60 of "
                             "100); 0 starts from noise (outpainting)."),
                io.Combo.Input("mode", options=list(MODES), default="blended",
                               tooltip="blended: Blended Diffusion (Algorithm 2), the background is blended in at "
                               "every step. local: local CLIP-guided diffusion (Algorithm 1), needs the background "
                               "loss."),
                io.Combo.Input("method", options=list(METHODS), default="ddpm",
                               tooltip="ddpm: ancestral sampling (the paper). ddim: deterministic, use with "
                               "steps like 'ddim50'."),
                io.Int.Input("batch_size", default=8, min=1, max=256,
                             tooltip="Samples per input image; rank them and keep the best (paper: 64)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Sample i uses seed + i. Same seed and batch size: the same image bit for bit; "
                             "in a batch of another size float rounding can move a pixel by about 1/255."),
                io.Boolean.Input("enforce_background", default=True,
                                 tooltip="Keep every pixel outside the mask exactly as given. Off returns the model's "
                                 "whole context box, showing what local mode really did to the background there."),
                io.Int.Input("mask_dilate", default=0, min=0, max=512,
                             tooltip="Grow the mask by this many pixels (full resolution) before editing."),
                io.Int.Input("mask_feather", default=0, min=0, max=512,
                             tooltip="Soften the paste over this many pixels inside the (dilated) mask edge, so "
                             "seams vanish; pixels outside the mask never change."),
                io.Float.Input("context_margin", default=0.25, min=0.0, max=4.0, step=0.05,
                               tooltip="Context around the mask's bounding box that the model sees, as a fraction "
                               "of the box size. The box is resized to the model's resolution (aspect kept)."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                               tooltip="UNet precision on a GPU. auto: bf16 where the GPU supports it, else fp16 "
                               "(faster, less memory); fp32: full precision. The CPU always runs fp32."),
                io.Combo.Input("memory", options=list(MEMORY_MODES), default="auto",
                               tooltip="auto: run as many samples at once as fit in free memory, and recompute the "
                               "UNet's blocks in the backward pass (gradient checkpointing, 1.3-3x the time per step, "
                               "a fraction of the memory) only when one sample would not fit otherwise. fast: "
                               "never checkpoint. low: always checkpoint (more samples per chunk)."),
            ],
            outputs=[
                io.Image.Output("images", display_name="images"),
                io.Mask.Output("paste_mask", display_name="mask",
                               tooltip="Where each result differs from the input (paste weights), for ranking and "
                               "evaluation."),
            ],
        )

    @classmethod
    def execute(cls, model, guidance, image, mask, steps, skip_timesteps, mode, method, batch_size, seed,
                enforce_background, mask_dilate, mask_feather, context_margin, precision="auto",
                memory="auto") -> io.NodeOutput:
        device = glue.work_device()
        settings = SamplerSettings(steps, method, skip_timesteps, mode, enforce_background=enforce_background,
                                   autocast=autocast_for(precision, device), memory=memory)
        region = RegionSettings(mask_dilate, mask_feather, context_margin)
        seeds = batch_seeds(seed, batch_size)
        progress = glue.StepProgress(settings.guided_steps * image.shape[0], image.shape[0])
        glue.make_room(model, guidance, settings, len(seeds), device)
        # Nodes run under inference_mode, and guidance needs autograd: inference tensors cannot be saved
        # for backward, so the inputs are cloned inside the grad-enabled block.
        with torch.inference_mode(False), torch.enable_grad(), glue.models_on(device, model, guidance):
            rgb, edit_mask = to_rgb01(image).clone(), to_library_mask(mask, image, threshold=EDIT_THRESHOLD).clone()
            images, paste = edit(model, rgb, edit_mask, guidance, settings, seeds, region, device=device,
                                 callback=progress.callback, check=glue.check_interrupt)
        return io.NodeOutput(to_comfy_image(images), to_comfy_mask(paste))
