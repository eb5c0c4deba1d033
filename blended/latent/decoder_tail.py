"""The trainable part of a background reconstruction: either the decoder's last blocks on a window
around the mask (fast) or, for a decoder of unknown layout, a whole private copy (the paper's way).

Why a tail: tuning the whole decoder costs a full forward and backward per Adam step, more than a
UNet step. The seam only needs the last full-resolution blocks to move: they map features to
colours, and colour offsets are what a VAE gets wrong. So the frozen part (everything up to the
first tuned block) runs once, under no_grad, on the shared model itself, and each step runs only the
tail's copy, forward and backward.

Why a window: with its GroupNorm statistics frozen at their full-image values (taken with the
original weights), the tail has no global operation left (the VAE's up blocks have no attention),
only convolutions, so a window of features plus the tail's receptive field decodes exactly what the
full image decodes there. The window is the mask's box grown by the loss band; everything outside
it is outside the mask and the exact paste replaces it anyway. At the start the tail reproduces the
plain decode in the window (to float rounding), so the optimisation starts from the plain decode.

Recognised layout (duck-typed, no ComfyUI import): a first stage with ``decode(z)`` and ``decoder``
holding LDM's ``up[0].block`` (ResNet blocks called ``block(h, None)``), ``norm_out``,
``conv_out`` and ``tanh_out`` with no attention at full resolution: the SD1.x/2.x, SDXL, SD3 and Flux
VAEs in ComfyUI and the original LDM code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..masks import dilate
from .crop_stitch import cut_by_vae, vae_cut_cell


@dataclass
class Tunable:
    """What one image's tuning needs: the parameters to train, the plain decode [1,3,H,W] of the
    whole image, the window (y0, y1, x0, x1) the loss and ``decode`` cover, and ``decode()`` giving
    that window's pixels with the current parameters. ``tuned_blocks`` None: the whole decoder."""

    params: list[torch.nn.Parameter]
    plain: torch.Tensor
    window: tuple[int, int, int, int]
    decode: Callable[[], torch.Tensor]
    tuned_blocks: int | None


class _Stop(Exception):
    """Raised by the capture hook so the shared decoder stops right after the frozen part."""


