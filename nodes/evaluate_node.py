"""Evaluation node: numbers that say whether an edit did its job and left the rest alone.

The report is JSON (one list entry per sample) so a pipeline can parse it, and it is also shown
on the node. A CLIP other than the guiding one should be connected for the CLIP score: the
guiding model was optimised against and flatters the edits it steered.
"""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..blended.errors import InputError
from ..blended.metrics import evaluate
from . import comfy_glue as glue
from .images import to_library_mask, to_rgb01
from .types import ClipSocket, LpipsSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"


def evaluate_batch(images, source, mask, prompt, clip=None, lpips=None, band_px=4, device="cpu") -> dict:
    """Metrics of edits IMAGE [N,H,W,C] of one ``source`` IMAGE [1,H,W,C] inside MASK [1|N,H,W]."""
    edited, src = to_rgb01(images, "images"), to_rgb01(source, "source")
    if source.shape[0] != 1:
        raise InputError(f"source has a batch of {source.shape[0]}: give the one image the samples were edited from.")
    if tuple(source.shape[1:3]) != tuple(images.shape[1:3]):
        raise InputError(
            f"source is {source.shape[2]}x{source.shape[1]} but the edits are {images.shape[2]}x{images.shape[1]}: "
            "connect the image that went into the Blended Sampler."
        )
    library_mask = to_library_mask(mask, images)
    if library_mask.shape[0] > 1:
        if not (library_mask == library_mask[:1]).all():
            raise InputError("mask differs between samples: evaluate the samples of one input image at a time.")
        library_mask = library_mask[:1]
    return evaluate(edited.to(device), src.to(device), library_mask.to(device), prompt, clip=clip, lpips=lpips,
                    band_px=int(band_px))


def format_report(report: dict) -> str:
    return json.dumps(report, indent=1, allow_nan=True)


class BlendedEvaluate(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedEvaluate",
            display_name="Blended Evaluate",
            category=CATEGORY,
            is_output_node=True,  # a report is an end product: ComfyUI runs it with nothing connected after it
            description="Background PSNR/LPIPS outside the mask (an edge band excluded), the seam score along the "
            "mask's border (how much the step from inside to outside exceeds the image's own variation there; "
            "0 = seamless), CLIP score in the mask's box and diversity (pairwise LPIPS) across samples, as a "
            "JSON report.",
            inputs=[
                io.Image.Input("images", tooltip="Edited samples (from the Blended Sampler or Blended Rank Results)."),
                io.Image.Input("source", tooltip="The image the samples were edited from (batch of 1)."),
                io.Mask.Input("mask", tooltip="The mask you painted (the one given to the sampler): background metrics "
                              "look only outside it, the CLIP score only at its box, the seam score at its border "
                              "(connect the sampler's mask output to measure exactly where a dilated or feathered "
                              "edit was pasted)."),
                io.String.Input("prompt", multiline=True, default="a red ball",
                                tooltip="The text the CLIP score compares the edited region with."),
                io.Int.Input("band_px", default=4, min=0, max=256,
                             tooltip="Pixels around the mask left out of the background metrics (feathering and "
                             "resizing legitimately touch them)."),
                ClipSocket.Input("clip", optional=True,
                                tooltip="CLIP for the score; use one other than the guidance CLIP (it was optimised "
                                "against). Without it no CLIP score is computed."),
                LpipsSocket.Input("lpips", optional=True,
                                 tooltip="LPIPS for background LPIPS and diversity; without it only PSNR is computed."),
            ],
            outputs=[io.String.Output("report", display_name="report")],
        )

    @classmethod
    def execute(cls, images, source, mask, prompt, band_px, clip=None, lpips=None) -> io.NodeOutput:
        device = glue.work_device()
        with glue.models_on(device, clip, lpips):
            report = evaluate_batch(images, source, mask, prompt, clip, lpips, band_px, device)
        text = format_report(report)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
