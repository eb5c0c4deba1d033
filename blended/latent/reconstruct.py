"""Background reconstruction (Blended Latent Diffusion, Sec. 3.3 of the paper).

A VAE cannot reproduce a photo exactly, so decoding a blended latent changes the background a
little everywhere, and pasting the source back then leaves a visible seam where the decoder's
colours meet the real ones. The paper's fix: per image, fine-tune a copy of the decoder so that
its output matches the source outside the mask while staying close to the plain decode of the
edit inside it:

    L(θ) = mean_m (D_θ(z) − D(z))²  +  λ · mean_band (D_θ(z) − x)²

The paper tunes the whole decoder on the whole image (75-100 Adam steps), which costs more than the
edit. Here the outside term looks only at a band of ``band_px`` around the mask (the exact paste
replaces everything further out, so only the seam's neighbourhood matters), only the decoder's last
blocks are tuned on the window the loss covers (``decoder_tail``), and a stopping rule ends the
steps once the band's error has fallen ``target_reduction`` times or stopped falling. A decoder of
unknown layout is tuned whole, as in the paper (still with the band and the rule). The copy is
private to the call; the caller's decoder is never modified. Afterwards the exact source pixels are
pasted outside the mask (optionally after a gradient-domain blend, and with an optional inward
feather), so "outside the mask nothing changes" holds bit for bit.

Pure torch: the decoder is an LDM first stage (``decode(z)``) or any module mapping a latent to an
image in [-1, 1].
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from .. import masks
from ..errors import InputError, no_check
from ..metrics import seam_change
from ..paste import paste
from . import seam
from .decoder_tail import Tunable, tail_tunable, whole_tunable

SEAM_MODES = ("reconstruct decoder", "reconstruct + gradient domain")
PLATEAU_GAIN = 0.01  # a step "improves" the loss when it lowers the best so far by 1 %


@dataclass(frozen=True)
class ReconstructSettings:
    iterations: int = 75  # the most Adam steps per image; the stopping rule usually ends sooner
    learning_rate: float = 5e-4
    background_weight: float = 100.0  # λ of the paper's loss
    feather: int = 0  # px, inward: pixels outside the mask stay exact
    seam: str = SEAM_MODES[0]
    tuned_blocks: int | None = 1  # last full-resolution decoder blocks tuned (+ output norm/conv); None: all
    band_px: int = 16  # width of the band outside the mask the loss looks at
    target_reduction: float = 20.0  # stop once the band's squared error is this many times below the plain decode's
    patience: int = 10  # ... or once the loss has not improved by 1 % for this many steps

    def __post_init__(self):  # checked once, when made: settings that exist are valid
        if self.iterations < 0:
            raise InputError(f"iterations must be >= 0; got {self.iterations}.")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be > 0; got {self.learning_rate}.")
        if self.background_weight < 0:
            raise InputError(f"background_weight must be >= 0; got {self.background_weight}.")
        if self.feather < 0:
            raise InputError(f"mask_feather must be >= 0; got {self.feather}.")
        if self.seam not in SEAM_MODES:
            raise InputError(f"seam {self.seam!r}: use one of {', '.join(SEAM_MODES)}.")
        if self.tuned_blocks is not None and self.tuned_blocks < 0:
            raise InputError(f"tuned_blocks must be >= 0 (or None for the whole decoder); got {self.tuned_blocks}.")
        if self.band_px < 1:
            raise InputError(f"band_px must be >= 1; got {self.band_px}.")
        if not self.target_reduction >= 1:
            raise InputError(f"target_reduction must be >= 1; got {self.target_reduction}.")
        if self.patience < 1:
            raise InputError(f"patience must be >= 1; got {self.patience}.")


def report_text(all_stats: list[dict]) -> str:
    lines = [report_line(i, stats) for i, stats in enumerate(all_stats)]
    return "\n".join(["background reconstruction (differences in 0..1 pixel units):"] + lines)


def report_line(index: int, stats: dict) -> str:
    line = (f"image {index}: outside the mask max |diff| {stats['max_outside']:.6g} (0 = exact); feather band max "
            f"|diff| {stats['max_band']:.4f}; decoder RMS error in the {stats.get('band_px', '?')} px band outside the "
            f"mask {stats['plain_outside']:.4f} plain -> {stats['tuned_outside']:.4f} tuned; inside RMS change "
            f"{stats['inside_change']:.4f}")
    if "mode" in stats:
        what = ("whole decoder" if stats["tuned_blocks"] is None
                else f"last {stats['tuned_blocks']} decoder block(s) + output conv")
        line += (f"; mode {stats['mode']}: {what}, {stats['iterations']} Adam steps (stopped: {stats['stopped']}); "
                 f"seam score {stats['seam_before']:.4f} plain decode -> {stats['seam_after']:.4f}")
    return line


def private_decoder(decoder: torch.nn.Module, device, dtype=torch.float32) -> torch.nn.Module:
    """A trainable copy of ``decoder`` on ``device``; the original's weights are never touched."""
    with torch.inference_mode(False):
        twin = copy.deepcopy(decoder)
        for p in twin.parameters():
            p.data = p.data.detach().clone()
        twin = twin.to(device=device, dtype=dtype).train(False)
        twin.requires_grad_(True)
    return twin


