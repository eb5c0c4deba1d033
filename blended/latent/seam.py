"""Seam treatments for pasting an edited region back onto its source image, and the one place a
seam mode is chosen (``apply_seam``: the stitch, the tests and ``benchmarks/bench_seams.py`` all
run it, so the benchmark's figures are the shipped code's).

Every function takes images [N,C,H,W] (floats; the stitch's are 0..1), a mask [N|1,H,W] or
[N|1,1,H,W] in 0..1 (> 0 = edited) and returns [N,C,H,W]. Outside the mask the result is the
source bit for bit: every mode ends with ``paste.paste`` (a ``torch.where(mask > 0, ..., source)``)
so no arithmetic ever touches an outside pixel. Soft masks keep their soft alpha for the paste;
the statistics of colour match and the Poisson solve binarise the mask at 0.5, because an
unknown either belongs to the solve or is a fixed boundary value. An empty mask returns the
source; a mask with no outside pixel (full mask) has no boundary to match, so colour match and
gradient domain return the plain paste (the edited image) rather than invent one. The feather is
``masks.feather`` (inward: erode, then box-blur), the one the pixel path's ``mask_feather`` uses.
"""

from __future__ import annotations

import torch

from .. import masks
from ..errors import InputError
from ..paste import paste

MODES = ("exact paste", "feather", "colour match", "gradient domain")
FEATHER_MODE_PX = 4  # "feather" asks for a soft edge: this wide when mask_feather leaves it at 0
UNIT = (0.0, 1.0)  # images are 0..1: pasted and corrected pixels are clamped to it


def _prepare(edited, source, mask):
    if edited.dim() != 4 or edited.shape != source.shape:
        raise InputError(
            f"seam: edited {tuple(edited.shape)} and source {tuple(source.shape)} must be equal "
            "[N,C,H,W] images; flatten video frames into the batch first."
        )
    m = mask.float()
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3 or m.shape[-2:] != edited.shape[-2:] or m.shape[0] not in (1, edited.shape[0]):
        raise InputError(
            f"seam: mask {tuple(mask.shape)} must be [N|1,H,W] matching the image "
            f"{tuple(edited.shape)}; resize the mask to the image."
        )
    return m.expand(edited.shape[0], -1, -1).clamp(0, 1)[:, None].to(edited.dtype)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"seam mode {mode!r}: use one of {', '.join(MODES)}.")
    return mode


def paste_weights(mode: str, mask: torch.Tensor, feather_px: int = 0) -> tuple[torch.Tensor, int]:
    """(weights, feather px) a mode pastes ``mask`` [..., H, W] with: ``masks.feather`` by
    ``feather_px`` ("feather" with 0 px: FEATHER_MODE_PX; 0 px: the mask itself). Apart from
    ``apply_seam`` because the stitch makes them once per source image, not once per sample."""
    px = FEATHER_MODE_PX if _check_mode(mode) == "feather" and feather_px <= 0 else int(feather_px)
    return masks.feather(mask, px), px


def apply_seam(mode: str, edited, source, mask, weights):
    """Paste ``edited`` over ``source`` (images in 0..1) with ``mode``; returns (result, the exact paste).

    ``mask`` is the edit area (the exact paste's weights), ``weights`` the ones ``paste_weights``
    made from it. "exact paste" / "feather" paste with the weights; "colour match" and "gradient
    domain" correct the exact paste towards ``source`` around the border, inside ``weights``. The
    exact paste is returned too (the "before" of ``metrics.seam_change``); it *is* the result when
    the weights are the mask. ``edited`` only matters inside the mask (the stitch's full-size edit
    is zero outside its box)."""
    _check_mode(mode)
    m, w = _prepare(edited, source, mask), _prepare(edited, source, weights)
    exact = paste(edited, source, m, clamp=UNIT)
    if mode == "colour match":
        return colour_match(exact, source, w).clamp(*UNIT), exact
    if mode == "gradient domain":
        return gradient_domain(exact, source, w).clamp(*UNIT), exact
    if torch.equal(w, m):
        return exact, exact
    return paste(edited, source, w, clamp=UNIT), exact


