"""The ADM UNet of Dhariwal & Nichol, "Diffusion Models Beat GANs" (openai/guided-diffusion).

A compact re-implementation whose ``state_dict`` has exactly OpenAI's key layout, so the released
checkpoints (``256x256_diffusion_uncond.pt``, ``512x512_diffusion.pt``, ...) load with
``strict=True``. What differs from the reference is only what we never need: no dropout, no
in-module fp16 conversion (autocast is the caller's business) and no 1-D/3-D variants; gradient
checkpointing is non-reentrant (see ``UNetModel.checkpointing``). Attention runs through
``scaled_dot_product_attention``; it is the same arithmetic as OpenAI's einsum version (which
scales q and k by ``ch**-0.25`` each).

This file is the architecture only: reading a config back from a state dict or a file's metadata is
checkpoint loading (``checkpoint.config_from_state_dict``, ``checkpoint.CONFIG_METADATA_KEY``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of OpenAI's ``UNetModel`` (names follow guided-diffusion).

    ``attention_ds`` holds downsample factors (1 = full resolution), not resolutions: OpenAI's
    ``attention_resolutions="32,16,8"`` at image size 256 is ``attention_ds=(8, 16, 32)``.
    ``num_head_channels`` wins over ``num_heads`` unless it is -1, as in guided-diffusion.
    """

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 256
    out_channels: int = 6
    num_res_blocks: int = 2
    attention_ds: tuple[int, ...] = (8, 16, 32)
    channel_mult: tuple[float, ...] = (1, 1, 2, 2, 4, 4)
    num_classes: int | None = None
    num_head_channels: int = 64
    num_heads: int = 1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    use_new_attention_order: bool = False

    def __post_init__(self):
        object.__setattr__(self, "attention_ds", tuple(int(d) for d in self.attention_ds))
        object.__setattr__(self, "channel_mult", tuple(_plain_number(m) for m in self.channel_mult))

    @property
    def learn_sigma(self) -> bool:
        """True when the model also predicts the variance interpolation (6 output channels)."""
        return self.out_channels == 2 * self.in_channels

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per extra level)."""
        return 2 ** (self.levels - 1)

    def channels(self, mult: float) -> int:
        # OpenAI truncates with int(); the epsilon only absorbs float error in an inferred mult.
        return int(mult * self.model_channels + 1e-6)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "UNetConfig":
        """The config ``to_json`` wrote; TypeError or ValueError for unknown fields or unfit values."""
        return cls(**json.loads(text))


def _plain_number(m):
    m = float(m)
    return int(m) if m.is_integer() else m


# --- building blocks -----------------------------------------------------------------------------


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the weights' dtype, as guided-diffusion does."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x):
        return F.group_norm(
            x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, cos half first like OpenAI."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding; optionally resamples by 2.

    Module names (in_layers / emb_layers / out_layers / skip_connection, with the same
    Sequential indices) are OpenAI's, because they are the checkpoint's keys. Index 2 of
    ``out_layers`` was OpenAI's dropout; it is kept as an identity so the conv stays at index 3.
    """

    def __init__(self, channels, emb_channels, out_channels=None, use_scale_shift_norm=False,
                 up=False, down=False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.resample = "up" if up else "down" if down else None
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Identity(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x):
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    # Set by UNetModel.checkpointing: inside a checkpointed block, also recompute each
    # GroupNorm+SiLU in the backward pass, so only the norm's input is kept, not its output.
    checkpoint_norms = False

    def _in_norm_act(self, x):
        return self.in_layers[1](self.in_layers[0](x))

    def _out_norm_act(self, h, scale, shift):
        return self.out_layers[1](self.out_layers[0](h) * (1 + scale) + shift)

    def forward(self, x, emb):
        fine = self.checkpoint_norms and torch.is_grad_enabled()
        # Resampling happens between the norm/activation and the conv, on both branches.
        h = checkpoint(self._in_norm_act, x, use_reentrant=False) if fine else self._in_norm_act(x)
        h = self.in_layers[2](self._resample(h))
        x = self._resample(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            if fine:
                h = checkpoint(self._out_norm_act, h, scale, shift, use_reentrant=False)
            else:
                h = self._out_norm_act(h, scale, shift)
            h = self.out_layers[3](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions, with OpenAI's two qkv channel orders.

    Legacy order (the released checkpoints except 64x64): qkv channels are grouped per head as
    [q, k, v]; new order: [all q | all k | all v], each split into heads.
    """

    def __init__(self, channels, num_heads=1, num_head_channels=-1, new_order=False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(
                    f"attention width {channels} is not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads {self.num_heads}")
        self.new_order = new_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length = qkv.shape[-1]
        ch = c // self.num_heads
        if self.new_order:
            qkv = qkv.reshape(b, 3, self.num_heads, ch, length).transpose(0, 1)
        else:
            qkv = qkv.reshape(b, self.num_heads, 3, ch, length).permute(2, 0, 1, 3, 4)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(0))  # [b, heads, length, ch]
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential that hands the timestep embedding to the ResBlocks in it."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


# --- the UNet ------------------------------------------------------------------------------------


class UNetModel(nn.Module):
    """OpenAI's ADM UNet: ``forward(x, timesteps, y=None) -> [B, out_channels, H, W]``.

    ``timesteps`` are the original (1000-step) timesteps, float. ``y`` holds class labels for a
    class-conditional model; ``None`` leaves the class embedding out (a zero class vector).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        emb_dim = cfg.model_channels * 4
        res = dict(emb_channels=emb_dim, use_scale_shift_norm=cfg.use_scale_shift_norm)
        attn = dict(num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
                    new_order=cfg.use_new_attention_order)

        self.time_embed = nn.Sequential(
            nn.Linear(cfg.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if cfg.num_classes is not None:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)

        ch = input_ch = cfg.channels(cfg.channel_mult[0])
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, out_channels=cfg.channels(mult), **res)]
                ch = cfg.channels(mult)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, **attn))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != cfg.levels - 1:
                down = ResBlock(ch, down=True, **res) if cfg.resblock_updown else Downsample(ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, **res), AttentionBlock(ch, **attn), ResBlock(ch, **res)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), out_channels=cfg.channels(mult), **res)]
                ch = cfg.channels(mult)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, **attn))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, up=True, **res) if cfg.resblock_updown else Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1)
        )

    @property
    def checkpointing(self) -> bool:
        """Gradient checkpointing: one extra forward of each block instead of keeping its insides
        for the backward pass (the sampler differentiates through the UNet once per step). It is
        non-reentrant, so ``torch.autograd.grad`` works and inputs need not require grad."""
        return getattr(self, "_checkpointing", False)

    @checkpointing.setter
    def checkpointing(self, enabled: bool) -> None:
        self._checkpointing = bool(enabled)
        for module in self.modules():
            if isinstance(module, ResBlock):
                module.checkpoint_norms = bool(enabled)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None):
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))
        if y is not None:
            emb = emb + self.label_emb(y)
        h = x.to(dtype)
        if self.checkpointing and torch.is_grad_enabled():
            return self._checkpointed_forward(h, emb)
        skips = []
        for module in self.input_blocks:
            h = module(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def _checkpointed_forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The same arithmetic, with each block recomputed in the backward pass.

        What stays alive between blocks is only what the decoder needs anyway: the skip tensors
        and each block's output. The concatenation of a decoder block's input with its skip
        (twice the block's width at full resolution) happens inside the checkpointed function,
        so it is never kept; nor are the GroupNorm/SiLU/conv intermediates of the output head.
        """
        skips = []
        for module in self.input_blocks:
            h = checkpoint(module, h, emb, use_reentrant=False)
            skips.append(h)
        h = checkpoint(self.middle_block, h, emb, use_reentrant=False)
        for module in self.output_blocks:
            h = checkpoint(_decode, module, h, skips.pop(), emb, use_reentrant=False)
        return checkpoint(self.out, h, use_reentrant=False)


def _decode(module: TimestepEmbedSequential, h: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return module(torch.cat([h, skip], dim=1), emb)
