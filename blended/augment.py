"""Extending augmentations (paper, Sec. 4.3).

CLIP can be fooled by adversarial pixel patterns that lower D_CLIP without changing the image's
meaning. Averaging the gradient over several randomly warped copies makes such patterns useless,
because they do not survive a projective warp, while real content does.

Parameters are drawn from one ``torch.Generator`` per sample so a sample's augmentations, like
its noise, depend only on its own seed, on any device. The 3x3 maps of all samples and copies are
built with tensor ops in one go on the sample's device (a per-copy Python loop cost more than the
warp itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform, warp_perspective

from .errors import InputError


def resize_for_clip(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average down (as the reference code does), bilinear up for tiny inputs."""
    if x.shape[-2] >= size and x.shape[-1] >= size:
        return F.adaptive_avg_pool2d(x, (size, size))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class ExtendingAugmentation:
    """N random affine+perspective copies of the CLIP input, plus the un-augmented original."""

    def __init__(self, count: int = 8, degrees: float = 15.0, translate: float = 0.1, perspective: float = 0.7):
        if count < 0:
            raise InputError(f"augmentation count {count}: use 0 (off) or more copies, e.g. 8.")
        if not 0 <= translate < 1 or not 0 <= perspective < 1 or not 0 <= degrees <= 180:
            raise InputError(
                "augmentation strengths out of range: degrees 0..180, translate 0..<1 (fraction of the size), "
                "perspective 0..<1 (fraction of half the size each corner may move)."
            )
        self.count, self.degrees, self.translate, self.perspective = count, degrees, translate, perspective

    def __repr__(self) -> str:
        return (
            f"ExtendingAugmentation(count={self.count}, degrees={self.degrees}, "
            f"translate={self.translate}, perspective={self.perspective})"
        )

    def homographies(self, size: int, generators: list[torch.Generator], device=None) -> torch.Tensor:
        """[count*B, 3, 3] maps, copy-major: perspective corner jitter composed with rotation +
        translation about the centre.

        Each sample's 11 numbers per copy come from its own generator in one draw, in the order
        the copies are used, so a sample's warps depend only on its seed; the matrices are then
        built for all samples and copies at once, on ``device``.
        """
        b, n = len(generators), self.count
        draws = torch.stack([torch.rand(n, 11, generator=g, dtype=torch.float64) for g in generators], dim=1)
        dtype = torch.float64 if torch.device(device or "cpu").type in ("cpu", "cuda") else torch.float32
        u = draws.reshape(n * b, 11).to(device=device, dtype=dtype)  # row = copy * B + sample
        c = (size - 1) / 2
        angle = torch.deg2rad((u[:, 0] * 2 - 1) * self.degrees)
        shift = (u[:, 1:3] * 2 - 1) * self.translate * size
        cos, sin = angle.cos(), angle.sin()
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        affine = torch.stack(
            [
                torch.stack([cos, -sin, c - cos * c + sin * c + shift[:, 0]], -1),
                torch.stack([sin, cos, c - sin * c - cos * c + shift[:, 1]], -1),
                torch.stack([zero, zero, one], -1),
            ],
            dim=1,
        )
        far = size - 1
        corners = torch.tensor([[0, 0], [far, 0], [far, far], [0, far]], dtype=dtype, device=u.device)
        inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=dtype, device=u.device)
        moved = corners + inward * u[:, 3:].reshape(-1, 4, 2) * self.perspective * size / 2
        persp = get_perspective_transform(corners.expand(n * b, -1, -1), moved)
        return persp @ affine

    def __call__(self, x: torch.Tensor, size: int, generators: list[torch.Generator]) -> torch.Tensor:
        """[B,3,h,w] -> [(count+1)*B, 3, size, size]; the first B rows are un-augmented (view-major)."""
        if len(generators) != x.shape[0]:
            raise ValueError(f"need one generator per sample: {len(generators)} for a batch of {x.shape[0]}")
        base = resize_for_clip(x, size)
        if self.count == 0:
            return base
        mats = self.homographies(size, generators, x.device).to(x.dtype)
        tiled = base.repeat(self.count, 1, 1, 1)
        warped = warp_perspective(tiled, mats, (size, size), mode="bilinear", padding_mode="border", align_corners=True)
        return torch.cat([base, warped], dim=0)
