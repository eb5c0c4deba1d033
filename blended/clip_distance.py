"""The distance between CLIP embeddings that D_CLIP, the typography guard and the ranking share.

A module of its own because guidance uses the typography guard and the guard uses the distance:
with the distance here, neither imports the other's module back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError

DISTANCES = ("spherical", "cosine")


def check_distance(kind: str) -> str:
    """The distance's name, refused early (before any CLIP work) when it is not one we compute."""
    if kind not in DISTANCES:
        raise InputError(f"distance '{kind}': choose one of {', '.join(DISTANCES)}.")
    return kind


def clip_distance(image_embeds: torch.Tensor, text_embeds: torch.Tensor, kind: str = "spherical") -> torch.Tensor:
    """Distance between L2-normalised embeddings; spherical is the great-circle distance squared (x2)."""
    a, b = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    if kind == "spherical":
        return 2 * torch.arcsin((a - b).norm(dim=-1).div(2).clamp(max=1)) ** 2
    if kind == "cosine":
        return 1 - (a * b).sum(-1)
    check_distance(kind)
    raise AssertionError(kind)  # unreachable: check_distance raised
