"""A tiny random CLIP ViT in OpenAI's key layout.

It goes through the same loader as OpenAI's ViT-B-16 (architecture read off the state dict), with
the real tokenizer and vocabulary, so tests exercise the real code path in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_clip_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    )
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def save_tiny_clip(path, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = tiny_clip_state_dict(seed)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return path
