"""Blended Latent Diffusion's per-step blending (Avrahami, Fried, Lischinski, SIGGRAPH 2023).

At every step the sample keeps its own content inside the mask, and outside it is replaced by the
source latent noised to *the same level as the sample* (the reference scripts noise it to the
previous, noisier level, which leaves a faint noise seam). The level comes from the model's own
noise scaling (``noise_scaling(sigma, noise, latent)`` of ComfyUI's ``model_sampling``: ``x0 + σ·n``
for eps and v-prediction models, ``(1-σ)·x0 + σ·n`` for flow models), so the same code blends every
model family at the right level. The sampler state is in the model's latent space (after
``process_latent_in``); the caller supplies that source.

Thin masks vanish when a pixel mask is averaged down to latent cells, so the latent mask *covers*
every cell a mask pixel touches (max-pooling), and it starts dilated and shrinks to that cover over
the first part of sampling (progressive mask shrinking): early, coarse steps shape a slightly
larger area, later steps respect the exact one.

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import masks
from ..errors import InputError
from .crop_stitch import latent_pixel_mask

NoiseScaling = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cover_mask(pixel_mask: torch.Tensor, factor: int, grow_px: int = 0) -> torch.Tensor:
    """[B,1,H,W] pixel mask -> [B,1,ceil(H/f),ceil(W/f)] binary latent mask that is 1 in every cell
    containing at least one mask pixel (a 1-px stroke keeps its cells), after growing the mask by
    ``grow_px`` pixels (square neighbourhood). A video mask [B,1,T,H,W] (one pixel mask per latent
    frame) is covered frame by frame.

    A cell is covered when its pixels, widened by ``grow_px`` on each side, meet the mask: one strided
    max per axis over the pixel mask gives the same cells as dilating at full resolution and pooling,
    about 10x faster at 1024 px, where it is a fixed cost of every run."""
    return _cover_binary(masks.binarize(pixel_mask, 0.0), factor, grow_px)


def _cover_binary(hard: torch.Tensor, factor: int, grow_px: int) -> torch.Tensor:
    """``cover_mask`` of a mask already 0/1 (binarizing a 1024 px mask costs more than covering it)."""
    if factor < 1:
        raise InputError(f"latent downscale factor must be >= 1; got {factor}.")
    r = max(int(grow_px), 0)
    k = factor + 2 * r

    def pool(m):
        m = F.max_pool2d(m, kernel_size=(1, k), stride=(1, factor), padding=(0, r), ceil_mode=True)
        return F.max_pool2d(m, kernel_size=(k, 1), stride=(factor, 1), padding=(r, 0), ceil_mode=True)

    return _per_frame(hard, pool)


def _per_frame(mask: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` on [N,1,H,W]; a [B,1,T,H,W] mask goes through it as B*T frames and comes back 5-D."""
    if mask.dim() != 5:
        return fn(mask)
    b, c, t = mask.shape[:3]
    out = fn(mask.permute(0, 2, 1, 3, 4).reshape(b * t, c, *mask.shape[-2:]))
    return out.reshape(b, t, c, *out.shape[-2:]).permute(0, 2, 1, 3, 4)


def shrink_radii(steps: int, start_px: int, fraction: float) -> list[int]:
    """Dilation radius in pixels for each of ``steps`` steps: ``start_px`` at the first step,
    falling linearly to 0 at ``fraction`` of the steps, 0 after that."""
    if steps < 1:
        return []
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"shrink_fraction must be between 0 and 1; got {fraction}.")
    if start_px < 0:
        raise InputError(f"shrink_px must be >= 0; got {start_px}.")
    span = round(fraction * steps)
    if start_px == 0 or span == 0:
        return [0] * steps
    return [round(start_px * (1 - i / span)) if i < span else 0 for i in range(steps)]


def step_masks(pixel_mask: torch.Tensor, factor: int, steps: int, shrink_px: int = 0, shrink_fraction: float = 0.0):
    """Latent mask for every step: the pixel mask dilated by that step's radius, then covered (a
    video mask [B,1,T,H,W] is dilated within each frame: shrinking is spatial, never across time).

    The mask is binarized once; masks are computed once per distinct radius and shared between steps.
    """
    hard = masks.binarize(pixel_mask, 0.0)
    by_radius: dict[int, torch.Tensor] = {}
    out = []
    for r in shrink_radii(steps, shrink_px, shrink_fraction):
        if r not in by_radius:
            by_radius[r] = _cover_binary(hard, factor, r)
        out.append(by_radius[r])
    return out


def latent_step_masks(pixel_mask: torch.Tensor, latent_shape, steps: int, shrink_px: int = 0,
                      shrink_fraction: float = 0.0, factor: int | None = None,
                      frames_per_latent: int | None = None) -> list[torch.Tensor]:
    """The masks of one sampling run, from the user's pixel mask: one latent mask per step.

    ``pixel_mask`` [B|1,1,H,W] (1 = edit) is drawn on the image the latent ``latent_shape`` was
    encoded from (``latent_pixel_mask`` checks the size against the latent and the model's
    ``factor`` and folds a video mask's frames per latent frame, ``frames_per_latent`` where the
    model's VAE is known); then ``step_masks``: a mask
    [B|1,1,h,w] per step ([1,1,T,h,w] for a video latent), dilated by ``shrink_px`` at the first
    step and shrinking to the cover of the precise mask over ``shrink_fraction`` of the steps.

    The one place a run's masks are made, for both ways into the blended sampler: the Blended Latent
    Sampler node (before sampling, for all its latents at once) and the SAMPLER for core
    SamplerCustom (once the guider hands it the latent and the sigmas)."""
    mask, f = latent_pixel_mask(pixel_mask, latent_shape, latent_shape[0], factor, frames_per_latent)
    return step_masks(mask, f, steps, shrink_px, shrink_fraction)


