"""Reading ADM UNet checkpoints from disk, safely and with errors a user can act on.

Pickled files are opened with ``weights_only=True``: a model file is data, and loading one must
never run code from it. Everything that can go wrong with a file someone picked in a dropdown
(missing, half downloaded, an HTML error page saved as .pt, a Stable Diffusion or CLIP checkpoint
in the wrong folder) becomes a ``CheckpointError`` that says what the file is and what is needed.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from .diffusion_model import DiffusionModel
from .errors import CheckpointError
from .unet import CONFIG_METADATA_KEY, UNetConfig, UNetModel, config_from_state_dict
from .weights import ADM_256_UNCOND

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")

EXPECTED = (
    f"Expected an OpenAI guided-diffusion (ADM) UNet such as {ADM_256_UNCOND.filename} "
    f"({ADM_256_UNCOND.url}), placed in ComfyUI/models/{ADM_256_UNCOND.subfolder}/."
)


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(state_dict, metadata)``; metadata is only ever non-empty for .safetensors."""
    if path is None or str(path).strip() == "":
        raise CheckpointError(f"No diffusion model file was given. {EXPECTED}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"Model file not found: '{path}'. Put the file there or pick an existing one. {EXPECTED}"
        )
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a model file. {EXPECTED}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CheckpointError(
            f"'{path.name}' has the extension '{path.suffix}', which is not a model file format this "
            f"loader reads. Use one of: {', '.join(SUFFIXES)}."
        )
    _reject_non_weights(path)
    if suffix == ".safetensors":
        sd, metadata = _read_safetensors(path)
    else:
        sd, metadata = _read_pickle(path), {}
    return _normalise(sd, path), metadata


def read_state_dict(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def _reject_non_weights(path: Path):
    """Catch the usual wrong files by their first bytes: an empty or HTML/XML error download,
    or a Git LFS pointer cloned without LFS."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(
            f"'{path}' is empty (0 bytes); the download probably failed. Delete it and download it again."
        )
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<error")):
        raise CheckpointError(
            f"'{path}' is a web page or XML error message saved under a model's name, not model "
            "weights: the download failed. Delete it and download the file again."
        )
    if stripped.startswith(b"version https://git-lfs"):
        raise CheckpointError(
            f"'{path}' is a Git LFS pointer, not the weights. Fetch the real file (git lfs pull) or "
            "download it directly."
        )


def _read_safetensors(path: Path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path), device="cpu"), metadata
    except Exception as e:  # safetensors raises its own error types for every header problem
        raise CheckpointError(
            f"'{path}' could not be read as a .safetensors file ({type(e).__name__}: {e}). The file is "
            "damaged or incomplete (an interrupted download?); download it again."
        ) from None


def _read_pickle(path: Path):
    # mmap keeps a 2 GB checkpoint out of RAM until it is used; only the zip format supports it.
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        message = str(e)
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
        if unsafe:
            raise CheckpointError(
                f"'{path}' contains pickled Python objects besides weights (it refers to "
                f"'{unsafe.group(1)}'), and loading it could run code from the file, so it is refused. "
                "Save just the model's state dict (torch.save(model.state_dict(), ...)) or convert it "
                "to .safetensors."
            ) from None
        raise CheckpointError(
            f"'{path}' could not be read as a PyTorch checkpoint ({type(e).__name__}: "
            f"{_first_sentence(message)}). The file is damaged or incomplete (an interrupted "
            "download?), or not a PyTorch file at all; download it again."
        ) from None


def _first_sentence(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "no details"
    return text.split(". ")[0][:200]


def _normalise(obj, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap training-checkpoint containers and DataParallel prefixes down to a flat state dict."""
    for _ in range(3):
        if isinstance(obj, dict) and not _all_tensors(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        what = type(obj).__name__
        if isinstance(obj, dict):
            odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
            what = f"a dict whose entries {odd} are not tensors" if obj else "an empty dict"
        raise CheckpointError(
            f"'{path}' does not hold a model state dict (name -> tensor); it holds {what}. {EXPECTED}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


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


# --- building the model ----------------------------------------------------------------------------


def config_for(sd, metadata: dict, path) -> UNetConfig:
    """The architecture: the config stored in safetensors metadata if any, else read off the keys."""
    if CONFIG_METADATA_KEY in metadata:
        return UNetConfig.from_json(metadata[CONFIG_METADATA_KEY])
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


def load_diffusion_model(path, device="cpu", dtype: torch.dtype = torch.float32) -> DiffusionModel:
    """Read a checkpoint, infer its architecture, and return the frozen model on ``device``."""
    sd, metadata = read_checkpoint(path)
    config = config_for(sd, metadata, path)
    try:
        with torch.device("meta"):  # no random init of 550M parameters that are overwritten anyway
            unet = UNetModel(config)
    except ValueError as e:
        raise CheckpointError(f"'{path}': the stored UNet config cannot be built ({e}).") from None
    _check_layout(unet, sd, path)
    unet.load_state_dict(sd, strict=True, assign=True)
    unet.to(device=device, dtype=dtype)
    return DiffusionModel(unet, config)