def tunable_for(first_stage: torch.nn.Module, latent: torch.Tensor, hard_mask: torch.Tensor,
                settings: ReconstructSettings, device) -> Tunable:
    """The fast tail on a window when ``first_stage`` has the LDM decoder layout and
    ``settings.tuned_blocks`` is set; otherwise a whole private copy (the paper's way)."""
    if settings.tuned_blocks is not None:
        with torch.inference_mode(False):
            t = tail_tunable(first_stage, latent, hard_mask.to(device), settings.tuned_blocks, settings.band_px,
                             device)
        if t is not None:
            return t
    with torch.inference_mode(False):
        return whole_tunable(private_decoder(first_stage, device), latent, hard_mask.shape[-2:])


def _window(t: torch.Tensor, box) -> torch.Tensor:
    y0, y1, x0, x1 = box
    return t[..., y0:y1, x0:x1]


def tune(
    t: Tunable,
    source: torch.Tensor,
    mask: torch.Tensor,
    settings: ReconstructSettings = ReconstructSettings(),
    inside: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Adam on ``t``'s parameters until the stopping rule. ``source`` [1,3,H,W] and ``inside`` (the
    edit to keep, default the plain decode) in [-1,1], ``mask`` [1,1,H,W] (1 = edit). Returns the
    tuned decode of the whole image [1,3,H,W] in [-1,1] (the plain decode outside the window) and
    its figures in 0..1 units: ``plain_outside`` / ``tuned_outside`` the RMS difference from the
    source in the band outside the mask before / after, ``inside_change`` the RMS difference from
    the edit to keep inside the mask, ``inside_mse_plain`` the mean squared difference from the
    plain decode inside, ``iterations`` (Adam steps taken) and ``stopped`` (target / plateau / cap).
    """
    with torch.inference_mode(False), torch.enable_grad():
        w = _loss_window(t, source, mask, inside, settings.band_px)
        plain_out = float((((w.plain.clamp(-1, 1) - w.source)) ** 2 * w.band).sum() / w.n_out)
        steps, stopped, y = _adam(t, w, settings, plain_out / settings.target_reduction, callback)
        with torch.no_grad():
            tuned = _tuned_image(t, y, steps)
            stats = _tune_figures(_window(tuned, t.window), w, plain_out)
            stats.update(iterations=steps, stopped=stopped, tuned_blocks=t.tuned_blocks, band_px=settings.band_px)
    return tuned.detach(), stats


@dataclass(frozen=True)
class _LossWindow:
    """What the loss compares, cut to the tunable's window (the decoder only changes pixels there):
    all [1,C,h,w] float32 on the decoder's device, ``n_in`` / ``n_out`` the values in the mask / band."""

    source: torch.Tensor  # x, to match in the band outside the mask
    hard: torch.Tensor  # the binarized mask: inside, keep the edit
    keep: torch.Tensor  # the edit to keep inside (default the plain decode)
    band: torch.Tensor  # the band of ``band_px`` just outside the mask: the only place the paste leaves visible
    plain: torch.Tensor  # the plain decode
    n_in: torch.Tensor
    n_out: torch.Tensor


