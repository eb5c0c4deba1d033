"""What each reward model's authors' code makes of a picture, computed by the libraries that code
calls, so the pack's own preprocessing (``blended.reward_models``) is checked against them and not
against a copy of itself.

- PickScore: transformers' ``CLIPImageProcessor`` (laion/CLIP-ViT-H-14's settings: shortest edge
  224, bicubic, centre crop 224), on the float tensor (torchvision backend) or on PIL (the PIL
  backend, the slow processor the authors' transformers 4 used);
- aesthetic: OpenAI CLIP's ``_transform``, i.e. torchvision ``Resize(n, BICUBIC)`` +
  ``CenterCrop(n)``, on the float tensor or on PIL;
- HPSv2: their ``preprocess_val`` resizes the float tensor (``ToTensor`` comes first) so its longest
  side is ``n`` and pads it to a centred square. open_clip's ``ResizeKeepRatio(longest=1)`` gives the
  size, torchvision resizes the tensor, open_clip's ``CenterCropOrPad`` pads; the PIL path is
  open_clip's ``image_transform(resize_mode="longest")``.

Every view is in 0..1 (not normalised) and [3, n, n].
"""

from __future__ import annotations

import json

import numpy as np
import torch

BICUBIC = 3  # PIL.Image.BICUBIC, transformers' resample code for laion/CLIP-ViT-H-14


def to_pil(x01: torch.Tensor):
    """[3,H,W] in 0..1 to an 8-bit PIL image (exact when ``x01`` holds multiples of 1/255)."""
    from PIL import Image

    return Image.fromarray((x01.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy())


def _clip_processors():
    """(PIL processor, torchvision processor): transformers 5 names them CLIPImageProcessorPil and
    CLIPImageProcessor, transformers 4 CLIPImageProcessor and CLIPImageProcessorFast."""
    from transformers.models import clip

    if hasattr(clip, "CLIPImageProcessorPil"):
        return clip.CLIPImageProcessorPil, clip.CLIPImageProcessor
    return clip.CLIPImageProcessor, clip.CLIPImageProcessorFast


def pickscore_view(x01: torch.Tensor, size: int, pil: bool = False) -> torch.Tensor:
    on_pil, on_tensor = _clip_processors()
    kw = dict(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=BICUBIC,
              do_normalize=False)
    if pil:
        return on_pil(**kw)(images=to_pil(x01), return_tensors="pt").pixel_values[0]
    return on_tensor(do_rescale=False, **kw)(images=x01, return_tensors="pt").pixel_values[0]


def aesthetic_view(x01: torch.Tensor, size: int, pil: bool = False) -> torch.Tensor:
    import torchvision.transforms as T

    steps = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)]
    if pil:
        return T.Compose(steps + [T.ToTensor()])(to_pil(x01))
    return T.Compose(steps)(x01)


def hps_view(x01: torch.Tensor, size: int, pil: bool = False) -> torch.Tensor:
    import torchvision.transforms.functional as TF
    from open_clip.transform import CenterCropOrPad, ResizeKeepRatio, image_transform

    if pil:
        t = image_transform(size, is_train=False, mean=(0.0,) * 3, std=(1.0,) * 3, resize_mode="longest",
                            fill_color=0)
        return t(to_pil(x01))
    hw = ResizeKeepRatio.get_params(to_pil(x01), (size, size), longest=1.0)
    resized = TF.resize(x01, hw, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    return CenterCropOrPad(size, fill=0)(resized)


def hf_clip_tokenizer(folder):
    """transformers' fast CLIP tokenizer as ``AutoProcessor`` gives it for laion/CLIP-ViT-H-14, built
    offline from files written into ``folder``: vocab.json and merges.txt from open_clip's bundled BPE
    (the same vocabulary OpenAI and laion publish), the special tokens and length of laion's config."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import AutoTokenizer

    bpe = SimpleTokenizer()
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(k, k): v for k, v in bpe.encoder.items()}
    merges = [" ".join(p) for p, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(folder), use_fast=True)


def hf_ids(tokenizer, texts: list[str]) -> torch.Tensor:
    """PickScore's call: ``padding``, ``truncation``, ``max_length=77``; padded to 77 here."""
    out = tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="np")
    return torch.from_numpy(np.asarray(out["input_ids"])).long()
