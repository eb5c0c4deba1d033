"""Reading ADM UNet checkpoints from disk, safely and with errors a user can act on.

Files are read by ``model_file.read_model_file``, which never runs code from a model file.
The architecture comes from the file too: a config stored in its safetensors metadata
(``CONFIG_METADATA_KEY``, checked against the weights), else read off the weights' key names and
shapes (``config_from_state_dict``). Everything that can go wrong with a file someone picked in a dropdown
(missing, half downloaded, an HTML error page saved as .pt, a Stable Diffusion or CLIP checkpoint
in the wrong folder) becomes a ``CheckpointError`` that says what the file is and what is needed.
"""

from __future__ import annotations

import dataclasses
import json
import math

import torch

from ..downloads import ADM_256_UNCOND
from ..errors import CheckpointError, no_check
from ..model_file import flat_state_dict, read_model_file
from .diffusion_model import DiffusionModel
from .unet import UNetConfig, UNetModel

# safetensors metadata key under which we store a JSON UNetConfig (what the weights cannot tell).
CONFIG_METADATA_KEY = "blended_diffusion.config"
EXPECTED = (
    f"Expected an OpenAI guided-diffusion (ADM) UNet such as {ADM_256_UNCOND.filename} "
    f"({ADM_256_UNCOND.url}), placed in ComfyUI/models/{ADM_256_UNCOND.subfolder}/."
)


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(state_dict, metadata)``; metadata is only ever non-empty for .safetensors."""
    contents, metadata = read_model_file(path, "diffusion model file", EXPECTED)
    return flat_state_dict(contents, path, EXPECTED), metadata


def read_state_dict(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


# --- recognising what a file is --------------------------------------------------------------------


def _has(keys, *fragments):
    return any(any(f in k for f in fragments) for k in keys)


def identify_foreign(sd) -> str | None:
    """Name the kind of model a non-ADM state dict looks like, or None if it looks like an ADM UNet."""
    keys = list(sd)
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in keys):
        return "a Stable Diffusion (latent diffusion) checkpoint, which works on VAE latents, not pixels"
    if _has(keys, "transformer_blocks."):
        return "a Stable Diffusion / latent-diffusion UNet with text cross-attention, not a pixel-space ADM UNet"
    if _has(keys, "down_blocks.", "up_blocks.", "mid_block."):
        return "a 🤗 diffusers-format model (UNet2DModel / UNet2DConditionModel or a VAE), not the OpenAI layout"
    if any(k.startswith(("encoder.down.", "decoder.up.", "quant_conv.", "post_quant_conv.")) for k in keys):
        return "a VAE (image autoencoder)"
    if _has(keys, "token_embedding.weight", "visual.conv1.weight", "visual.proj", "text_projection",
            "text_model.", "vision_model."):
        return "a CLIP model (image/text encoder); it belongs in the CLIP loader, not the diffusion model loader"
    if any(k.startswith(("lin0.", "net.slice1.")) for k in keys):
        return "LPIPS perceptual-loss weights"
    if "input_blocks.0.0.weight" in sd and not _has(keys, "output_blocks."):
        return ("a guided-diffusion noisy-image classifier (e.g. 256x256_classifier.pt), not the "
                "diffusion model itself")
    if "input_blocks.0.0.weight" in sd and "out.2.weight" in sd:
        in_ch, out_ch = sd["input_blocks.0.0.weight"].shape[1], sd["out.2.weight"].shape[0]
        if in_ch == 6 and out_ch in (3, 6):
            return ("an ADM super-resolution upsampler (e.g. 64_256_upsampler.pt), which also needs a "
                    "low-resolution image as input")
        return None
    if any(k.startswith(("features.", "classifier.", "fc.", "layer1.")) for k in keys):
        return "an image classifier (torchvision-style VGG/ResNet)"
    return None


def _describe_keys(sd, n=4) -> str:
    keys = list(sd)
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --- reading the architecture back from the weights ----------------------------------------------

# Released OpenAI checkpoints whose attention settings differ from the 256/512 defaults, keyed by
# (model_channels, channel_mult, num_res_blocks, num_classes). Head settings leave no trace in the
# weights, so without this a 128x128 model would load fine and silently compute something else.
_KNOWN_ATTENTION = {
    # 64x64_diffusion.pt: --num_head_channels 64 --use_new_attention_order True
    (192, (1, 2, 3, 4), 3, 1000): dict(num_head_channels=64, use_new_attention_order=True),
    # 128x128_diffusion.pt: --num_heads 4 (num_head_channels left at -1)
    (256, (1, 1, 2, 3, 4), 2, 1000): dict(num_heads=4, num_head_channels=-1),
}


def _shape(sd, key, what):
    try:
        return tuple(sd[key].shape)
    except KeyError:
        raise CheckpointError(
            f"The weights have no '{key}' ({what}), so they are not a complete guided-diffusion "
            "(ADM) UNet. Use an OpenAI guided-diffusion checkpoint such as 256x256_diffusion_uncond.pt."
        ) from None


def _is_resblock(sd, prefix):
    return f"{prefix}.in_layers.2.weight" in sd


def config_from_state_dict(sd, num_head_channels: int | None = None) -> UNetConfig:
    """Infer the UNetConfig from key names and shapes (works on meta tensors too).

    The whole architecture can be read back from the weights except the attention head count:
    ``num_head_channels=None`` means 64 (the 64/256/512 releases), except for released layouts
    listed in ``_KNOWN_ATTENTION``; pass a number to force it.
    """
    in_ch = _shape(sd, "input_blocks.0.0.weight", "the input convolution")[1]
    model_channels = _shape(sd, "time_embed.0.weight", "the timestep embedding")[1]
    out_channels = _shape(sd, "out.2.weight", "the output convolution")[0]
    num_classes = sd["label_emb.weight"].shape[0] if "label_emb.weight" in sd else None
    num_res_blocks, resblock_updown, levels = _decoder_layout(sd)
    channel_mult, attention_ds = _level_widths(sd, levels, num_res_blocks, model_channels)
    emb_out = _shape(sd, "middle_block.0.emb_layers.1.weight", "the middle block")[0]
    mid_ch = _shape(sd, "middle_block.0.in_layers.2.weight", "the middle block")[0]
    fields = dict(
        image_size=4 * 2**levels,
        in_channels=in_ch,
        model_channels=model_channels,
        out_channels=out_channels,
        num_res_blocks=num_res_blocks,
        attention_ds=attention_ds,
        channel_mult=channel_mult,
        num_classes=num_classes,
        use_scale_shift_norm=emb_out == 2 * mid_ch,
        resblock_updown=resblock_updown,
        num_head_channels=64,
        num_heads=1,
    )
    return UNetConfig(**_with_heads(fields, num_head_channels))


def _count_blocks(sd, prefix: str) -> int:
    n = 0
    while any(k.startswith(f"{prefix}.{n}.") for k in sd):
        n += 1
    return n


def _upsampler(sd, j: int) -> str | None:
    """"resblock" or "conv" when output block ``j`` ends with an upsampler, else None: upsamplers are
    either a ResBlock after the block's first layer or an Upsample conv."""
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith(f"output_blocks.{j}.")})
    for layer in layers[1:]:
        p = f"output_blocks.{j}.{layer}"
        if _is_resblock(sd, p):
            return "resblock"
        if f"{p}.conv.weight" in sd:
            return "conv"
    return None


