"""Background reconstruction (Blended Latent Diffusion, Sec. 3.3 of the paper).

A VAE cannot reproduce a photo exactly, so decoding a blended latent changes the background a
little everywhere, and pasting the source back then leaves a visible seam where the decoder's
colours meet the real ones. The paper's fix: per image, fine-tune a copy of the decoder so that
its output matches the source outside the mask while staying close to the plain decode of the
edit inside it:

    L(θ) = mean_m (D_θ(z) − D(z))²  +  λ · mean_{1−m} (D_θ(z) − x)²

with Adam (the paper: about 75-100 iterations). The copy is private to the call; the caller's
decoder is never modified. Afterwards the exact source pixels are pasted outside the mask (with an
optional inward feather), so the promise "outside the mask nothing changes" holds bit for bit and
the optimisation only has to make the seam invisible.

Pure torch: ``decoder`` is any module mapping a latent to an image in [-1, 1].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch

from . import masks
from .errors import InputError, no_check


@dataclass(frozen=True)
class ReconstructSettings:
    iterations: int = 75
    learning_rate: float = 1e-4
    background_weight: float = 100.0  # λ of the paper's loss
    feather: int = 0  # px, inward: pixels outside the mask stay exact

    def __post_init__(self):  # checked once, when made: settings that exist are valid
        if self.iterations < 0:
            raise InputError(f"iterations must be >= 0; got {self.iterations}.")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be > 0; got {self.learning_rate}.")
        if self.background_weight < 0:
            raise InputError(f"background_weight must be >= 0; got {self.background_weight}.")
        if self.feather < 0:
            raise InputError(f"mask_feather must be >= 0; got {self.feather}.")


def report_text(all_stats: list[dict]) -> str:
    lines = [report_line(i, stats) for i, stats in enumerate(all_stats)]
    return "\n".join(["background reconstruction (differences in 0..1 pixel units):"] + lines)


def report_line(index: int, stats: dict) -> str:
    return (f"image {index}: outside the mask max |diff| {stats['max_outside']:.6g} (0 = exact); feather band max "
            f"|diff| {stats['max_band']:.4f}; decoder RMS error outside the mask {stats['plain_outside']:.4f} plain -> "
            f"{stats['tuned_outside']:.4f} tuned; inside RMS change {stats['inside_change']:.4f}")


def private_decoder(decoder: torch.nn.Module, device, dtype=torch.float32) -> torch.nn.Module:
    """A trainable copy of ``decoder`` on ``device``; the original's weights are never touched."""
    with torch.inference_mode(False):
        twin = copy.deepcopy(decoder)
        for p in twin.parameters():
            p.data = p.data.detach().clone()
        twin = twin.to(device=device, dtype=dtype).train(False)
        twin.requires_grad_(True)
    return twin


