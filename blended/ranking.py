"""Ranking of samples (paper, Sec. 4.4).

Diffusion samples of one prompt differ a lot in quality, so the method draws many and keeps the
ones CLIP likes best. Ranking uses D_CLIP *without* augmentation: the augmentations serve the
gradient, and a random warp would only add noise to the score.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .guidance import ClipGuidance


@torch.no_grad()
def rank(
    images: torch.Tensor, mask: torch.Tensor, clip_guidance: ClipGuidance, chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, scores): indices best first (lowest D_CLIP), and the scores in that order."""
    if clip_guidance is None:
        raise InputError("ranking needs CLIP guidance: connect the CLIP guidance loss node.")
    if images.shape[0] == 0:
        raise InputError("no images to rank.")
    if mask.shape[0] == 1:
        mask = mask.expand(images.shape[0], *mask.shape[1:])
    scores = torch.cat(
        [clip_guidance.score(images[i : i + chunk], mask[i : i + chunk]) for i in range(0, images.shape[0], chunk)]
    )
    order = torch.argsort(scores, stable=True)
    return order, scores[order]
