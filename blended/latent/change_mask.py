"""The region a maskless edit changed, found from the result against the source.

Instruction editors (Flux Kontext, Qwen-Image-Edit, Flux.2) return the whole picture re-rendered:
besides the asked-for change there is a global colour shift and often a shift or zoom of a few pixels
(QwenLM/Qwen-Image #229, #160). A plain difference of result and source would then mark the whole
image. So before differencing, the result is brought back onto the source: a small zoom and shift
(searched on a coarse grid at low resolution, scored by the median absolute difference, which the
edited region cannot move as long as it is under half the picture), then a per-channel gain and
offset fitted by least squares on the pixels that still agree (trimmed: the edit is an outlier).
What then differs by more than ``threshold`` (max over channels, after a small box blur that
removes the decoder's pixel noise) is the change; specks smaller than the blur are dropped by an
erode/dilate (opening), and the mask can be grown.

``confine`` then pastes the edit, brought onto the source, inside the found region with a seam mode
(``seam.apply_seam``): outside it the source bit for bit. The other route, the blended sampler with
the found mask, reruns the edit model once more; this one costs no model call.

Pure torch on images [N,3,H,W] in 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import masks
from ..errors import InputError
from . import seam


@dataclass(frozen=True)
class ChangeSettings:
    """``threshold``: the smallest per-pixel change (0..1, max over channels) that counts as edited.
    ``blur_px``: box blur before the cut (decoder noise is pixel-sized). ``grow_px``: the found mask
    grown. ``max_shift``: the largest shift searched, as a fraction of the short side; ``max_zoom``:
    the largest zoom searched (1.03 = 3 %). ``align`` / ``match_colour``: switch either step off."""

    threshold: float = 0.08
    blur_px: int = 2
    grow_px: int = 4
    max_shift: float = 0.02
    max_zoom: float = 1.03
    align: bool = True
    match_colour: bool = True

    def __post_init__(self):
        if not 0.0 < float(self.threshold) < 1.0:
            raise InputError(f"threshold is {self.threshold}: use a change between 0 and 1 (0.08 = 8 % of full scale).")
        if not 0 <= int(self.blur_px) <= 32 or not 0 <= int(self.grow_px) <= 512:
            raise InputError(f"blur_px is {self.blur_px} and grow_px {self.grow_px}: use 0-32 and 0-512 pixels.")
        if not 0.0 <= float(self.max_shift) <= 0.1 or not 1.0 <= float(self.max_zoom) <= 1.2:
            raise InputError(f"max_shift is {self.max_shift} and max_zoom {self.max_zoom}: use 0-0.1 and 1-1.2.")


def warp(image: torch.Tensor, zoom: float, dx: float, dy: float) -> torch.Tensor:
    """``image`` [N,C,H,W] zoomed about its centre by ``zoom`` and shifted by (dx, dy) pixels, sampled
    bilinearly with the border replicated: the inverse of what an editor's drift did."""
    return _affine(image, [(zoom, dx, dy)] * image.shape[0])


