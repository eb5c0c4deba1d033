"""A tiny random Wan 2.1 text-to-video model built with ComfyUI's own classes, and a 9-frame clip's
latent and conditioning of its real structure: the video case of the latent-path tests."""

from __future__ import annotations

import torch

from tests.support.sd15_fixture import comfy_engine_path

FRAMES, SIZE, LATENT_FRAMES = 9, 64, 3  # Wan: T = 1 + (F-1)//4
WAN_TINY = {"image_model": "wan2.1", "model_type": "t2v", "patch_size": (1, 2, 2), "in_dim": 16, "dim": 32,
            "ffn_dim": 64, "freq_dim": 32, "text_dim": 16, "out_dim": 16, "num_heads": 2, "num_layers": 1,
            "eps": 1e-6, "text_len": 8}


def wan_model():
    """WAN21_T2V at a tiny width as a ModelPatcher on the CPU, weights ~ N(0, 0.2) from seed 0."""
    comfy_engine_path()
    import comfy.model_patcher
    import comfy.supported_models

    torch.manual_seed(0)
    config = comfy.supported_models.WAN21_T2V(dict(WAN_TINY))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    for p in model.diffusion_model.parameters():  # ComfyUI's ops skip init: give the weights values
        torch.nn.init.normal_(p, std=0.2)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def conditioning(seed):
    return [[torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(seed)), {}]]


def video_latent():
    return torch.randn(1, 16, LATENT_FRAMES, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
