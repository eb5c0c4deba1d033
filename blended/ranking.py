"""Ranking of samples (paper, Sec. 4.4), and what the paper's ranking cannot see.

Diffusion samples of one prompt differ a lot in quality, so the method draws many and keeps the
ones CLIP likes best. Ranking uses D_CLIP *without* augmentation: the augmentations serve the
gradient, and a random warp would only add noise to the score.

D_CLIP looks only inside the mask, so a sample that fits the prompt there but clashes with its
surroundings can still rank first. Two more criteria look across the border, each with its own
weight (0 = off, and with both off the order is the paper's):
- ``seam``: ``metrics.seam_score`` on the mask's border, how much the step from just inside to
  just outside exceeds the image's own variation there (copying the background earns nothing);
- ``scene``: D_CLIP of the *unmasked* view (the context box, or the whole image) against a scene
  prompt, so the edit has to make sense in its surroundings.
The total is the weighted sum (lower is better); ties keep the samples' order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .augment import resize_for_clip
from .errors import InputError, no_check
from .guidance import ClipGuidance, TextTargets, check_prompts
from .metrics import seam_score
from .prompts import combine, parse_prompts

CRITERIA = ("clip", "seam", "scene")
LABELS = {"clip": "D_CLIP", "seam": "seam", "scene": "scene"}


@dataclass(frozen=True)
class RankingWeights:
    """Weight of each criterion in the total; the paper's ranking is clip=1, the others 0."""

    clip: float = 1.0
    seam: float = 0.0
    scene: float = 0.0

    def __post_init__(self):
        names = {"clip": "clip_weight", "seam": "seam_weight", "scene": "scene_weight"}
        for key, name in names.items():
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} is {value}: use a finite number of 0 or more (0 turns the criterion off).")
        if not any(getattr(self, k) for k in names):
            raise InputError(
                "clip_weight, seam_weight and scene_weight are all 0: nothing to rank by. "
                "Set clip_weight to 1 for the paper's ranking."
            )


@dataclass
class RankTable:
    """Every criterion per sample, in the samples' order, and the order best first."""

    order: torch.Tensor  # LongTensor [N], best first
    total: torch.Tensor  # [N] weighted sum, lower is better
    criteria: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N]
    weights: RankingWeights = RankingWeights()

    def format(self, top_k: int | None = None) -> str:
        """A line per kept sample with every criterion; the total (what the order is by) comes last."""
        used = [f"{getattr(self.weights, k):g} x {LABELS[k]}" for k in CRITERIA if getattr(self.weights, k)]
        lines = [f"ranked {self.total.shape[0]} samples by {' + '.join(used)} (lower is better):"]
        for r, i in enumerate(self.order[:top_k].tolist()):
            cells = "  ".join(f"{LABELS[k]} {float(v[i]):.4f}" for k, v in self.criteria.items())
            lines.append(f"#{r + 1}: sample {i}  {cells}  total {float(self.total[i]):.4f}")
        return "\n".join(lines)


class SceneScore:
    """D_CLIP of the unmasked view against a scene prompt (weighted syntax of ``blended.prompts``)."""

    def __init__(self, clip_guidance: ClipGuidance, scene_prompt: str):
        self.clip = clip_guidance.clip
        entries = check_prompts(self.clip, parse_prompts(scene_prompt, "scene_prompt"), "scene_prompt")
        self.targets = TextTargets(self.clip, combine(entries, [], "scene_prompt"), clip_guidance.distance)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        views = resize_for_clip(images.add(1).div(2), self.clip.image_size)
        return self.targets(self.clip.encode_image(views))


def _chunked(fn, n: int, chunk: int, check=no_check) -> torch.Tensor:
    """``fn`` over slices of ``chunk`` samples; ``check`` (a caller's Cancel) runs before each."""
    parts = []
    for i in range(0, n, chunk):
        check()
        parts.append(fn(slice(i, i + chunk)))
    return torch.cat(parts)


@torch.no_grad()
def score_samples(
    images: torch.Tensor,
    mask: torch.Tensor,
    clip_guidance: ClipGuidance,
    weights: RankingWeights = RankingWeights(),
    scene_prompt: str = "",
    scene_images: torch.Tensor | None = None,
    band_px: int = 2,
    chunk: int = 16,
    check=no_check,
) -> RankTable:
    """Scores of samples [N,3,H,W] in [-1,1] with mask [N|1,1,H,W].

    ``scene_images`` are the views the scene prompt judges (default: ``images`` unmasked, i.e. the
    box the caller cropped); the scene criterion is computed whenever a scene prompt is given.
    """
    if clip_guidance is None:
        raise InputError("ranking needs CLIP guidance: connect the CLIP guidance loss node.")
    n = images.shape[0]
    if n == 0:
        raise InputError("no images to rank.")
    if mask.shape[0] == 1:
        mask = mask.expand(n, *mask.shape[1:])
    criteria = {"clip": _chunked(lambda s: clip_guidance.score(images[s], mask[s]), n, chunk, check)}
    criteria["seam"] = seam_score(images.add(1).div(2), mask, band_px)
    if (scene_prompt or "").strip():
        scene = SceneScore(clip_guidance, scene_prompt)
        views = images if scene_images is None else scene_images
        if views.shape[0] != n:
            raise InputError(f"scene images: {views.shape[0]} views for {n} samples.")
        criteria["scene"] = _chunked(lambda s: scene(views[s]), n, chunk, check)
    elif weights.scene:
        raise InputError(
            f"scene_weight is {weights.scene:g} but scene_prompt is empty: describe the whole picture "
            "(e.g. 'a kitchen table with a bowl of cherries'), or set scene_weight to 0."
        )
    total = None
    for name in CRITERIA:  # a criterion of weight 0 is not added at all: 0 * inf would be nan
        w = getattr(weights, name)
        if w:
            term = criteria[name] if w == 1.0 else w * criteria[name]
            total = term if total is None else total + term
    order = torch.argsort(total, stable=True)
    return RankTable(order, total, criteria, weights)


def rank(
    images: torch.Tensor,
    mask: torch.Tensor,
    clip_guidance: ClipGuidance,
    chunk: int = 16,
    weights: RankingWeights = RankingWeights(),
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, scores): indices best first (lowest total), and the totals in that order."""
    table = score_samples(images, mask, clip_guidance, weights, chunk=chunk, **kwargs)
    return table.order, table.total[table.order]