def _loss_window(t: Tunable, source, mask, inside, band_px: int) -> _LossWindow:
    """The loss's targets on ``t``'s window, detached copies (the caller's tensors never get grads)."""
    device = t.plain.device
    x = source.detach().clone().to(device=device, dtype=torch.float32)
    hard = masks.binarize(mask.detach().clone().to(device=device, dtype=torch.float32), 0.5)
    plain = t.plain.detach()
    keep = inside.detach().clone().to(device=device, dtype=torch.float32) if inside is not None else plain
    band_full = masks.dilate(hard, band_px) * (1 - hard)
    xw, mw, kw, bw = (_window(v, t.window) for v in (x, hard, keep, band_full))
    n_in, n_out = mw.sum().clamp(min=1) * 3, bw.sum().clamp(min=1) * 3
    return _LossWindow(xw, mw, kw, bw, _window(plain, t.window), n_in, n_out)


def _adam(t: Tunable, w: _LossWindow, settings: ReconstructSettings, goal: float, callback):
    """(steps taken, why they stopped, the last decode or None): Adam on the paper's loss until the
    band's squared error reaches ``goal`` ("target"), the loss stops improving by ``PLATEAU_GAIN``
    for ``patience`` steps ("plateau"), or ``iterations`` ("cap"). Most images stop well before the
    cap, which is what makes per-image tuning affordable."""
    if not t.params:
        return 0, "nothing to tune", None
    opt = torch.optim.Adam(t.params, lr=settings.learning_rate)
    best, since, steps, y = math.inf, 0, 0, None
    for _ in range(settings.iterations):
        opt.zero_grad(set_to_none=True)
        y = t.decode()
        out_mse = ((y - w.source) ** 2 * w.band).sum() / w.n_out
        if float(out_mse.detach()) <= goal:
            return steps, "target", y
        loss = ((y - w.keep) ** 2 * w.hard).sum() / w.n_in + settings.background_weight * out_mse
        if float(loss.detach()) < best * (1 - PLATEAU_GAIN):
            best, since = float(loss.detach()), 0
        else:
            since += 1
            if since >= settings.patience:
                return steps, "plateau", y
        loss.backward()
        opt.step()
        steps += 1
        y = None
        if callback is not None:
            callback(steps, settings.iterations)
    return steps, "cap", y


def _tuned_image(t: Tunable, y, steps: int) -> torch.Tensor:
    """The whole image [1,3,H,W] in [-1,1]: the plain decode with the tuned window in it; ``y`` is
    the decode with the final weights when the loop made one, else the window is decoded again."""
    tuned = t.plain.detach().clone()
    if steps or y is not None:
        y0, y1, x0, x1 = t.window
        tuned[..., y0:y1, x0:x1] = (t.decode() if y is None else y).detach()
    return tuned.clamp(-1, 1)


def _tune_figures(tw: torch.Tensor, w: _LossWindow, plain_out: float) -> dict:
    """``tune``'s figures in 0..1 units (values in [-1,1] halved): RMS errors in the band before and
    after, and how far the tuned window moved inside the mask from the edit and from the plain decode."""
    return {
        "plain_outside": math.sqrt(plain_out / 4),
        "tuned_outside": float((((tw - w.source) / 2) ** 2 * w.band).sum().div(w.n_out).sqrt()),
        "inside_change": float((((tw - w.keep.clamp(-1, 1)) / 2) ** 2 * w.hard).sum().div(w.n_in).sqrt()),
        "inside_mse_plain": float((((tw - w.plain.clamp(-1, 1)) / 2) ** 2 * w.hard).sum().div(w.n_in)),
    }