def reconstruct(
    decoder: torch.nn.Module,
    latent: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    settings: ReconstructSettings = ReconstructSettings(),
    inside: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One image: ``latent`` [1,C,h,w], ``source`` [1,3,H,W] in [-1,1], ``mask`` [1,1,H,W] (1 = edit).

    ``decoder`` must already be a private copy (``private_decoder``); it is trained in place.
    ``inside``: the edit to keep inside the mask ([1,3,H,W] in [-1,1]); default the plain decode.
    Returns the tuned decode [1,3,H,W] in [-1,1] (not yet pasted) and its figures in 0..1 units:
    ``plain_outside`` / ``tuned_outside`` the RMS difference from the source outside the mask before
    and after tuning, ``inside_change`` the RMS difference from the edit to keep inside the mask.
    """
    params = [p for p in decoder.parameters() if p.requires_grad]
    device = params[0].device if params else latent.device
    dtype = params[0].dtype if params else torch.float32
    with torch.inference_mode(False), torch.enable_grad():
        z = latent.detach().clone().to(device=device, dtype=dtype)
        x = source.detach().clone().to(device=device, dtype=torch.float32)
        hard = masks.binarize(mask.detach().clone().to(device=device, dtype=torch.float32), 0.5)
        with torch.no_grad():
            plain = decoder(z).float()
        if tuple(plain.shape[-2:]) != tuple(x.shape[-2:]):
            raise InputError(
                f"the latent decodes to {plain.shape[-1]}x{plain.shape[-2]} px but the source image is "
                f"{x.shape[-1]}x{x.shape[-2]}: give the source (and mask) at the size the latent was encoded from "
                "(the Blended Latent Crop outputs)."
            )
        keep = inside.detach().clone().to(device=device, dtype=torch.float32) if inside is not None else plain
        outside = 1 - hard
        n_in, n_out = hard.sum().clamp(min=1) * 3, outside.sum().clamp(min=1) * 3
        opt = torch.optim.Adam(params, lr=settings.learning_rate)
        for i in range(settings.iterations):
            opt.zero_grad(set_to_none=True)
            y = decoder(z).float()
            loss = ((y - keep) ** 2 * hard).sum() / n_in
            loss = loss + settings.background_weight * ((y - x) ** 2 * outside).sum() / n_out
            loss.backward()
            opt.step()
            if callback is not None:
                callback(i + 1, settings.iterations)
        with torch.no_grad():
            tuned = decoder(z).float().clamp(-1, 1)
            stats = {
                "plain_outside": float((((plain.clamp(-1, 1) - x) / 2) ** 2 * outside).sum().div(n_out).sqrt()),
                "tuned_outside": float((((tuned - x) / 2) ** 2 * outside).sum().div(n_out).sqrt()),
                "inside_change": float((((tuned - keep.clamp(-1, 1)) / 2) ** 2 * hard).sum().div(n_in).sqrt()),
            }
    return tuned.detach(), stats


def paste_exact(edited: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, feather: int = 0):
    """``edited`` over ``source`` (same value range, [B,C,H,W]) inside the (inward-feathered) mask;
    outside it the very values of ``source``. Returns (image, weights, max |diff| outside the mask,
    max |diff| in the feather band), the maxima per image."""
    hard = masks.binarize(mask.to(source.dtype), 0.5)
    w = masks.feather(hard, feather) if feather > 0 else hard
    out = torch.where(w > 0, edited.to(source.dtype) * w + source * (1 - w), source)
    diff = (out - source).abs().amax(dim=1, keepdim=True)
    zero = torch.zeros_like(diff)
    max_outside = torch.where(w == 0, diff, zero).flatten(1).amax(1)
    max_band = torch.where((w > 0) & (w < 1), diff, zero).flatten(1).amax(1)
    return out, w, max_outside, max_band


def reconstruct_all(
    make_decoder: Callable[[], torch.nn.Module],
    latents: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    settings: ReconstructSettings = ReconstructSettings(),
    edited: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
    check: Callable[[], None] = no_check,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Every latent of ``latents`` [N,C,h,w] (image-major over the B sources) decoded by its own
    tuned decoder and pasted exactly over ``source`` [B,3,H,W] in 0..1 inside ``mask`` [B|1,1,H,W].

    ``make_decoder()`` gives a fresh private decoder per image (``private_decoder``), so no image's
    tuning leaks into the next. ``edited`` [N,3,H,W] in 0..1: the edits to keep inside the mask
    (default each latent's plain decode). ``callback(done, total)`` counts the Adam steps of all
    images; ``check`` (a caller's Cancel) runs at each. Returns (images [N,3,H,W] in 0..1 on the
    CPU, per-image figures: ``reconstruct``'s and ``max_outside`` / ``max_band`` of the paste).
    """
    if latents.dim() != 4:
        raise InputError(
            f"latent must be an image latent [batch, channels, height, width]; got {tuple(latents.shape)}."
        )
    n, b = latents.shape[0], source.shape[0]
    if n % b:
        raise InputError(f"latent has a batch of {n}, not a multiple of the {b} source image(s).")
    if edited is not None and edited.shape[0] != n:
        raise InputError(f"edited has {edited.shape[0]} images for {n} latents: connect the decode of this latent.")
    total = settings.iterations * n
    outs, all_stats = [], []
    for i in range(n):
        k = i // (n // b)
        m = mask[k if mask.shape[0] > 1 else 0][None]

        def tick(done, _total, i=i):
            check()
            if callback is not None:
                callback(i * settings.iterations + done, total)

        inside = None if edited is None else edited[i : i + 1] * 2 - 1
        tuned, stats = reconstruct(make_decoder(), latents[i : i + 1], source[k : k + 1] * 2 - 1, m, settings,
                                   inside=inside, callback=tick)
        tuned01 = tuned.add(1).div(2).clamp(0, 1).cpu()
        out, _, max_out, max_band = paste_exact(tuned01, source[k : k + 1], m, settings.feather)
        outs.append(out)
        stats.update(max_outside=float(max_out[0]), max_band=float(max_band[0]))
        all_stats.append(stats)
    return torch.cat(outs), all_stats
