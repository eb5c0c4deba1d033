"""A randomly initialised SDXL-family single-file checkpoint that core's CheckpointLoaderSimple
loads with SDXL's own classes, for the SDXL template's engine test.

Core detects SDXL by the UNet's exact transformer depths ([0, 0, 2, 2, 10, 10] at width 320, 2.6 B
parameters, 10 GB in fp32 on a CPU), which cannot be shrunk. The smallest layout core accepts as an
SDXL model is Segmind Vega's ([0, 0, 1, 1, 2, 2], 0.75 B parameters): core's ``Segmind_Vega`` is a
subclass of ``SDXL`` that changes nothing but that match, so the model class (``model_base.SDXL``:
pooled output + size conditioning), the latent format, the EPS sampling, the CLIP-L + CLIP-G text
encoders (fixed configs, 0.8 B) and the SD VAE are SDXL's. Keys are in the layout of
``sd_xl_base_1.0.safetensors`` (``conditioner.embedders.0/1``, ``model.diffusion_model``,
``first_stage_model``); fp16, about 3.2 GB, streamed tensor by tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.sd15_fixture import SD_VAE, comfy_engine_path, write_random_checkpoint

# comfy.model_detection's Segmind_Vega config (without its dtype).
SDXL_VEGA_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 1, 1, 2, 2],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": -1, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}


def sdxl_shapes() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Checkpoint key -> (shape, dtype), from core's classes on the meta device, the text encoders
    renamed to the checkpoint layout by core's own saving conversion."""
    comfy_engine_path()
    import comfy.ops
    import comfy.sdxl_clip
    import comfy.supported_models as sm
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**SDXL_VEGA_UNET, device="meta", operations=comfy.ops.disable_weight_init)
        clip = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float32)
        vae = AutoencoderKL(ddconfig=SD_VAE, embed_dim=4)
    shapes = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae)):
        for k, v in module.state_dict().items():
            shapes[prefix + k] = (tuple(v.shape), v.dtype)
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet(unet.state_dict(), "")
    assert isinstance(config, sm.SDXL), f"core detects this UNet as {type(config).__name__}, not an SDXL model"
    for k, v in config.process_clip_state_dict_for_saving(clip.state_dict()).items():
        shapes[k] = (tuple(v.shape), v.dtype)
    return shapes


def write_random_sdxl(path: Path, seed: int = 0) -> Path:
    return write_random_checkpoint(path, sdxl_shapes(), seed)
