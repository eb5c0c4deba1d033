"""Guidance nodes: the losses on x̂0 that steer sampling.

A guidance is an immutable set of terms; each node returns a new one, so one CLIP guidance can
feed several samplers (and the ranking node) without them affecting each other.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..blended.augment import ExtendingAugmentation
from ..blended.clip_distance import DISTANCES
from ..blended.guidance import BackgroundLoss, ClipGuidance, Guidance, RangeLoss, check_weight
from ..blended.prompts import SYNTAX_HELP
from .types import AugmentationSocket, ClipSocket, GuidanceSocket, LpipsSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"


class BlendedExtendingAugmentation(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedExtendingAugmentation",
            display_name="Blended Augmentation",
            category=CATEGORY,
            description="Random affine + perspective copies of CLIP's input; averaging the CLIP gradient over "
            "them defeats adversarial pixel patterns (paper, Sec. 4.3).",
            inputs=[
                io.Int.Input("count", default=8, min=0, max=64,
                             tooltip="Warped copies per sample (0 = off). The paper uses 8; cost grows mildly."),
                io.Float.Input("degrees", default=15.0, min=0.0, max=180.0, step=1.0,
                               tooltip="Maximum random rotation in degrees."),
                io.Float.Input("translate", default=0.1, min=0.0, max=0.9, step=0.01,
                               tooltip="Maximum random shift, as a fraction of the image size."),
                io.Float.Input("perspective", default=0.7, min=0.0, max=0.95, step=0.05,
                               tooltip="Perspective distortion: how far each corner may move, as a fraction of "
                               "half the image size."),
            ],
            outputs=[AugmentationSocket.Output(display_name="augmentation")],
        )

    @classmethod
    def execute(cls, count, degrees, translate, perspective) -> io.NodeOutput:
        return io.NodeOutput(ExtendingAugmentation(count, degrees, translate, perspective))


class BlendedCLIPGuidance(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedCLIPGuidance",
            display_name="Blended CLIP Guidance",
            category=CATEGORY,
            description="D_CLIP between the masked x̂0 and the prompt, plus the range loss. Prompts: "
            + SYNTAX_HELP + " A negative weight, or the negative prompt, pushes away; weights are divided by "
            "the sum of the positive ones, so one prompt of weight 1 and no negative prompt is the paper's D_CLIP. "
            "The typography guard pushes away from CLIP's embedding of the prompt written as text (and of "
            "'text', 'letters', 'watermark'), against CLIP's habit of writing the prompt instead of drawing it.",
            inputs=[
                ClipSocket.Input("clip", tooltip="CLIP from the Blended CLIP Loader."),
                io.String.Input("prompt", multiline=True, default="a red ball",
                                tooltip="What should appear inside the mask: a short phrase works best "
                                "(CLIP reads at most 77 tokens per prompt). Several prompts: one per line (or "
                                "separated by |), each optionally ending in :weight, e.g. 'a bowl of cherries:1 | "
                                "red fruit:0.5'; a negative weight pushes away."),
                io.Float.Input("clip_lambda", default=1000.0, min=0.0, max=1e6, step=10.0,
                               tooltip="Strength of the CLIP gradient (paper: 1000). Higher follows the prompt "
                               "harder but invites adversarial textures."),
                io.Float.Input("range_lambda", default=50.0, min=0.0, max=1e6, step=1.0,
                               tooltip="Strength of the range loss that keeps x̂0 inside [-1, 1] (paper: 50)."),
                io.Combo.Input("distance", options=list(DISTANCES), default="spherical",
                               tooltip="spherical: squared great-circle distance (the paper's D_CLIP); "
                               "cosine: 1 - cosine similarity."),
                AugmentationSocket.Input("augmentation", optional=True,
                                   tooltip="Extending augmentations for the CLIP gradient; without them "
                                   "the gradient sees only the un-warped image."),
                io.String.Input("negative_prompt", multiline=True, default="", optional=True,
                                tooltip="What the masked area should move away from, e.g. 'blurry | text'. Same "
                                "syntax as prompt; a weight here is a strength (default 1, relative to the "
                                "prompt's weights). Empty = none (the paper)."),
                io.Boolean.Input("typography_guard", default=False, optional=True,
                                 tooltip="Push away from the prompt rendered as text and from 'text, letters, "
                                 "watermark', so CLIP's typographic bias does not write the prompt into the image. "
                                 "Off = the paper. Ranking with this guidance also demotes lettering."),
                io.Float.Input("typography_strength", default=0.5, min=0.0, max=10.0, step=0.05, optional=True,
                               tooltip="Weight of the typography guard relative to the prompt (like a negative "
                               "prompt of this weight); used only when typography_guard is on."),
            ],
            outputs=[GuidanceSocket.Output(display_name="guidance")],
        )

    @classmethod
    def execute(cls, clip, prompt, clip_lambda, range_lambda, distance, augmentation=None, negative_prompt="",
                typography_guard=False, typography_strength=0.5) -> io.NodeOutput:
        typography = check_weight(typography_strength, "typography_strength", "0.5") if typography_guard else 0.0
        terms = (ClipGuidance(clip, prompt, weight=clip_lambda, distance=distance, augmentation=augmentation,
                              negative_prompt=negative_prompt, typography=typography),)
        if check_weight(range_lambda, "range_lambda", "50") > 0:
            terms += (RangeLoss(range_lambda),)
        return io.NodeOutput(Guidance(terms))


class BlendedBackgroundLoss(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedBackgroundLoss",
            display_name="Blended Background Loss",
            category=CATEGORY,
            description="Adds D_bg (MSE + LPIPS outside the mask) for local CLIP-guided diffusion (Algorithm 1, "
            "sampler mode 'local'). Blended Diffusion (mode 'blended') does not need it.",
            inputs=[
                GuidanceSocket.Input("guidance", tooltip="Guidance to extend, e.g. from Blended CLIP Guidance."),
                LpipsSocket.Input("lpips", tooltip="LPIPS from the Blended LPIPS Loader."),
                io.Float.Input("lambda_lpips", default=1000.0, min=0.0, max=1e7, step=10.0,
                               tooltip="Weight of LPIPS between x̂0 and the input outside the mask (reference "
                               "code: 1000)."),
                io.Float.Input("lambda_l2", default=10000.0, min=0.0, max=1e7, step=100.0,
                               tooltip="Weight of the mean squared error outside the mask (reference code: 10000)."),
            ],
            outputs=[GuidanceSocket.Output("guidance_out", display_name="guidance")],
        )

    @classmethod
    def execute(cls, guidance, lpips, lambda_lpips, lambda_l2) -> io.NodeOutput:
        return io.NodeOutput(guidance.with_term(BackgroundLoss(lpips, lambda_lpips, lambda_l2)))
