"""The node list ComfyUI gets from ``comfy_entrypoint``."""

from __future__ import annotations

import os

from comfy_api.latest import ComfyExtension, io

import blended

from . import comfy_glue
from .evaluate_node import EvaluateResults
from .latent_nodes import (
    BackgroundReconstructionNode, LatentCropNode, LatentSamplerNode, LatentSamplerObjectNode, LatentStitchNode,
)
from .guidance_nodes import BackgroundLossNode, ClipGuidanceNode, ExtendingAugmentationNode
from .loaders import ClipLoader, DiffusionModelLoader, LpipsLoader
from .ranking_node import RankResults
from .sampler_node import BlendedSampler

_PACK = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if os.path.dirname(os.path.dirname(os.path.realpath(blended.__file__))) != _PACK:
    raise ImportError(
        f"another package named 'blended' ({blended.__file__}) shadows this pack's library in {_PACK}; "
        "uninstall it or rename it."
    )

NODES = [
    DiffusionModelLoader,
    ClipLoader,
    LpipsLoader,
    ExtendingAugmentationNode,
    ClipGuidanceNode,
    BackgroundLossNode,
    BlendedSampler,
    RankResults,
    EvaluateResults,
    # latent path (Blended Latent Diffusion on the user's own checkpoints)
    LatentCropNode,
    LatentSamplerNode,
    LatentSamplerObjectNode,
    BackgroundReconstructionNode,
    LatentStitchNode,
]


class BlendedDiffusionExtension(ComfyExtension):
    async def on_load(self) -> None:
        comfy_glue.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        comfy_glue.register_model_folders()  # ComfyUI 0.3.x does not call on_load
        return list(NODES)
