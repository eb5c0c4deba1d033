"""The node list ComfyUI gets from ``comfy_entrypoint``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import comfy_glue
from .examples import install_example_inputs
from .evaluate_node import EvaluateResults
from .latent_nodes import (
    BackgroundReconstructionNode, LatentCropNode, LatentSamplerNode, LatentSamplerObjectNode, LatentStitchNode,
)
from .guidance_nodes import BackgroundLossNode, ClipGuidanceNode, ExtendingAugmentationNode
from .loaders import ClipLoader, DiffusionModelLoader, LpipsLoader
from .ranking_node import RankResults
from .sampler_node import BlendedSampler

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
        install_example_inputs(comfy_glue.input_directory())
        return list(NODES)