def _affine(images: torch.Tensor, params) -> torch.Tensor:
    """Image k of ``images`` [K,C,H,W] under (zoom, dx, dy) ``params[k]``, all in one grid_sample."""
    n, c, h, w = images.shape
    theta = torch.tensor([[[1 / z, 0.0, -2 * dx / w], [0.0, 1 / z, -2 * dy / h]] for z, dx, dy in params],
                         dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _small(x: torch.Tensor, side: int = 96) -> torch.Tensor:
    scale = side / min(x.shape[-2:])
    return F.interpolate(x, scale_factor=scale, mode="area") if scale < 1 else x


def _best(e: torch.Tensor, s: torch.Tensor, params: list) -> tuple:
    """The (zoom, dx, dy) of ``params`` whose warp of ``e`` has the lowest median max-channel
    difference from ``s``. Median, not mean: the edited region is a minority that must not pull it."""
    chunks = [params[k : k + 64] for k in range(0, len(params), 64)]
    errors = torch.cat([(_affine(e.expand(len(c), -1, -1, -1), c) - s).abs().amax(1).flatten(1).median(1).values
                        for c in chunks])
    return params[int(errors.argmin())]


def find_alignment(edited: torch.Tensor, source: torch.Tensor, settings: ChangeSettings) -> tuple[float, float, float]:
    """(zoom, dx, dy) in full-resolution pixels that best puts ``edited`` [1,3,H,W] on ``source``: a
    grid of zooms and whole-pixel shifts at about 96 px (after a first colour match, so a tint does
    not pass for a shift), then five finer grids, each half the last, around the best."""
    s = _small(source)
    e = match_colour(_small(edited), s) if settings.match_colour else _small(edited)
    ratio = source.shape[-1] / s.shape[-1]
    reach = int(round(float(settings.max_shift) * min(s.shape[-2:])))
    zoom_max = float(settings.max_zoom)
    zooms = torch.linspace(1 / zoom_max, zoom_max, 7).tolist() if zoom_max > 1 else [1.0]
    shifts = range(-reach, reach + 1)
    zoom, dx, dy = _best(e, s, [(z, dx, dy) for z in zooms for dy in shifts for dx in shifts])
    dz = zooms[1] - zooms[0] if len(zooms) > 1 else 0.0
    for level in range(1, 6):  # steps of 1/2 ... 1/32 of the coarse grid's: together they reach any point
        f = 2.0**-level  # between two coarse ones (a third-step ladder reaches only 0.48 of the way)
        zoom, dx, dy = _best(e, s, [(zoom + k * dz * f, dx + a * f, dy + b * f)
                                    for k in (-1, 0, 1) for b in (-1, 0, 1) for a in (-1, 0, 1)])
    return zoom, dx * ratio, dy * ratio


def match_colour(edited: torch.Tensor, source: torch.Tensor, keep: float = 0.6) -> torch.Tensor:
    """``edited`` with a per-channel gain and offset that best maps it onto ``source`` on the
    ``keep`` share of pixels that agree best (trimmed least squares, twice), so a global tint goes and
    the edited region, an outlier, does not set the fit."""
    out = edited.clone()
    for c in range(edited.shape[1]):
        x, y = edited[:, c].flatten(), source[:, c].flatten()
        use = torch.ones_like(x, dtype=torch.bool)
        for _ in range(2):
            a = torch.stack([x[use], torch.ones_like(x[use])], 1)
            sol = torch.linalg.lstsq(a, y[use, None]).solution[:, 0]
            resid = (x * sol[0] + sol[1] - y).abs()
            use = resid <= resid.quantile(keep) if resid.numel() <= 2**24 else resid <= resid.median()
        out[:, c] = edited[:, c] * sol[0] + sol[1]
    return out.clamp(0, 1)


def change_mask(edited: torch.Tensor, source: torch.Tensor, settings: ChangeSettings = ChangeSettings()):
    """-> (mask [N,1,H,W] binary, the edit brought onto the source [N,3,H,W], per-image figures).

    ``edited`` [N,3,h,w] is resized to ``source``'s size first when the editor rendered another size;
    ``source`` [N|1,3,H,W]. Figures: the region's share of the image, the zoom and shift removed, and
    the unconfined edit's change outside the region (mean and max |edited - source|, before any
    correction: what confining it takes away)."""
    if edited.dim() != 4 or source.dim() != 4 or edited.shape[1] != 3 or source.shape[1] != 3:
        raise InputError(f"edited {tuple(edited.shape)} and source {tuple(source.shape)} must be RGB images.")
    if source.shape[0] not in (1, edited.shape[0]):
        raise InputError(f"source has {source.shape[0]} images for {edited.shape[0]} edits: give one, or one per edit.")
    if edited.shape[-2:] != source.shape[-2:]:
        edited = F.interpolate(edited, size=source.shape[-2:], mode="bicubic", antialias=True).clamp(0, 1)
    outs, found, stats = [], [], []
    for i in range(edited.shape[0]):
        e, s = edited[i : i + 1], source[i if source.shape[0] > 1 else 0][None]
        zoom, dx, dy = find_alignment(e, s, settings) if settings.align else (1.0, 0.0, 0.0)
        aligned = warp(e, zoom, dx, dy) if (zoom, dx, dy) != (1.0, 0.0, 0.0) else e
        if settings.match_colour:
            aligned = match_colour(aligned, s)
        m = _cut(aligned, s, settings)
        raw = (e - s).abs().amax(1, keepdim=True)
        outside = raw[m == 0]
        stats.append({"share": float(m.mean()), "zoom": zoom, "dx": dx, "dy": dy,
                      "outside_mean": float(outside.mean()) if outside.numel() else 0.0,
                      "outside_max": float(outside.max()) if outside.numel() else 0.0})
        outs.append(aligned)
        found.append(m)
    return torch.cat(found), torch.cat(outs), stats


def _cut(aligned: torch.Tensor, source: torch.Tensor, settings: ChangeSettings) -> torch.Tensor:
    """The binary change: blurred max-channel difference above the threshold, opened, grown."""
    diff = (aligned - source).abs().amax(1, keepdim=True)
    if settings.blur_px > 0:
        diff = masks.box_mean(diff, int(settings.blur_px))
    m = (diff > float(settings.threshold)).float()
    if settings.blur_px > 0:
        m = masks.dilate(masks.erode(m, int(settings.blur_px)), int(settings.blur_px))
    return masks.dilate(m, int(settings.grow_px)) if settings.grow_px > 0 else m


def report_text(stats: list[dict]) -> str:
    """One line per image: the region's size, the drift removed and what the unconfined edit changed
    outside the region."""
    lines = []
    for i, s in enumerate(stats):
        note = "  EMPTY: nothing changed above the threshold" if s["share"] == 0 else ""
        lines.append(f"#{i}: region {100 * s['share']:.1f}% of the image; removed zoom {s['zoom']:.3f}, shift "
                     f"{s['dx']:+.1f},{s['dy']:+.1f} px; the unconfined edit changed the outside by mean "
                     f"{s['outside_mean']:.4f}, max {s['outside_max']:.4f} (now 0){note}")
    return "\n".join(lines)


def confine(edited: torch.Tensor, source: torch.Tensor, settings: ChangeSettings = ChangeSettings(),
            seam_mode: str = "exact paste", feather_px: int = 0):
    """A maskless edit confined to what it changed: -> (images [N,3,H,W], mask [N,1,H,W], report).
    Inside the found region the edit brought onto the source; outside it ``source`` bit for bit;
    ``seam_mode`` (seam.MODES) says how the two meet."""
    found, aligned, stats = change_mask(edited, source, settings)
    src = source.expand(aligned.shape[0], -1, -1, -1) if source.shape[0] == 1 else source
    weights, _ = seam.paste_weights(seam_mode, found, feather_px)
    out, _ = seam.apply_seam(seam_mode, aligned, src, found, weights)
    return out, found, f"confined with {seam_mode}\n" + report_text(stats)
