"""Random diffusion and CLIP models at the sizes benchmarks and the CUDA checks measure (ADM-256,
ViT-B/16), plus the tiny and small UNet configs: cost does not depend on the weights' values, so random
weights in the real architectures give the real time and memory."""

from __future__ import annotations

import torch

from blended.pixel.diffusion_model import DiffusionModel
from blended.pixel.unet import UNetConfig, UNetModel
from tests.support.tiny_clip import tiny_clip_state_dict

CONFIGS = {
    # name: UNetConfig fields (guided-diffusion layout); "small" is a 64 px ADM at reduced width.
    "tiny": dict(image_size=16, model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,)),
    "small": dict(image_size=64, model_channels=64, channel_mult=(1, 2, 2, 2), num_res_blocks=1, attention_ds=(4, 8)),
    "adm256": dict(
        image_size=256, model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention_ds=(8, 16, 32)
    ),
}


def make_model(name: str, device, **overrides) -> DiffusionModel:
    fields = dict(
        in_channels=3, out_channels=6, num_classes=None, num_head_channels=64, num_heads=-1,
        use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True,
    )
    fields.update(CONFIGS[name], **overrides)
    known = set(UNetConfig.__dataclass_fields__)
    config = UNetConfig(**{k: v for k, v in fields.items() if k in known})
    torch.manual_seed(0)
    unet = UNetModel(config)
    for p in unet.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    return DiffusionModel(unet, config).to(device)


def make_clip(device):
    from blended.clip_model import clip_from_state_dict

    return clip_from_state_dict(tiny_clip_state_dict(), name="tiny").to(device)


def full_size_clip(device):
    """ViT-B/16 with QuickGELU at its real size and random weights: the paper's CLIP costs the same
    whatever its weights, and open_clip builds it without a download."""
    import open_clip

    from blended.clip_model import ClipBundle

    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None, device=device).eval().requires_grad_(False)
    return ClipBundle(model, open_clip.get_tokenizer("ViT-B-16-quickgelu"), 224, name="ViT-B-16 (random)")


def scene(size, device):
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), device="cpu") * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return image.to(device), mask.to(device)
