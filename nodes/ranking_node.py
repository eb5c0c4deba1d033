"""Ranking (paper, Sec. 4.4): many samples, keep the ones CLIP likes best."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from blended.errors import InputError
from blended.ranking import rank

from . import comfy_glue as glue
from .images import to_library_image, to_library_mask
from .edit import crop_to_mask
from .types import Guidance
from .validation import BlendedNode

CATEGORY = "blended_diffusion"


def format_scores(order: torch.Tensor, scores: torch.Tensor, total: int) -> str:
    lines = [f"ranked {total} samples by D_CLIP (lower = closer to the prompt):"]
    lines += [f"#{r + 1}: sample {int(i)}  D_CLIP {float(s):.4f}" for r, (i, s) in enumerate(zip(order, scores))]
    return "\n".join(lines)


class RankResults(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedRankResults",
            display_name="Blended Rank Results",
            category=CATEGORY,
            description="Sorts samples by un-augmented D_CLIP inside the mask (best first) and keeps the top k.",
            inputs=[
                io.Image.Input("images", tooltip="Samples from the Blended Sampler."),
                io.Mask.Input("mask", tooltip="The sampler's mask output (or the edit mask): CLIP scores only "
                              "the content inside it."),
                Guidance.Input("guidance", tooltip="The CLIP guidance the samples were made with: its prompt, "
                               "CLIP model and distance are used for the score."),
                io.Int.Input("top_k", default=4, min=1, max=256,
                             tooltip="How many of the best samples to keep (all if fewer were made)."),
            ],
            outputs=[
                io.Image.Output("ranked_images", display_name="images"),
                io.Mask.Output("ranked_mask", display_name="mask"),
                io.String.Output("scores", display_name="scores"),
            ],
        )

    @classmethod
    def execute(cls, images, mask, guidance, top_k) -> io.NodeOutput:
        with glue.user_errors():
            clip_guidance = guidance.clip
            if clip_guidance is None:
                raise InputError("guidance has no CLIP term: connect the Blended CLIP Guidance used for sampling.")
            library_mask = to_library_mask(mask, images)
            x, m = crop_to_mask(to_library_image(images), library_mask)
            device = glue.work_device()
            with glue.models_on(device, clip_guidance):
                order, scores = rank(x.to(device), m.to(device), clip_guidance)
            order, scores = order.cpu()[: int(top_k)], scores.cpu()[: int(top_k)]
            full_mask = library_mask[:, 0].expand(images.shape[0], -1, -1)
            text = format_scores(order, scores, images.shape[0])
        return io.NodeOutput(images[order], full_mask[order].contiguous(), text, ui=ui.PreviewText(text))
