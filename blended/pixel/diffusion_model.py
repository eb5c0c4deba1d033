"""The frozen denoiser the sampler calls: an ADM UNet plus input checks.

Blended Diffusion never trains the UNet; it only differentiates the guidance losses with respect
to the noisy image. So the module is put in eval mode with ``requires_grad_(False)`` once, and
gradients flow through it to ``x`` only.

Class-conditional checkpoints (OpenAI's 512x512 model is one) are used unconditionally by leaving
the class embedding out, i.e. a zero class vector. Blended Diffusion's own code does the same
(its authors recommend "the zero vector as a condition", omriav/blended-diffusion#12); it is
deterministic, unlike drawing a random ImageNet class per sample.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .unet import UNetConfig, UNetModel


class DiffusionModel(nn.Module):
    """``forward(x [B,C,H,W] in [-1,1], t [B] original float timesteps, y=None) -> [B, out, H, W]``.

    The output has ``x``'s dtype even when the weights are half precision, so the schedule
    arithmetic around it stays in the caller's precision.
    """

    def __init__(self, unet: UNetModel, config: UNetConfig | None = None):
        super().__init__()
        self.unet = unet
        self.config = config if config is not None else unet.config
        self.image_size = self.config.image_size
        self.learn_sigma = self.config.learn_sigma
        self.num_classes = self.config.num_classes
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True):
        # Dropout was trained at 0 or 0.1 but sampling is always deterministic: stay in eval.
        return super().train(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.time_embed[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.time_embed[0].weight.device

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise InputError(
                f"The diffusion model expects images shaped [batch, {cfg.in_channels}, height, width]; "
                f"got {list(x.shape)}. Convert the image to {cfg.in_channels}-channel RGB first."
            )
        h, w = x.shape[-2:]
        m = cfg.size_multiple
        if h % m or w % m:
            raise InputError(
                f"The image is {w}x{h} pixels, but this diffusion model needs width and height that "
                f"are multiples of {m} (it halves the resolution {cfg.levels - 1} times). Resize or "
                f"crop to e.g. {max(m, w // m * m)}x{max(m, h // m * m)}, ideally to the model's own "
                f"{cfg.image_size}x{cfg.image_size}."
            )
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
        if t.ndim == 0 or t.numel() == 1:
            t = t.reshape(1).expand(b)
        if t.shape != (b,):
            raise InputError(f"Timesteps must be one per image (shape [{b}]); got shape {list(t.shape)}.")
        if y is not None:
            y = self._check_labels(y, b, x.device)
        out = self.unet(x, t, y)
        return out.to(x.dtype)

    def _check_labels(self, y, batch: int, device) -> torch.Tensor:
        if self.num_classes is None:
            raise InputError(
                "Class labels were given, but this diffusion model is unconditional. "
                "Leave the class label out (y=None)."
            )
        y = torch.as_tensor(y, device=device)
        if y.is_floating_point() or y.shape != (batch,):
            raise InputError(
                f"Class labels must be {batch} integers (one per image); got {y.dtype} of shape {list(y.shape)}."
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise InputError(
                f"Class labels must lie in 0..{self.num_classes - 1} for this model; "
                f"got {int(y.min())}..{int(y.max())}."
            )
        return y.long()