def _decoder_layout(sd) -> tuple[int, bool, int]:
    """(num_res_blocks, resblock_updown, levels) from the output blocks: the first one carrying an
    upsampler ends the deepest level, so its index is num_res_blocks, and its kind says how the
    model resamples. A block count that no layout produces means a damaged or foreign file."""
    n_out = _count_blocks(sd, "output_blocks")
    if n_out == 0:
        _shape(sd, "output_blocks.0.0.in_layers.2.weight", "the decoder half")
    ups = [(j, kind) for j in range(n_out) if (kind := _upsampler(sd, j))]
    if ups:
        num_res_blocks = ups[0][0]
        resblock_updown = ups[0][1] == "resblock"
    else:  # a single level: no resampling at all
        num_res_blocks, resblock_updown = n_out - 1, True
    levels = n_out // (num_res_blocks + 1)
    if num_res_blocks < 1 or levels * (num_res_blocks + 1) != n_out:
        raise CheckpointError(
            f"The weights have {n_out} decoder blocks, which no guided-diffusion UNet layout "
            "produces; the file is damaged or from a different architecture."
        )
    return num_res_blocks, resblock_updown, levels


def _level_widths(sd, levels: int, num_res_blocks: int, model_channels: int) -> tuple[tuple, tuple]:
    """(channel_mult, attention_ds): each level's width relative to ``model_channels``, and the
    downsample factors of the levels whose first encoder block has attention."""
    channel_mult, attention_ds = [], []
    for level in range(levels):
        first = 1 + level * (num_res_blocks + 1)
        ch = _shape(sd, f"input_blocks.{first}.0.in_layers.2.weight", "a residual block")[0]
        channel_mult.append(ch / model_channels)
        if f"input_blocks.{first}.1.qkv.weight" in sd:
            attention_ds.append(2**level)
    return tuple(channel_mult), tuple(attention_ds)


