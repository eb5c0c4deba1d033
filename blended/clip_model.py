"""CLIP for guidance and ranking: OpenAI's ViT-B/16 through open_clip.

The paper guides with OpenAI's ViT-B/16, which was trained with QuickGELU; building it with
plain GELU silently degrades guidance, so both paths here (hub tag and local file) build the
QuickGELU variant. Local files may be in OpenAI's or open_clip's key layout (they are the same
names); the architecture is read off the state dict, so a tiny test model in that layout loads
through exactly the code path a real one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .downloads import downloads_disabled
from .errors import CheckpointError
from .model_file import SUFFIXES, flat_state_dict, read_model_file

HUB_DEFAULT = "ViT-B-16-quickgelu:openai"
# The pack's own folder under ComfyUI/models/. Not models/clip: that is the legacy alias of
# models/text_encoders, whose files (clip_l, t5xxl, ...) this loader cannot use and whose loaders
# cannot use OpenAI's ViT-B-16.pt.
CLIP_FOLDER = "blended_clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SUFFIXES = SUFFIXES


@dataclass
class ClipBundle:
    """A frozen CLIP model with what is needed to feed it: tokenizer, input size and normalisation."""

    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    name: str = ""

    @property
    def context_length(self) -> int:
        return int(getattr(self.model, "context_length", 77))

    def to(self, device) -> "ClipBundle":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        return (images01 - mean) / std

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        """Embeddings of [0,1] images already at ``image_size``; differentiable."""
        return self.model.encode_image(self.normalize(images01)).float()

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device)
        return self.model.encode_text(tokens).float()


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval().requires_grad_(False)
    return model.float()


def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-16-quickgelu")


CLIP_EXPECTED = (
    "Put OpenAI's ViT-B-16.pt or open_clip's open_clip_model.safetensors (hub repo "
    "timm/vit_base_patch16_clip_224.openai) into models/" + CLIP_FOLDER + "/."
)


def read_clip_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """State dict of a local CLIP file: safetensors, a weights-only pickle, or OpenAI's TorchScript
    archive, read by ``model_file`` without running any of it."""
    path = Path(path)
    contents, _ = read_model_file(path, "CLIP file", CLIP_EXPECTED)
    sd = flat_state_dict(contents, path, CLIP_EXPECTED) if isinstance(contents, dict) else contents
    if not isinstance(sd, dict) or "visual.proj" not in sd or "token_embedding.weight" not in sd:
        looks = "a diffusion UNet" if isinstance(sd, dict) and "input_blocks.0.0.weight" in sd else "not a CLIP ViT"
        raise CheckpointError(
            f"'{path.name}' is {looks}: expected a CLIP ViT state dict (keys like 'visual.proj', "
            "'token_embedding.weight'), e.g. OpenAI's ViT-B-16.pt. Put diffusion models in "
            f"models/blended_diffusion/ and CLIP files in models/{CLIP_FOLDER}/."
        )
    # A TorchScript archive also carries the causal attention mask, which CLIP rebuilds itself.
    return {k.removeprefix("module."): v for k, v in sd.items() if k != "attn_mask"}


def clip_from_state_dict(sd: dict[str, torch.Tensor], name: str = "") -> ClipBundle:
    from open_clip.model import build_model_from_openai_state_dict

    try:
        model = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None)
    except Exception as exc:
        raise CheckpointError(
            f"CLIP file '{name}' does not match a CLIP ViT layout ({type(exc).__name__}: {exc})."
        ) from exc
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    return ClipBundle(_freeze(model), _tokenizer(), image_size, name=name)


def _from_hub(tag: str) -> ClipBundle:
    import open_clip

    arch, _, pretrained = tag.partition(":")
    try:
        model = open_clip.create_model(arch, pretrained=pretrained or "openai", device="cpu", require_pretrained=True)
    except Exception as exc:
        offline = " (downloads are off: HF_HUB_OFFLINE/BLENDED_OFFLINE)" if downloads_disabled() else ""
        raise CheckpointError(
            f"CLIP weights '{tag}' could not be fetched{offline}: "
            f"{type(exc).__name__}: {str(exc)[:200]}. Either go online once (they are cached), or download "
            "OpenAI's ViT-B-16.pt (or open_clip_model.safetensors from timm/vit_base_patch16_clip_224.openai) "
            f"into models/{CLIP_FOLDER}/ and choose that file in the CLIP loader."
        ) from exc
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipBundle(_freeze(model), open_clip.get_tokenizer(arch), size, name=tag)


def load_clip(source: str | os.PathLike, device="cpu") -> ClipBundle:
    """A local CLIP file (path) or an open_clip hub tag such as ``"ViT-B-16-quickgelu:openai"``."""
    source_str = str(source)
    is_file = Path(source_str).suffix.lower() in CLIP_SUFFIXES or os.path.sep in source_str
    if is_file:
        path = Path(source_str)
        bundle = clip_from_state_dict(read_clip_state_dict(path), name=path.name)
    else:
        bundle = _from_hub(source_str)
    return bundle.to(device)
