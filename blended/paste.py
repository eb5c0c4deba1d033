"""The one paste: an edit over a source by weights, the outside left bit for bit.

Every path that puts an edit into the caller's image (the pixel sampler's per-step blend and final
paste, the any-size paste-back, the latent stitch and its seam modes, the background
reconstruction) ends here, so "outside the mask nothing changes" is one ``torch.where`` and holds
for all of them: where a weight is not above 0 the result is the source's own value, never a value
that went through ``edited * 0 + source * 1`` (which turns -0.0 into 0.0 and NaN/inf edits into
NaN).
"""

from __future__ import annotations

import torch


def paste(edited: torch.Tensor, source: torch.Tensor, weights: torch.Tensor,
          clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """``edited * w + source * (1 - w)`` where ``weights`` > 0, ``source`` bit for bit elsewhere.

    Shapes broadcast (weights [N|1,1,H,W] over images [N,C,H,W]); the weights are taken in the
    source's dtype, and ``edited`` should come in it too (it is not cast here: a caller's wider edit
    keeps its precision, as the sampler's loop always had). ``clamp`` (lo, hi) bounds the blended
    pixels only: images in 0..1 stay in range after an antialiased resize overshoots by a few ULPs,
    while the source's own values are never clamped.
    """
    w = weights.to(source.dtype)
    blend = edited * w + source * (1 - w)
    if clamp is not None:
        blend = blend.clamp(*clamp)
    return torch.where(w > 0, blend, source)