def _with_heads(fields: dict, num_head_channels: int | None) -> dict:
    """``fields`` with the attention heads, which leave no trace in the weights: the caller's
    ``num_head_channels``, else a released layout's own (``_KNOWN_ATTENTION``), else 64 channels."""
    if num_head_channels is not None:
        return {**fields, "num_head_channels": num_head_channels}
    cfg = UNetConfig(**fields)  # channel_mult as the config writes it: the table's key
    known = (cfg.model_channels, cfg.channel_mult, cfg.num_res_blocks, cfg.num_classes)
    return {**fields, **_KNOWN_ATTENTION.get(known, {})}


# --- building the model ----------------------------------------------------------------------------


def config_for(sd, metadata: dict, path) -> UNetConfig:
    """The architecture: the config stored in safetensors metadata if any, else read off the keys."""
    if CONFIG_METADATA_KEY in metadata:
        return config_from_metadata(metadata[CONFIG_METADATA_KEY], sd, path)
    foreign = identify_foreign(sd)
    if foreign is not None:
        raise CheckpointError(f"'{path}' looks like {foreign}. {EXPECTED}")
    if "input_blocks.0.0.weight" not in sd:
        raise CheckpointError(
            f"'{path}' is not a guided-diffusion (ADM) UNet: it has none of the keys input_blocks.*, "
            f"middle_block.*, output_blocks.*, out.* (its keys start: {_describe_keys(sd)}). {EXPECTED}"
        )
    try:
        return config_from_state_dict(sd)
    except CheckpointError as e:
        raise CheckpointError(f"'{path}': {e}") from None


# What a stored config may say. A file is untrusted input: a wrong type or an absurd size must be
# refused before anything is built (400 res blocks would take seconds of CPU and gigabytes).
_INT_FIELDS = {"image_size": (8, 4096), "in_channels": (1, 64), "model_channels": (32, 4096),
               "out_channels": (1, 128), "num_res_blocks": (1, 16), "num_heads": (1, 256)}
_BOOL_FIELDS = ("use_scale_shift_norm", "resblock_updown", "use_new_attention_order")
# Fields the weights determine: the stored config must agree with them.
_STRUCTURAL = ("in_channels", "model_channels", "out_channels", "num_res_blocks", "channel_mult",
               "attention_ds", "num_classes", "use_scale_shift_norm", "resblock_updown")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _metadata_problems(fields: dict) -> list[str]:
    problems = []
    for name, (lo, hi) in _INT_FIELDS.items():
        if name in fields and not (_is_int(fields[name]) and lo <= fields[name] <= hi):
            problems.append(f"{name} must be a whole number from {lo} to {hi}, not {fields[name]!r}")
    for name in _BOOL_FIELDS:
        if name in fields and not isinstance(fields[name], bool):
            problems.append(f"{name} must be true or false, not {fields[name]!r}")
    heads = fields.get("num_head_channels", 64)
    if not (_is_int(heads) and (heads == -1 or 1 <= heads <= 4096)):
        problems.append(f"num_head_channels must be -1 or a whole number from 1 to 4096, not {heads!r}")
    classes = fields.get("num_classes")
    if classes is not None and not (_is_int(classes) and 1 <= classes <= 1_000_000):
        problems.append(f"num_classes must be null or a whole number from 1 to 1000000, not {classes!r}")
    mult = fields.get("channel_mult", (1,))
    if not (isinstance(mult, list | tuple) and 1 <= len(mult) <= 8 and all(
            isinstance(m, int | float) and not isinstance(m, bool) and math.isfinite(m) and 0 < m <= 64 for m in mult)):
        problems.append(f"channel_mult must be a list of 1 to 8 positive numbers up to 64, not {mult!r}")
    else:
        attention = fields.get("attention_ds", ())
        allowed = [2**i for i in range(len(mult))]
        if not (isinstance(attention, list | tuple) and all(_is_int(d) and d in allowed for d in attention)):
            problems.append(f"attention_ds must list downsample factors from {allowed}, not {attention!r}")
    return problems