def reconstruct(
    decoder: torch.nn.Module,
    latent: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    settings: ReconstructSettings = ReconstructSettings(),
    inside: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """One image, the whole ``decoder`` tuned (a private copy, ``private_decoder``, trained in place):
    ``latent`` [1,C,h,w], ``source`` [1,3,H,W] in [-1,1], ``mask`` [1,1,H,W] (1 = edit). See ``tune``."""
    with torch.inference_mode(False):
        t = whole_tunable(decoder, latent, source.shape[-2:])
    return tune(t, source, mask, settings, inside, callback)


def paste_figures(out: torch.Tensor, source: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The report's check of a paste ``out`` over ``source`` with ``weights`` [B,1,H,W]: per image the
    largest |diff| (over channels) where the weight is 0 (0 = exact) and where it is between 0 and 1
    (the feather band)."""
    diff = (out - source).abs().amax(dim=1, keepdim=True)
    zero = torch.zeros_like(diff)
    max_outside = torch.where(weights == 0, diff, zero).flatten(1).amax(1)
    max_band = torch.where((weights > 0) & (weights < 1), diff, zero).flatten(1).amax(1)
    return max_outside, max_band


def reconstruct_all(
    make_tunable: Callable[[torch.Tensor, torch.Tensor], Tunable],
    latents: torch.Tensor,
    source: torch.Tensor,
    mask: torch.Tensor,
    settings: ReconstructSettings = ReconstructSettings(),
    edited: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
    check: Callable[[], None] = no_check,
) -> tuple[torch.Tensor, list[dict]]:
    """Every latent of ``latents`` [N,C,h,w] (image-major over the B sources) decoded by its own
    tuned decoder and pasted exactly over ``source`` [B,3,H,W] in 0..1 inside ``mask`` [B|1,1,H,W].

    ``make_tunable(latent [1,C,h,w], hard mask [1,1,H,W])`` gives a fresh ``Tunable`` per image
    (``tunable_for``), so no image's tuning leaks into the next. ``edited`` [N,3,H,W] in 0..1: the
    edits to keep inside the mask (default each latent's plain decode). ``settings.seam``
    "reconstruct + gradient domain" Poisson-blends the tuned decode into the source (``seam.py``)
    before the paste. ``callback(done, total)`` counts the Adam steps of all images (a stopped image
    counts as done); ``check`` (a caller's Cancel) runs at each. Returns (images [N,3,H,W] in 0..1 on
    the CPU, per-image figures: ``tune``'s, ``max_outside`` / ``max_band`` of the paste, ``mode`` and
    ``seam_before`` (the plain decode pasted exactly) / ``seam_after`` (``metrics.seam_change``)).
    """
    _check_batches(latents, source, edited)
    n, b = latents.shape[0], source.shape[0]
    total = settings.iterations * n
    outs, all_stats = [], []
    for i in range(n):
        k = i // (n // b)
        m = mask[k if mask.shape[0] > 1 else 0][None]
        hard = masks.binarize(m.float(), 0.5)

        def tick(done, _total, i=i):
            check()
            if callback is not None:
                callback(i * settings.iterations + done, total)

        inside = None if edited is None else edited[i : i + 1] * 2 - 1
        src = source[k : k + 1]
        t = make_tunable(latents[i : i + 1], hard)
        tuned, stats = tune(t, src * 2 - 1, m, settings, inside=inside, callback=tick)
        check()
        if callback is not None:
            callback((i + 1) * settings.iterations, total)
        out = _paste_tuned(t, tuned, src, hard, settings, stats)
        outs.append(out)
        all_stats.append(stats)
    return torch.cat(outs), all_stats


def _check_batches(latents: torch.Tensor, source: torch.Tensor, edited: torch.Tensor | None) -> None:
    """Every latent must map to one source image (image-major), and every edit to one latent."""
    if latents.dim() != 4:
        raise InputError(
            f"latent must be an image latent [batch, channels, height, width]; got {tuple(latents.shape)}."
        )
    n, b = latents.shape[0], source.shape[0]
    if n % b:
        raise InputError(f"latent has a batch of {n}, not a multiple of the {b} source image(s).")
    if edited is not None and edited.shape[0] != n:
        raise InputError(f"edited has {edited.shape[0]} images for {n} latents: connect the decode of this latent.")


def _paste_tuned(t: Tunable, tuned: torch.Tensor, src: torch.Tensor, hard: torch.Tensor,
                 settings: ReconstructSettings, stats: dict) -> torch.Tensor:
    """The tuned decode (optionally Poisson-blended) pasted over ``src`` [1,3,H,W] in 0..1 with the
    inward feather, on the CPU; ``stats`` gains the paste's maxima and the seam change from the plain
    decode's exact paste to this one, the figure that says whether tuning was worth it."""
    tuned01 = tuned.add(1).div(2).clamp(0, 1).cpu()
    plain01 = t.plain.clamp(-1, 1).add(1).div(2).cpu()
    hard = hard.cpu()
    if settings.seam == "reconstruct + gradient domain":
        tuned01 = seam.gradient_domain(tuned01, src, hard)
    weights = masks.feather(hard, settings.feather)  # inward: 0 wherever the mask is
    out = paste(tuned01, src, weights)
    max_out, max_band = paste_figures(out, src, weights)
    (before,), (after,) = seam_change(paste(plain01, src, hard), out, hard)
    stats.update(max_outside=float(max_out[0]), max_band=float(max_band[0]), mode=settings.seam,
                 seam_before=before, seam_after=after)
    return out
