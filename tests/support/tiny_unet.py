"""A tiny random ADM UNet in OpenAI's real key layout.

It keeps every feature the released 256x256 model uses (residual up/down-sampling, attention,
scale-shift norm, learned sigma) at 32x32 with about a million parameters, so tests run the
real code path on CPU in milliseconds. ``class_cond=True`` mirrors the 512x512 model instead:
1000 classes and a 0.5 channel multiplier on the first level.
"""

from __future__ import annotations

from pathlib import Path

import torch

from blended.pixel.checkpoint import CONFIG_METADATA_KEY
from blended.pixel.unet import UNetConfig, UNetModel


def tiny_unet_config(class_cond: bool = False) -> UNetConfig:
    # Channels are multiples of 32 (GroupNorm's group count); heads are 64 wide like the real
    # models, so config_from_state_dict reads the same config back from a saved file.
    return UNetConfig(
        image_size=32,
        in_channels=3,
        model_channels=64 if class_cond else 32,
        out_channels=6,
        num_res_blocks=1,
        attention_ds=(4,),
        channel_mult=(0.5, 1, 1) if class_cond else (1, 1, 2),
        num_classes=1000 if class_cond else None,
        num_head_channels=64,
        use_scale_shift_norm=True,
        resblock_updown=True,
    )


def tiny_unet_state_dict(seed: int = 0, class_cond: bool = False) -> dict[str, torch.Tensor]:
    """Random weights; OpenAI zero-inits every block's last conv, so those get random values too
    (otherwise the model would be nearly the identity on its skip paths and output zeros)."""
    torch.manual_seed(seed)
    model = UNetModel(tiny_unet_config(class_cond))
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    for key, value in sd.items():
        if ".out_layers.3." in key or ".proj_out." in key or key.startswith("out.2."):
            scale = value[0].numel() ** -0.5 if value.ndim > 1 else 0.02  # weights: fan-in init
            sd[key] = torch.randn(value.shape, generator=gen) * scale
    return sd


def save_tiny_unet(path, seed: int = 0, fmt: str | None = None, class_cond: bool = False,
                   with_config: bool = False) -> Path:
    """Write the tiny UNet as ``.pt`` or ``.safetensors`` (from ``fmt`` or the path's suffix).

    ``with_config`` adds the JSON config to the safetensors metadata, as a converter would.
    """
    path = Path(path)
    fmt = fmt or ("safetensors" if path.suffix == ".safetensors" else "pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = tiny_unet_state_dict(seed, class_cond)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        metadata = {CONFIG_METADATA_KEY: tiny_unet_config(class_cond).to_json()} if with_config else None
        save_file(sd, str(path), metadata=metadata)
    elif fmt == "pt":
        torch.save(sd, str(path))
    else:
        raise ValueError(f"fmt must be 'pt' or 'safetensors', not {fmt!r}")
    return path