def colour_match(edited, source, mask, ring_px: int = 4):
    """Shift and scale the edit's per-channel statistics to the ring of source just outside."""
    m = _prepare(edited, source, mask)
    if int(ring_px) < 1:
        raise InputError(f"seam ring_px {ring_px}: use 1 or more pixels.")
    inside = (m >= 0.5).to(m.dtype)
    ring = masks.dilate(inside, int(ring_px)) * (1 - inside)
    out = edited.clone()
    for i in range(edited.shape[0]):
        if inside[i].sum() < 2 or ring[i].sum() < 2:
            continue
        sel_in, sel_ring = inside[i, 0] > 0, ring[i, 0] > 0
        e_in, s_ring = edited[i][:, sel_in], source[i][:, sel_ring]
        mu_e, sd_e = e_in.mean(1), e_in.std(1).clamp(min=1e-6)
        mu_s, sd_s = s_ring.mean(1), s_ring.std(1)
        out[i] = (edited[i] - mu_e[:, None, None]) / sd_e[:, None, None] * sd_s[:, None, None]
        out[i] = out[i] + mu_s[:, None, None]
    return paste(out, source, m)


def _shift(x, dy, dx):
    """x shifted so out[y, x] = x[y+dy, x+dx], zeros where that lies off the grid."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[..., yd, xd] = x[..., ys, xs]
    return out


_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _poisson_crop(edited, source, inside, iters, tol):
    """Conjugate gradient on the 5-point Laplacian over the inside pixels of one crop [C,h,w].

    Neighbours off the image are dropped (Neumann); neighbours outside the mask are fixed at
    the source (Dirichlet). Only gradients between two inside pixels guide the solve: the edit's
    pixels outside the mask are whatever was pasted there (often the source itself), so the
    step across the border is exactly the seam and must not be reproduced. The price: the
    source's own one-pixel step across the border is not restored either (inside pixels next to
    the border come out as a membrane towards the source, off by its fine texture there).
    The operator is SPD whenever some inside pixel touches an outside one (caller guarantees).
    """
    ones = torch.ones_like(inside)
    b = torch.zeros_like(edited)
    count = torch.zeros_like(inside)
    for dy, dx in _NEIGHBOURS:
        valid = _shift(ones, dy, dx)
        count = count + valid
        b = b + _shift(inside, dy, dx) * (edited - _shift(edited, dy, dx))
        b = b + _shift(source * (1 - inside), dy, dx)
    b = b * inside

    def apply(x):
        acc = count * x
        for dy, dx in _NEIGHBOURS:
            acc = acc - _shift(x, dy, dx)
        return acc * inside

    x = edited * inside
    r = b - apply(x)
    p = r.clone()
    rs = (r * r).sum((-1, -2))
    b_norm = (b * b).sum((-1, -2)).clamp(min=1e-20)
    for _ in range(iters):
        if bool((rs <= tol * tol * b_norm).all()):
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum((-1, -2)).clamp(min=1e-30)
        x = x + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        rs_new = (r * r).sum((-1, -2))
        p = r + (rs_new / rs.clamp(min=1e-30))[:, None, None] * p
        rs = rs_new
    return x


def gradient_domain(edited, source, mask, iters: int = 2000, tol: float = 1e-6):
    """Poisson blend: keep the edit's gradients, take the boundary values from the source."""
    m = _prepare(edited, source, mask)
    inside_all = (m >= 0.5).to(torch.float64)
    out = edited.clone()
    h, w = edited.shape[-2:]
    for i in range(edited.shape[0]):
        sel = inside_all[i, 0] > 0
        if not sel.any() or sel.all():
            continue
        ys, xs = torch.nonzero(sel, as_tuple=True)
        y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h)
        x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w)
        inside = inside_all[i, 0, y0:y1, x0:x1]
        e = edited[i, :, y0:y1, x0:x1].double()
        s = source[i, :, y0:y1, x0:x1].double()
        f = _poisson_crop(e, s, inside, iters, tol)
        crop = torch.where(inside > 0, f, e).to(edited.dtype)
        out[i, :, y0:y1, x0:x1] = crop
    return paste(out, source, m)
