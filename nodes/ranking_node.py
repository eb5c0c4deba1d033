"""Ranking (paper, Sec. 4.4): many samples, keep the best; optionally judged beyond the mask too."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..blended.edit import crop_to_mask
from ..blended.errors import InputError
from ..blended.ranking import RankingWeights, score_samples
from . import comfy_glue as glue
from .images import to_library_image, to_library_mask
from .types import GuidanceSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"
SCENE_VIEWS = ("context_box", "whole_image")


class BlendedRankResults(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedRankResults",
            display_name="Blended Rank Results",
            category=CATEGORY,
            description="Sorts samples (best first) and keeps the top k. The paper's criterion is un-augmented "
            "D_CLIP inside the mask; seam_weight adds a seam score along the mask's border (a visible step "
            "between inside and outside, beyond the image's own variation there), scene_weight adds D_CLIP of "
            "the unmasked picture against a scene prompt. With both at 0 the order is the paper's. The scores "
            "output lists every criterion per kept sample.",
            inputs=[
                io.Image.Input("images", tooltip="Samples from the Blended Sampler."),
                io.Mask.Input("mask", tooltip="The sampler's mask output (or the edit mask): CLIP scores only "
                              "the content inside it, the seam score looks at its border."),
                GuidanceSocket.Input("guidance", tooltip="The CLIP guidance the samples were made with: its prompts, "
                               "CLIP model, distance and typography guard are used for the score."),
                io.Int.Input("top_k", default=4, min=1, max=256,
                             tooltip="How many of the best samples to keep (all if fewer were made)."),
                io.Float.Input("clip_weight", default=1.0, min=0.0, max=100.0, step=0.05, optional=True,
                               tooltip="Weight of D_CLIP inside the mask (the paper's ranking: 1)."),
                io.Float.Input("seam_weight", default=0.0, min=0.0, max=100.0, step=0.05, optional=True,
                               tooltip="Weight of the seam score: how much the step across the mask's border "
                               "exceeds the image's own variation beside it (0..1 colour units; a hard seam "
                               "scores about 0.1-0.3, seamless content about 0). 0 = the paper."),
                io.Float.Input("scene_weight", default=0.0, min=0.0, max=100.0, step=0.05, optional=True,
                               tooltip="Weight of D_CLIP between the unmasked picture and scene_prompt, so the "
                               "edit must fit its surroundings. 0 = off (the paper)."),
                io.String.Input("scene_prompt", multiline=True, default="", optional=True,
                                tooltip="The whole picture as it should look, e.g. 'a kitchen table with a bowl of "
                                "cherries' (prompt syntax: lines or |, optional :weight). Needed when scene_weight "
                                "is above 0; when given, its score is listed even at weight 0."),
                io.Combo.Input("scene_view", options=list(SCENE_VIEWS), default="context_box", optional=True,
                               tooltip="What the scene prompt judges: context_box = the mask's box with a margin "
                               "(the model's view), whole_image = the full picture (outpainting)."),
            ],
            outputs=[
                io.Image.Output("ranked_images", display_name="images"),
                io.Mask.Output("ranked_mask", display_name="mask"),
                io.String.Output("scores", display_name="scores"),
            ],
        )

    @classmethod
    def execute(cls, images, mask, guidance, top_k, clip_weight=1.0, seam_weight=0.0, scene_weight=0.0,
                scene_prompt="", scene_view="context_box") -> io.NodeOutput:
        clip_guidance = guidance.clip
        if clip_guidance is None:
            raise InputError("guidance has no CLIP term: connect the Blended CLIP Guidance used for sampling.")
        if scene_view not in SCENE_VIEWS:
            raise InputError(f"scene_view '{scene_view}': choose one of {', '.join(SCENE_VIEWS)}.")
        weights = RankingWeights(clip_weight, seam_weight, scene_weight)
        library_mask = to_library_mask(mask, images)
        full = to_library_image(images)
        x, m = crop_to_mask(full, library_mask)
        device = glue.work_device()
        with glue.models_on(device, clip_guidance):
            views = (x if scene_view == "context_box" else full).to(device)
            table = score_samples(x.to(device), m.to(device), clip_guidance, weights, scene_prompt, views,
                                  check=glue.check_interrupt)
        order = table.order.cpu()[: int(top_k)]
        full_mask = library_mask[:, 0].expand(images.shape[0], -1, -1)
        text = table.format(int(top_k))
        return io.NodeOutput(images[order], full_mask[order].contiguous(), text, ui=ui.PreviewText(text))
