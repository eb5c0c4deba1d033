"""Tiny random reward models in the real architectures and key layouts, saved as files.

HPSv2: open_clip's own CLIP class with ViT-H-14's vision head width (80) and GELU, saved the way
HPSv2 saves it (``{"state_dict": ...}``). PickScore: transformers' CLIPModel (vision head dim 80,
text 64), as model.safetensors. Aesthetic: the authors' ``layers`` Sequential (768 -> 1024 -> 128
-> 64 -> 16 -> 1, here over a 32-d embedding) plus a tiny OpenAI-layout CLIP.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.tiny_clip import tiny_clip_state_dict

VOCAB = 49408  # the real tokenizer's vocabulary


def tiny_hps_model(seed: int = 0):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=1, width=160, head_width=80, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=VOCAB, width=64, heads=1, layers=1),
        quick_gelu=False,
    )
    return model.eval()


def save_tiny_hps(path, seed: int = 0):
    model = tiny_hps_model(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, str(path))
    return model, path


def tiny_pick_model(seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, max_position_embeddings=77, hidden_act="gelu",
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=0),
        vision_config=dict(hidden_size=160, intermediate_size=320, num_hidden_layers=1, num_attention_heads=2,
                           patch_size=8, image_size=32, hidden_act="gelu"),
        projection_dim=32,
    )
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # PickScore's trained value is about ln(100)
    return model


def save_tiny_pick(path, seed: int = 0):
    from safetensors.torch import save_file

    model = tiny_pick_model(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


class AuthorsMLP(torch.nn.Module):
    """improved-aesthetic-predictor's MLP, layer for layer (its forward returns self.layers(x))."""

    def __init__(self, input_size: int):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(input_size, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.layers(x)


def save_tiny_aesthetic(mlp_path, clip_path, seed: int = 0):
    torch.manual_seed(seed)
    mlp = AuthorsMLP(32).eval()
    for p in (Path(mlp_path), Path(clip_path)):
        p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(mlp.state_dict(), str(mlp_path))
    clip_sd = tiny_clip_state_dict(seed + 1)
    torch.save(clip_sd, str(clip_path))
    return mlp, clip_sd