class FrozenGroupNorm(torch.nn.Module):
    """GroupNorm with fixed per-group mean and inverse std (trainable affine): a local operator, so
    a window decodes what the full image decodes there."""

    def __init__(self, norm: torch.nn.GroupNorm, mean: torch.Tensor, rstd: torch.Tensor):
        super().__init__()
        self.num_groups = norm.num_groups
        self.weight = torch.nn.Parameter(norm.weight.detach().clone().float())
        self.bias = torch.nn.Parameter(norm.bias.detach().clone().float())
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("rstd", rstd.detach().clone().float())

    def forward(self, x):
        n, c, h, w = x.shape
        g = x.reshape(n, self.num_groups, c // self.num_groups, h, w)
        g = (g - self.mean[:, :, None, None, None]) * self.rstd[:, :, None, None, None]
        return g.reshape(n, c, h, w) * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class DecoderTail(torch.nn.Module):
    """The last ``blocks`` of the decoder's full-resolution level, its output norm, SiLU and conv."""

    def __init__(self, blocks, norm_out, conv_out, tanh_out: bool):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.norm_out, self.conv_out, self.tanh_out = norm_out, conv_out, tanh_out

    def forward(self, h):
        for block in self.blocks:
            h = block(h, None)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h


def tail_layout(first_stage) -> tuple[object, int] | None:
    """(the LDM decoder, number of full-resolution blocks) if ``first_stage`` has the layout, else None."""
    dec = getattr(first_stage, "decoder", None)
    up = getattr(dec, "up", None)
    if not callable(getattr(first_stage, "decode", None)) or up is None or not len(up):
        return None
    level = up[0]
    if not hasattr(level, "block") or len(getattr(level, "attn", ())) or not all(
            hasattr(dec, a) for a in ("norm_out", "conv_out")):
        return None
    return dec, len(level.block)


def _plain_module(module: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy whose convolutions and norms are torch's own classes (no cast-on-call
    wrappers that could cut the gradient), with fresh, trainable tensors."""
    twin = copy.deepcopy(module)
    for name, child in list(twin.named_modules()):
        if isinstance(child, torch.nn.Conv2d) and type(child) is not torch.nn.Conv2d:
            plain = torch.nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                    child.padding, child.dilation, child.groups, child.bias is not None,
                                    child.padding_mode, device="meta")
        elif isinstance(child, torch.nn.GroupNorm) and type(child) is not torch.nn.GroupNorm:
            plain = torch.nn.GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine, device="meta")
        else:
            continue
        plain = plain.to_empty(device=child.weight.device)
        plain.load_state_dict({k: v.detach().clone() for k, v in child.state_dict().items()})
        _set_child(twin, name, plain)
    for p in twin.parameters():
        p.data = p.data.detach().clone().float()
    return twin


def _set_child(root: torch.nn.Module, dotted: str, new: torch.nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _freeze_norms(tail: DecoderTail, features: torch.Tensor) -> torch.Tensor:
    """Runs ``tail`` once on the full ``features``, records every GroupNorm's input statistics,
    swaps the norms for ``FrozenGroupNorm`` with them and returns that full decode (the plain one)."""
    stats = {}

    def hook(name):
        def record(module, args):
            x = args[0]
            g = x.reshape(x.shape[0], module.num_groups, -1)
            var, mean = torch.var_mean(g, dim=-1, unbiased=False)
            stats[name] = (module, mean, torch.rsqrt(var + module.eps))
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in tail.named_modules()
               if isinstance(m, torch.nn.GroupNorm)]
    try:
        with torch.no_grad():
            plain = tail(features)
    finally:
        for h in handles:
            h.remove()
    for name, (module, mean, rstd) in stats.items():
        _set_child(tail, name, FrozenGroupNorm(module, mean, rstd))
    return plain


def check_size(decoded_hw, source_hw) -> None:
    """The decode must cover the source; a source a VAE had to cut (not a multiple of its cell) is
    named as that, since the fix is the crop's multiple and not another image."""
    if tuple(decoded_hw) != tuple(source_hw):
        said = (f"the latent decodes to {decoded_hw[-1]}x{decoded_hw[-2]} px but the source image is "
                f"{source_hw[-1]}x{source_hw[-2]}")
        cell = vae_cut_cell(tuple(source_hw[-2:]), tuple(decoded_hw[-2:]), cells=False)
        if cell:
            raise InputError(f"{said}: " + cut_by_vae("the source image", tuple(source_hw[-2:]), cell))
        raise InputError(f"{said}: give the source (and mask) at the size the latent was encoded from "
                         "(the Blended Latent Crop outputs).")


def receptive_margin(module: torch.nn.Module) -> int:
    """Pixels a window must extend past the region it decodes exactly: the convolutions' radii
    summed (an upper bound; a parallel shortcut counts as if it were in series)."""
    r = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            r += max(((k - 1) // 2) * d for k, d in zip(m.kernel_size, m.dilation))
    return r


def loss_window(hard_mask: torch.Tensor, band_px: int) -> tuple[int, int, int, int]:
    """The box (y0, y1, x0, x1) of the mask grown by ``band_px``, clipped to the image."""
    grown = dilate(hard_mask, band_px) if band_px > 0 else hard_mask
    ys, xs = torch.nonzero(grown[0, 0] > 0, as_tuple=True)
    if not len(ys):
        h, w = hard_mask.shape[-2:]
        return 0, h, 0, w
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def tail_tunable(first_stage, z: torch.Tensor, hard_mask: torch.Tensor, tuned_blocks: int, band_px: int,
                 device) -> Tunable | None:
    """The fast reconstruction's ``Tunable`` for ``first_stage`` (None if its layout is unknown):
    frozen part once on the shared model, the last ``tuned_blocks`` full-resolution blocks (all of
    them if fewer) plus ``norm_out``/``conv_out`` as a private float32 copy on ``device``, run on the
    mask's box grown by ``band_px`` plus the tail's receptive field."""
    layout = tail_layout(first_stage)
    if layout is None:
        return None
    dec, n_blocks = layout
    k = max(n_blocks - tuned_blocks, 0)
    first = dec.up[0].block[k] if k < n_blocks else dec.norm_out
    captured = {}

    def capture(module, args):
        captured["h"] = args[0]
        raise _Stop

    ref = next(first_stage.parameters(), None)
    handle = first.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            first_stage.decode(z.to(device=ref.device, dtype=ref.dtype) if ref is not None else z)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "h" not in captured:
        return None  # the decoder never reached its last level: not the layout we know
    with torch.inference_mode(False):
        features = captured["h"].detach().clone().to(device=device, dtype=torch.float32)
        tail = _plain_module(DecoderTail(list(dec.up[0].block[k:]), dec.norm_out, dec.conv_out,
                                         bool(getattr(dec, "tanh_out", False)))).to(device)
        check_size(features.shape[-2:], hard_mask.shape[-2:])
        plain = _freeze_norms(tail, features).float()
        tail.requires_grad_(True)
    y0, y1, x0, x1 = loss_window(hard_mask, band_px)
    r = receptive_margin(tail)
    h, w = features.shape[-2:]
    py0, py1, px0, px1 = max(y0 - r, 0), min(y1 + r, h), max(x0 - r, 0), min(x1 + r, w)
    patch = features[..., py0:py1, px0:px1]

    def decode():
        return tail(patch)[..., y0 - py0 : y1 - py0, x0 - px0 : x1 - px0].float()

    return Tunable(list(tail.parameters()), plain, (y0, y1, x0, x1), decode, n_blocks - k)


def whole_tunable(decoder: torch.nn.Module, z: torch.Tensor, source_hw) -> Tunable:
    """The paper's way for any decoder: ``decoder`` (a private copy, see ``private_decoder``) is
    trained whole and run on the whole image at every step."""
    params = [p for p in decoder.parameters() if p.requires_grad]
    ref = params[0] if params else z
    decode_fn = decoder.decode if callable(getattr(decoder, "decode", None)) else decoder
    zz = z.detach().clone().to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        plain = decode_fn(zz).float()
    h, w = plain.shape[-2:]
    check_size((h, w), source_hw)
    return Tunable(params, plain, (0, h, 0, w), lambda: decode_fn(zz).float(), None)