def config_from_metadata(text: str, sd, path) -> UNetConfig:
    """The UNetConfig stored in a .safetensors file, checked for types, ranges and agreement with the
    weights before anything is built."""
    fix = (f"Remove the '{CONFIG_METADATA_KEY}' metadata entry to let the architecture be read from the "
           "weights, or re-save the file with a correct config.")
    try:
        fields = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"'{path}': the '{CONFIG_METADATA_KEY}' metadata is not a valid UNet config "
                              f"(not JSON: {e}). {fix}") from None
    if not isinstance(fields, dict):
        raise CheckpointError(f"'{path}': the '{CONFIG_METADATA_KEY}' metadata is not a valid UNet config "
                              f"(a JSON object is needed, not {type(fields).__name__}). {fix}")
    problems = _metadata_problems(fields)
    if problems:
        raise CheckpointError(f"'{path}': the '{CONFIG_METADATA_KEY}' metadata is not a valid UNet config: "
                              + "; ".join(problems[:4]) + f". {fix}")
    config = _stored_config(text)
    if config.image_size % config.size_multiple:
        raise CheckpointError(f"'{path}': the '{CONFIG_METADATA_KEY}' metadata is not a valid UNet config: "
                              f"image_size {config.image_size} is not a multiple of {config.size_multiple} "
                              f"(one halving per level of channel_mult). {fix}")
    try:
        inferred = config_from_state_dict(sd)
    except CheckpointError as e:
        raise CheckpointError(f"'{path}': {e}") from None
    differ = [f"{name} is {getattr(config, name)!r} there but {getattr(inferred, name)!r} in the weights"
              for name in _STRUCTURAL if getattr(config, name) != getattr(inferred, name)]
    if differ:
        raise CheckpointError(
            f"The weights in '{path}' do not fit the UNet architecture that its '{CONFIG_METADATA_KEY}' "
            f"metadata describes (wrong shape: {'; '.join(differ[:3])}). {fix}"
        )
    return config


def _stored_config(text: str) -> UNetConfig:
    """The config of a stored JSON object whose values passed ``_metadata_problems``; unknown field
    names are reported here, with the names a config may have."""
    try:
        return UNetConfig.from_json(text)
    except (TypeError, ValueError) as e:
        names = ", ".join(f.name for f in dataclasses.fields(UNetConfig))
        raise CheckpointError(
            f"The '{CONFIG_METADATA_KEY}' metadata is not a valid UNet config ({e}). "
            f"It must be a JSON object with some of: {names}. Remove the metadata entry to let "
            "the architecture be read from the weights."
        ) from None


def _check_layout(model: torch.nn.Module, sd, path):
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {expected[k]}" for k in expected
             if k in sd and tuple(sd[k].shape) != expected[k]]
    not_float = [k for k in expected if k in sd and not sd[k].is_floating_point()]
    if not (missing or unexpected or wrong or not_float):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape (file vs model)", wrong), ("not floating point", not_float)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            parts.append(f"{label}: {shown}")
    raise CheckpointError(
        f"The weights in '{path}' do not fit the UNet architecture they describe ("
        + "; ".join(parts)
        + "). The file is incomplete, edited, or stores a wrong '"
        + CONFIG_METADATA_KEY
        + f"' metadata entry. {EXPECTED}"
    )


def load_diffusion_model(path, device="cpu", dtype: torch.dtype = torch.float32, check=no_check) -> DiffusionModel:
    """Read a checkpoint, infer its architecture, and return the frozen model on ``device``.
    ``check`` runs between the phases that take seconds on a 2 GB file (a caller's Cancel)."""
    sd, metadata = read_checkpoint(path)
    check()
    config = config_for(sd, metadata, path)
    try:
        with torch.device("meta"):  # no random init of 550M parameters that are overwritten anyway
            unet = UNetModel(config)
    except ValueError as e:
        raise CheckpointError(f"'{path}': the stored UNet config cannot be built ({e}).") from None
    _check_layout(unet, sd, path)
    unet.load_state_dict(sd, strict=True, assign=True)
    check()
    unet.to(device=device, dtype=dtype)
    return DiffusionModel(unet, config)