def step_index(sigmas: torch.Tensor, sigma: float) -> int:
    """Which step's mask applies at noise level ``sigma``: the last schedule entry at or above it.

    Samplers evaluate the model at the schedule's levels and, for second-order or ancestral
    steps, at levels in between; a level between two entries uses the earlier (larger) mask.
    """
    levels = sigmas[:-1].double().cpu()
    above = int((levels >= float(sigma) * (1 - 1e-5) - 1e-12).sum().item())
    return min(max(above - 1, 0), len(levels) - 1)


def noise_for_seeds(shape: Sequence[int], seeds: Sequence[int], dtype=torch.float32) -> torch.Tensor:
    """One noise tensor per seed, each drawn on the CPU from its own generator: sample ``i`` is the
    same whatever else is in the batch, on any device."""
    return stream_noise_for_seeds([shape], seeds, dtype)[0]


def stream_noise_for_seeds(shapes: Sequence[Sequence[int]], seeds: Sequence[int], dtype=torch.float32):
    """``noise_for_seeds`` for a latent of several streams (video, then audio: ComfyUI 0.33's LTX-2 and
    MiniMax H3 latents): per seed one generator draws every stream in turn, as core ``prepare_noise``
    does, so the audio's noise is not the video's first numbers again. One stream: ``noise_for_seeds``."""
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    per_seed = [[torch.randn((1, *shape), generator=g, dtype=dtype) for shape in shapes] for g in gens]
    return [torch.cat([streams[i] for streams in per_seed]) for i in range(len(shapes))]


def pack_stream_masks(mask: torch.Tensor, shapes: Sequence[Sequence[int]], edit_others: bool = False) -> torch.Tensor:
    """A video latent mask [B|1,1,T,h,w] -> the mask of ComfyUI's packed multi-stream latent [B|1,1,N].

    ComfyUI 0.33 samples a NestedTensor latent (LTX-2: video + audio; MiniMax H3: video + audio) as
    one flat pack: each stream ``shapes[i]`` flattened per batch row ([B,1,C*T*h*w]) and the streams
    concatenated (``comfy.utils.pack_latents``). The mask edits the picture: the video part is the
    mask over every channel; the other streams are 0 (outside: kept as the source at every call) or,
    with ``edit_others``, 1 (regenerated)."""
    if tuple(mask.shape[2:]) != tuple(shapes[0][2:]):
        raise InputError(f"the mask covers a video latent of {tuple(mask.shape[2:])} (frames, height, width) but the "
                         f"packed latent's video stream is {tuple(shapes[0])}: make the mask for the video stream.")
    b = mask.shape[0]
    video = mask.expand(b, int(shapes[0][1]), *mask.shape[2:]).reshape(b, 1, -1)
    fill = 1.0 if edit_others else 0.0
    rest = [torch.full((b, 1, math.prod(s[1:])), fill, dtype=mask.dtype, device=mask.device) for s in shapes[1:]]
    return torch.cat([video, *rest], dim=-1)


class LatentBlend:
    """The blending of one sampling run.

    ``source`` [B|1,C,h,w] and ``noise`` [B,C,h,w] in the model's latent space; ``masks`` one
    [B|1,1,h,w] latent mask (1 = edit) per step of ``sigmas``; ``noise_scaling(sigma, noise,
    latent)`` the model's own forward noising.
    """

    def __init__(self, source, noise, step_mask_list, sigmas, noise_scaling: NoiseScaling):
        if len(step_mask_list) != len(sigmas) - 1:
            raise InputError(f"need one mask per step: {len(step_mask_list)} masks for {len(sigmas) - 1} steps.")
        self.source = source
        self.noise = noise
        self.masks = step_mask_list
        self.sigmas = sigmas.detach().float().cpu()
        self.noise_scaling = noise_scaling
        self._last = (None, None)  # (sigma, mask): each model call looks its mask up twice, in and out

    def mask_at(self, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        s = float(sigma.reshape(-1)[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        if self._last[0] != s:
            self._last = (s, self.masks[step_index(self.sigmas, s)])
        m = self._last[1]
        return m if m.device == like.device else m.to(device=like.device)

    def background(self, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The source noised to level ``sigma`` with this run's noise."""
        src = self.source.to(device=like.device, dtype=like.dtype).expand_as(like)
        noise = self.noise.to(device=like.device, dtype=like.dtype)
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(device=like.device, dtype=like.dtype)
            if sigma.numel() == 1:
                sigma = sigma.reshape(1).expand(like.shape[0])
        return self.noise_scaling(sigma, noise, src)

    def blend_input(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The sample at level ``sigma`` with its background replaced: what the model denoises."""
        m = self.mask_at(sigma, x)
        return torch.where(m > 0, x, self.background(sigma, x))

    def blend_denoised(self, denoised: torch.Tensor, sigma) -> torch.Tensor:
        """The model's clean estimate with the clean source outside the mask, so the sampler's step
        moves the background along the source's own noising path."""
        m = self.mask_at(sigma, denoised)
        source = self.source.to(device=denoised.device, dtype=denoised.dtype)
        return torch.where(m > 0, denoised, source.expand_as(denoised))

    def finish(self, samples: torch.Tensor, final_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The end of the run: outside the precise (last step's) mask the source itself, bit for bit,
        or, when the schedule stops above level 0, the source noised to the last level."""
        m = (self.masks[-1] if final_mask is None else final_mask).to(samples.device)
        last = self.sigmas[-1]
        bg = (self.source.to(device=samples.device, dtype=samples.dtype).expand_as(samples) if float(last) == 0
              else self.background(last, samples))
        return torch.where(m > 0, samples, bg)
