"""The node list ComfyUI gets from ``comfy_entrypoint``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import comfy_glue
from .auto_mask import BlendedAutoMask
from .confine_node import BlendedConfineEdit
from .evaluate_node import BlendedEvaluate
from .examples import install_example_inputs
from .guidance_nodes import BlendedBackgroundLoss, BlendedCLIPGuidance, BlendedExtendingAugmentation
from .latent_nodes import (
    BlendedBackgroundReconstruction,
    BlendedLatentCrop,
    BlendedLatentSampler,
    BlendedLatentSamplerObject,
    BlendedLatentStitch,
)
from .loaders import BlendedCLIPLoader, BlendedDiffusionModelLoader, BlendedLPIPSLoader
from .ranking_node import BlendedRankResults
from .reward_nodes import BlendedRewardCriterion, BlendedRewardModelLoader
from .sampler_node import BlendedSampler

NODES = [
    BlendedDiffusionModelLoader,
    BlendedCLIPLoader,
    BlendedLPIPSLoader,
    BlendedExtendingAugmentation,
    BlendedCLIPGuidance,
    BlendedBackgroundLoss,
    BlendedSampler,
    BlendedRankResults,
    BlendedRewardModelLoader,
    BlendedRewardCriterion,
    BlendedEvaluate,
    # latent path (Blended Latent Diffusion on the user's own checkpoints)
    BlendedLatentCrop,
    BlendedLatentSampler,
    BlendedLatentSamplerObject,
    BlendedBackgroundReconstruction,
    BlendedLatentStitch,
    BlendedAutoMask,
    BlendedConfineEdit,
]


class BlendedDiffusionExtension(ComfyExtension):
    async def on_load(self) -> None:
        comfy_glue.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        comfy_glue.register_model_folders()  # ComfyUI 0.3.x does not call on_load
        install_example_inputs(comfy_glue.input_directory())
        return list(NODES)
