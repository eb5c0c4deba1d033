"""Where an edit must happen, found by the model itself (DiffEdit; Couairon et al., ICLR 2023).

The model is asked twice about the same noisy source: once under the target text, once under a
reference text (what the region shows now, or for an instruction editor the same references with an
empty instruction). Where the two denoisings agree the text does not matter and the picture must stay;
where they differ is the region the target wants changed. DiffEdit averages the absolute difference
of the two predictions over several noise draws at a middle noise level (the paper and diffusers'
``StableDiffusionDiffEditPipeline.generate_mask``: 10 draws at strength 0.5), averages it over the
latent channels, clips it at ``clamp_ratio`` (3) times its mean, scales that to 0..1 and thresholds
it (0.5).

Differences of the clean estimates are used, not of the noise predictions: at one noise level the
two differ by a constant factor per family (eps: ``-1/σ``; flow velocity: ``-1``), which the
normalisation divides out, and every family ComfyUI runs returns a clean estimate.

Pure torch: the model calls come in as a function (``predict``), so ComfyUI's sampling stack stays
the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .. import masks
from ..errors import InputError, no_check
from ..seeds import cpu_generator

# predict(noisy latent) -> (clean estimate under the target, clean estimate under the reference)
Predict = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
NoiseScaling = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AutoMaskSettings:
    """DiffEdit's knobs, checked when made. ``strength``: the noise level as a fraction of the
    model's own schedule (0 = clean, 1 = pure noise; 0.5 is DiffEdit's). ``draws``: noise draws
    averaged (each costs one model call of target and reference). ``threshold``: the cut on the
    normalised map. ``clamp_ratio``: the map is clipped at this many times its mean before scaling
    to 0..1 (DiffEdit's 3: a few extreme cells do not squash the rest). ``grow_px``: the found mask
    grown by this many pixels."""

    draws: int = 10
    strength: float = 0.5
    threshold: float = 0.5
    clamp_ratio: float = 3.0
    grow_px: int = 0

    def __post_init__(self):
        if not 1 <= int(self.draws) <= 64:
            raise InputError(f"draws is {self.draws}: use 1 to 64 noise draws (DiffEdit uses 10).")
        if not 0.0 < float(self.strength) < 1.0:
            raise InputError(f"strength is {self.strength}: use a noise level between 0 and 1 (0.5 is DiffEdit's).")
        if not 0.0 < float(self.threshold) < 1.0:
            raise InputError(f"threshold is {self.threshold}: use a value between 0 and 1 (0.5 is DiffEdit's).")
        if not float(self.clamp_ratio) >= 1.0:
            raise InputError(f"clamp_ratio is {self.clamp_ratio}: use 1 or more (3 is DiffEdit's).")
        if not 0 <= int(self.grow_px) <= 512:
            raise InputError(f"grow_px is {self.grow_px}: use 0 to 512 pixels.")


def draw_noise(shape, seed: int, draw: int) -> torch.Tensor:
    """Draw ``draw``'s noise for one latent [1,...]: from its own CPU generator (seed + draw), so the
    mask is the same on any device and whatever the batch."""
    return torch.randn((1, *shape[1:]), generator=cpu_generator(int(seed) + int(draw)))


def difference_map(latent: torch.Tensor, sigma: float, noise_scaling: NoiseScaling, predict: Predict,
                   draws: int, seed: int, check: Callable[[], None] = no_check) -> torch.Tensor:
    """The mean |target - reference| prediction per latent cell: ``latent`` [B,C,h,w] or [B,C,T,h,w]
    in the model's space -> [B,h,w] or [B,T,h,w], averaged over ``draws`` noise draws and the channels.
    ``check`` (the caller's Cancel) runs before every model call."""
    total = None
    for d in range(int(draws)):
        check()
        noise = draw_noise(latent.shape, seed, d).to(device=latent.device, dtype=latent.dtype)
        sig = torch.full((latent.shape[0],), float(sigma), device=latent.device, dtype=latent.dtype)
        target, reference = predict(noise_scaling(sig, noise.expand_as(latent), latent))
        diff = (target.float() - reference.float()).abs().mean(1)
        total = diff if total is None else total + diff
    return total / int(draws)


def normalise(diff: torch.Tensor, clamp_ratio: float) -> torch.Tensor:
    """Each image's map clipped at ``clamp_ratio`` x its own mean and scaled to 0..1 (DiffEdit's
    normalisation, per image rather than per batch, so an image's mask does not depend on its
    neighbours). A map that is zero everywhere (target = reference) stays zero."""
    flat = diff.flatten(1)
    top = flat.mean(1).mul(float(clamp_ratio)).view(-1, *([1] * (diff.dim() - 1)))
    return torch.where(top > 0, diff.clamp(min=0).minimum(top) / top.clamp(min=torch.finfo(diff.dtype).tiny),
                       torch.zeros_like(diff))


def cells_to_pixels(cells: torch.Tensor, factor: int, frames_per_cell: int = 1) -> torch.Tensor:
    """A latent-cell map [B,h,w] -> [B,h*f,w*f] (each cell's value on its f x f pixels); a video map
    [1,T,h,w] -> one pixel map per frame of the clip the latent decodes to, [1 + k(T-1), h*f, w*f]
    (causal video VAEs: latent frame 0 is frame 0, latent frame t >= 1 holds frames k(t-1)+1 .. kt)."""
    if cells.dim() == 4:
        if cells.shape[0] != 1:
            raise InputError(f"latent has a batch of {cells.shape[0]} videos: find the mask of one video at a time.")
        t = cells[0]
        k = int(frames_per_cell)
        frames = torch.cat([t[:1], t[1:].repeat_interleave(k, dim=0)]) if t.shape[0] > 1 else t
        cells = frames
    f = int(factor)
    return F.interpolate(cells[:, None].float(), scale_factor=f, mode="nearest")[:, 0]


def threshold_mask(soft: torch.Tensor, threshold: float, grow_px: int) -> torch.Tensor:
    """The soft map [N,H,W] in 0..1 -> the binary mask (above ``threshold``), grown by ``grow_px``."""
    hard = (soft > float(threshold)).float()[:, None]
    return (masks.dilate(hard, int(grow_px)) if grow_px > 0 else hard)[:, 0]


def auto_mask(latent: torch.Tensor, sigma: float, noise_scaling: NoiseScaling, predict: Predict,
              settings: AutoMaskSettings, seed: int, factor: int, frames_per_cell: int = 1,
              check: Callable[[], None] = no_check) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffEdit's mask of ``latent`` at pixel size: (binary mask [N,H,W], soft map [N,H,W] in 0..1),
    N the batch (one per image) or a video's frames. Costs ``settings.draws`` calls of ``predict``."""
    diff = difference_map(latent, sigma, noise_scaling, predict, settings.draws, seed, check)
    if diff.dim() == 4 and diff.shape[1] == 1:
        diff = diff[:, 0]  # an image on a video format (Wan, Qwen-Image): one frame, one mask per image
    soft = cells_to_pixels(normalise(diff, settings.clamp_ratio), factor, frames_per_cell)
    return threshold_mask(soft, settings.threshold, settings.grow_px), soft


def coverage_text(mask: torch.Tensor, settings: AutoMaskSettings, sigma: float) -> str:
    """The report: how much of each image the found mask covers, and a plain warning where it is empty
    (the blended sampler then returns the source) or covers everything (nothing is kept)."""
    lines = [f"auto mask (DiffEdit): {settings.draws} draws at strength {settings.strength:g} (sigma {sigma:.4g}), "
             f"threshold {settings.threshold:g}, clamp {settings.clamp_ratio:g}x mean, grown {settings.grow_px} px; "
             f"{settings.draws} model calls, each predicting target and reference ({2 * settings.draws} predictions)"]
    for i, m in enumerate(mask):
        share = float(m.float().mean())
        note = ("  EMPTY: target and reference agree everywhere; lower threshold or change the texts"
                if share == 0 else "  FULL: the whole image differs; raise threshold" if share == 1 else "")
        lines.append(f"#{i}: covers {100 * share:.1f}% of the image{note}")
    return "\n".join(lines)
