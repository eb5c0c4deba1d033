"""Ranking (paper, Sec. 4.4): many samples, keep the best; optionally judged beyond the mask too."""

from __future__ import annotations

import contextlib

from comfy_api.latest import io

from ..blended import memory
from ..blended.errors import InputError
from ..blended.pixel.edit import crop_to_mask
from ..blended.ranking import COMBINES, RankingWeights, score_samples
from . import comfy_glue as glue
from .images import to_library_image, to_library_mask
from .types import CriteriaSocket, GuidanceSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"
SCENE_VIEWS = ("context_box", "whole_image")
ORDERS = ("best_first", "best_last")


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
            "output lists every criterion per kept sample, and per reward model the view and the prompt it "
            "judged; a score that is not finite is named there and ranks last.",
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
                                "is above 0; when given, its score is listed even at weight 0, and reward models "
                                "with view whole_image are judged against it instead of the edit's prompt."),
                io.Combo.Input("scene_view", options=list(SCENE_VIEWS), default="context_box", optional=True,
                               tooltip="What the scene prompt judges: context_box = the mask's box with a margin "
                               "(the model's view), whole_image = the full picture (outpainting)."),
                io.Combo.Input("order", options=list(ORDERS), default="best_first", optional=True,
                               tooltip="Order of the kept samples in the output batch. best_last for Krita's "
                               "'layers' batch mode, which puts each image above the previous one, so the best "
                               "ends on top of the layer stack. The scores text lists best first either way."),
                CriteriaSocket.Input("criteria", optional=True,
                                     tooltip="Reward models (Blended Reward Criterion, chained) ranked together with "
                                     "D_CLIP, seam and scene. A model that could not be loaded is left out with a "
                                     "note in the scores."),
                io.Combo.Input("combine", options=list(COMBINES), default="auto", optional=True,
                               tooltip="How criteria on different scales are combined. auto: the weighted sum "
                               "(as before) without reward models, mean_rank with them. mean_rank: weighted mean of "
                               "each criterion's rank (robust: one fooled model moves a sample only so far). "
                               "z_score: weighted mean of z-scored values. weighted_sum: the raw weighted sum."),
                io.Boolean.Input("demote_lone_winners", default=False, optional=True,
                                 tooltip="With reward models: a sample first on one criterion and in the worse "
                                 "half on every other (flagged with ! in the scores; two criteria are enough) "
                                 "may have fooled that criterion. On: such samples go below every unflagged "
                                 "sample. Off (default): they are only flagged and the order is unchanged."),
            ],
            outputs=[
                io.Image.Output("ranked_images", display_name="images"),
                io.Mask.Output("ranked_mask", display_name="mask"),
                io.String.Output("scores", display_name="scores"),
            ],
        )

    @classmethod
    def execute(cls, images, mask, guidance, top_k, clip_weight=1.0, seam_weight=0.0, scene_weight=0.0,
                scene_prompt="", scene_view="context_box", criteria=None, combine="auto",
                order="best_first", demote_lone_winners=False) -> io.NodeOutput:
        clip_guidance = ranking_guidance(guidance, scene_view)
        rewards = tuple(criteria or ())
        weights = RankingWeights(clip_weight, seam_weight, scene_weight, allow_zero=any(c.weight for c in rewards))
        library_mask = to_library_mask(mask, images)
        table = score_on_device(images, library_mask, clip_guidance, weights, scene_prompt, scene_view, rewards,
                                combine, bool(demote_lone_winners))
        kept = table.order.cpu()[: int(top_k)]
        kept = kept.flip(0) if order == "best_last" else kept
        full_mask = library_mask[:, 0].expand(images.shape[0], -1, -1)
        text = table.format(int(top_k))
        return io.NodeOutput(images[kept], full_mask[kept].contiguous(), text,
                             ui=glue.text_report(text, "blended_scores"))


def ranking_guidance(guidance, scene_view: str):
    """The CLIP term of the guidance the samples were made with: its prompts, model, distance and
    typography guard are what the ranking scores by, so without one there is nothing to rank."""
    if guidance.clip is None:
        raise InputError("guidance has no CLIP term: connect the Blended CLIP Guidance used for sampling.")
    if scene_view not in SCENE_VIEWS:
        raise InputError(f"scene_view '{scene_view}': choose one of {', '.join(SCENE_VIEWS)}.")
    return guidance.clip


def score_on_device(images, library_mask, clip_guidance, weights, scene_prompt, scene_view, rewards, combine,
                    demote=False):
    """``score_samples`` on the work device: the samples cropped to the mask's box as the sampler saw
    them, CLIP there for the whole call, reward models one at a time in chunks that fit the memory
    budget (a ranking after a big batch must not need room for every model at once)."""
    full = to_library_image(images)
    x, m = crop_to_mask(full, library_mask)
    device = glue.work_device()
    budget = memory.budget(device)

    @contextlib.contextmanager
    def on_device(reward):  # one reward model on the work device at a time, freed after
        glue.make_room_for([reward.model], device)
        with glue.models_on(device, reward):
            yield

    with glue.models_on(device, clip_guidance):
        views = (x if scene_view == "context_box" else full).to(device)
        return score_samples(x.to(device), m.to(device), clip_guidance, weights, scene_prompt, views,
                             check=glue.check_interrupt, rewards=rewards, combine=combine,
                             whole_images=full.to(device) if rewards else None,
                             reward_chunk=lambda r, n: memory.reward_chunk(r, n, budget),
                             progress=glue.ChunkProgress(), on_device=on_device, demote=demote)
