"""Human-preference reward models as ranking criteria: HPSv2.1, PickScore v1, LAION aesthetic v2.

Each one is rebuilt here from its weights alone (architecture read off the state dict, the few
numbers a state dict cannot tell, like a ViT-H's head width, fixed per model), read through
``model_file`` so no code in a downloaded file ever runs, and fed exactly as its authors feed it:

- HPSv2.1 (tgxs002/HPSv2): open_clip ViT-H-14 (GELU; vision heads of width 80). Their
  ``preprocess_val`` turns the picture into a float tensor first, then resizes it so its *longest*
  side is 224 (the other ``round(side * scale)``, bicubic, unclamped) and zero-pads it to a centred
  square, OpenAI mean/std; the text goes through open_clip's tokenizer (ftfy, HTML unescape).
  Score: ``diag(normalize(image) @ normalize(text).T)``, the cosine, no logit scale (papers quote
  it x100, e.g. 27.48).
- PickScore v1 (yuvalkirstain/PickScore): a CLIP-H in transformers' ``CLIPModel`` layout; the
  processor of laion/CLIP-ViT-H-14 resizes the *shortest* side to 224 (long side truncated, bicubic,
  8-bit so clamped) and centre-crops 224 (offset floored), OpenAI mean/std; its fast tokenizer does
  no ftfy or HTML unescaping (``HFClipTokenizer``). Score: ``logit_scale.exp() * cos(text, image)``
  (about 20..23).
- LAION aesthetic v2 (christophschuhmann/improved-aesthetic-predictor,
  ``sac+logos+ava1-l14-linearMSE.pth``): an MLP (Linear 768-1024, Dropout, 1024-128, Dropout,
  128-64, Dropout, 64-16, 16-1) over the L2-normalised image embedding of OpenAI's CLIP ViT-L/14
  (``clip.load``'s ``_transform``: torchvision ``Resize(224, BICUBIC)`` on PIL, long side truncated,
  then ``CenterCrop`` with its offset rounded half to even, OpenAI mean/std). Score: the MLP's
  output, a 1..10 rating; it ignores the prompt.

Every score is "higher is better". Resizing runs on the float tensors the pack holds, with the
antialiased bicubic kernel of torchvision's tensor ``Resize`` (PIL's kernel); against the
libraries fed the same float tensor every view is equal to the last bit, and against their 8-bit PIL
route within 2/255 (tests/test_reward_preprocessing.py states why).

ImageReward (THUDM/ImageReward) is not here: it is a BLIP ViT-L with a BERT text encoder with
cross-attention (BLIP's ``med`` config, a 41 KB ``med.py``) plus an MLP. Its package pins
``transformers==4.27.4``, ``timm==0.6.13`` and ``fairscale==0.4.13`` (ComfyUI needs a far newer
transformers, and ``med.py`` imports helpers newer transformers moved), and it loads its
checkpoint with a full pickle. Rebuilding BLIP's cross-attention BERT by hand would be a second
large architecture to keep right; the three models above already give the rank average
independent judges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .clip_model import OPENAI_MEAN, OPENAI_STD, clip_from_state_dict, read_clip_state_dict
from .errors import CheckpointError
from .model_file import flat_state_dict, read_model_file

KINDS = ("hpsv2", "pickscore", "aesthetic")
LABELS = {"hpsv2": "HPSv2.1", "pickscore": "PickScore", "aesthetic": "aesthetic"}
HPS_VISION_HEAD_WIDTH = 80  # open_clip's ViT-H-14 config: width 1280, head_width 80 -> 16 heads
TEXT_HEAD_WIDTH = 64  # every CLIP text tower here (ViT-H-14: 1024 / 16; ViT-L/14: 768 / 12)
PICK_VISION_HEAD_DIM = 80  # laion CLIP-ViT-H-14 in transformers: hidden 1280, 16 heads


# --- preprocessing --------------------------------------------------------------------------------
# Each model sees the pixels its authors' code gives it; the libraries they call differ in small ways
# that move every pixel of a non-square box, so each rule below names the library it follows.


def _normalize(x01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_MEAN, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    return (x01 - mean) / std


def _resize(x: torch.Tensor, h: int, w: int, clamp: bool) -> torch.Tensor:
    """Antialiased bicubic, the kernel torchvision's tensor ``Resize`` uses and the one that matches
    PIL's BICUBIC. ``clamp``: PIL writes 8-bit pixels, so its overshoot at hard edges is cut to 0..1;
    a float-tensor resize (HPSv2's) keeps it."""
    if (h, w) == tuple(x.shape[-2:]):
        return x
    out = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 1) if clamp else out


def shortest_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """The resized (h, w) with the shortest side ``size``: the long side is *truncated*
    (``int(size * long / short)``), as transformers' ``get_resize_output_image_size`` and
    torchvision's ``Resize(int)`` both compute it; 480x640 -> 224x298, not 224x299."""
    short, long = (h, w) if h <= w else (w, h)
    new_long = max(size, int(size * long / short))
    return (size, new_long) if h <= w else (new_long, size)


def shortest_side_crop(x01: torch.Tensor, size: int, offset: str = "floor") -> torch.Tensor:
    """Shortest side to ``size`` (bicubic, clamped like PIL's 8-bit output), then the centre square.

    ``offset`` is how the centre is found when the margin is odd: ``floor`` as transformers'
    ``center_crop`` (PickScore's processor), ``round`` as torchvision's ``CenterCrop`` (OpenAI CLIP's
    ``_transform``, the aesthetic predictor), which rounds half to even: a 75 px margin starts at 38,
    a 73 px one at 36."""
    nh, nw = shortest_side_size(*x01.shape[-2:], size)
    x = _resize(x01, nh, nw, clamp=True)
    if offset == "floor":
        top, left = (nh - size) // 2, (nw - size) // 2
    else:
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def longest_side_pad(x01: torch.Tensor, size: int) -> torch.Tensor:
    """HPSv2's ``ResizeMaxSize`` (``preprocess_val``): longest side to ``size``, the other
    ``round(side * scale)`` (Python's round, half to even), bicubic on the float tensor *without*
    clamping (their ``ToTensor`` comes before the resize), zero-padded to a centred square (left/top
    ``pad // 2``).

    A side that would round to 0 pixels (a 1x300 strip) keeps 1, and a box whose longest side is
    already ``size`` is still padded: their code would fail on both."""
    h, w = x01.shape[-2:]
    scale = size / float(max(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = _resize(x01, nh, nw, clamp=False)
    ph, pw = size - nh, size - nw
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=0.0)


# --- tokenisers -----------------------------------------------------------------------------------


def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-H-14")  # HPSv2's: open_clip's CLIP BPE (ftfy, HTML unescape), 77 tokens


class HFClipTokenizer:
    """The tokeniser PickScore's authors call (transformers' fast CLIP tokenizer of
    laion/CLIP-ViT-H-14), rebuilt offline from open_clip's bundled BPE: the same vocabulary and
    merges, with the Hugging Face text rules: NFC, whitespace runs to one space, lower case, and
    *no* ftfy or HTML unescaping (open_clip's tokenizer does both, so ``&amp;`` or curly quotes would
    give other tokens). Truncated to ``context`` with the end token kept, padded with it."""

    BOS, EOS = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, context: int = 77):
        from open_clip.tokenizer import SimpleTokenizer
        from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        bpe = SimpleTokenizer()
        names = {"<start_of_text>": self.BOS, "<end_of_text>": self.EOS}
        vocab = {names.get(k, k): v for k, v in bpe.encoder.items()}
        merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
        tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                            fuse_unk=False, unk_token=self.EOS))
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                               normalizers.Lowercase()])
        split = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="removed",
                                                                          invert=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
        tok.add_special_tokens([self.BOS, self.EOS])
        self.tok, self.context = tok, context
        self.bos, self.eos = vocab[self.BOS], vocab[self.EOS]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.full((len(texts), self.context), self.eos, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.bos] + self.tok.encode(text, add_special_tokens=False).ids[: self.context - 2] + [self.eos]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


@dataclass
class RewardModel:
    """A frozen reward model: ``score(images01, prompts)`` -> [N], higher is better."""

    kind: str
    model: torch.nn.Module  # everything that moves between devices
    name: str = ""
    tokenizer: object = field(default=None, repr=False)
    image_size: int = 224

    @property
    def label(self) -> str:
        return LABELS.get(self.kind, self.kind)

    @property
    def uses_prompt(self) -> bool:
        return self.kind != "aesthetic"

    def to(self, device) -> "RewardModel":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def activation_elements(self) -> int:
        """Activations of one image through the image tower (tokens x width x layers), for the planner."""
        width, layers, patch = _vision_shape(self)
        tokens = (self.image_size // patch) ** 2 + 1
        return int(tokens * width * layers)

    @torch.no_grad()
    def score(self, images01: torch.Tensor, prompts: list[tuple[str, float]] | None = None) -> torch.Tensor:
        """Scores of [N,3,H,W] images in 0..1; ``prompts`` are (text, weight) pairs, the scores of a
        weighted prompt set are the weighted mean of each prompt's (the aesthetic model has none)."""
        images01 = images01.to(self.device, torch.float32)
        if self.kind == "hpsv2":
            views = _normalize(longest_side_pad(images01, self.image_size))
            feats = F.normalize(self.model.encode_image(views).float(), dim=-1)
            return self._by_prompt(prompts, feats, lambda t: t @ feats.T)
        if self.kind == "pickscore":
            views = _normalize(shortest_side_crop(images01, self.image_size, offset="floor"))
            feats = _hf_features(self.model.get_image_features(pixel_values=views))
            feats = F.normalize(feats.float(), dim=-1)
            scale = self.model.logit_scale.exp().float()
            return self._by_prompt(prompts, feats, lambda t: scale * (t @ feats.T))
        if self.kind == "aesthetic":
            views = shortest_side_crop(images01, self.image_size, offset="round")  # ClipBundle normalises
            feats = F.normalize(self.model.clip.encode_image(views).float(), dim=-1)
            return self.model.mlp(feats).float()[:, 0]
        raise CheckpointError(f"unknown reward model kind '{self.kind}'")

    def _text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        if self.kind == "pickscore":
            return F.normalize(_hf_features(self.model.get_text_features(input_ids=tokens)).float(), dim=-1)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def _by_prompt(self, prompts, feats, fn) -> torch.Tensor:
        if not prompts:
            raise CheckpointError(f"{self.label} scores an image against a prompt: none was given.")
        texts = [t for t, _ in prompts]
        w = torch.tensor([float(wt) for _, wt in prompts], device=feats.device)
        per_prompt = fn(self._text(texts))  # [P, N]
        return (w[:, None] * per_prompt).sum(0) / w.sum()


def _hf_features(out) -> torch.Tensor:
    """transformers 4 returns the projected tensor; 5 may return an output object with it."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise CheckpointError(f"transformers CLIPModel returned {type(out).__name__}, not features.")


def _vision_shape(reward: RewardModel) -> tuple[int, int, int]:
    m = reward.model
    if reward.kind == "pickscore":
        cfg = m.config.vision_config
        return cfg.hidden_size, cfg.num_hidden_layers, cfg.patch_size
    visual = m.clip.model.visual if reward.kind == "aesthetic" else m.visual
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else int(visual.patch_size)
    return visual.transformer.width, len(visual.transformer.resblocks), patch


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    return model.eval().requires_grad_(False).float()


def _count(sd: dict, prefix: str, suffix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix) and k.endswith(suffix)})


def _read(path: Path, what: str, expected: str) -> dict[str, torch.Tensor]:
    contents, _ = read_model_file(path, what, expected)
    sd = flat_state_dict(contents, path, expected) if isinstance(contents, dict) else contents
    return {k.removeprefix("module."): v for k, v in sd.items()}


# HPSv2.1 -------------------------------------------------------------------------------------------

HPS_EXPECTED = "Put HPS_v2.1_compressed.pt (Hugging Face xswu/HPSv2) into models/blended_hpsv2/."


def hpsv2_from_state_dict(sd: dict[str, torch.Tensor], name: str = "") -> RewardModel:
    """An open_clip ViT-H-14-style CLIP (GELU, vision head width 80) with sizes read off ``sd``."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    need = ("visual.conv1.weight", "visual.positional_embedding", "token_embedding.weight", "text_projection")
    if any(k not in sd for k in need):
        raise CheckpointError(f"'{name}' is not an HPSv2 open_clip checkpoint (no {', '.join(need)}). {HPS_EXPECTED}")
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = int(math.isqrt(sd["visual.positional_embedding"].shape[0] - 1))
    layers = _count(sd, "visual.transformer.resblocks.", ".attn.in_proj_weight")
    mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
    text_width = sd["ln_final.weight"].shape[0]
    if width % HPS_VISION_HEAD_WIDTH or text_width % TEXT_HEAD_WIDTH:
        raise CheckpointError(f"'{name}': widths {width}/{text_width} do not fit ViT-H-14's head widths.")
    vision = CLIPVisionCfg(layers=layers, width=width, head_width=HPS_VISION_HEAD_WIDTH, mlp_ratio=mlp,
                           patch_size=patch, image_size=patch * grid)
    text = CLIPTextCfg(context_length=sd["positional_embedding"].shape[0],
                       vocab_size=sd["token_embedding.weight"].shape[0], width=text_width,
                       heads=text_width // TEXT_HEAD_WIDTH,
                       layers=_count(sd, "transformer.resblocks.", ".attn.in_proj_weight"),
                       mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width)
    model = CLIP(embed_dim=sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=False)
    _load(model, sd, name, HPS_EXPECTED)
    return RewardModel("hpsv2", _freeze(model), name, _tokenizer(), patch * grid)


def _load(model: torch.nn.Module, sd: dict, name: str, expected: str) -> None:
    sd = {k: v for k, v in sd.items() if k != "attn_mask"}
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"'{name}' does not match the expected layout (missing {result.missing_keys[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}). {expected}"
        )


# PickScore v1 --------------------------------------------------------------------------------------

PICK_EXPECTED = ("Put PickScore_v1.safetensors (model.safetensors of Hugging Face yuvalkirstain/PickScore_v1) "
                 "into models/blended_pickscore/.")


def pickscore_from_state_dict(sd: dict[str, torch.Tensor], name: str = "") -> RewardModel:
    """transformers' CLIPModel with its config read off ``sd`` (vision head dim 80, text 64)."""
    from transformers import CLIPConfig, CLIPModel

    need = ("vision_model.embeddings.patch_embedding.weight", "text_model.embeddings.token_embedding.weight",
            "visual_projection.weight", "logit_scale")
    if any(k not in sd for k in need):
        raise CheckpointError(f"'{name}' is not a transformers CLIPModel (no {', '.join(need)}). {PICK_EXPECTED}")
    patch_w = sd["vision_model.embeddings.patch_embedding.weight"]
    v_hidden, patch = patch_w.shape[0], patch_w.shape[-1]
    grid = int(math.isqrt(sd["vision_model.embeddings.position_embedding.weight"].shape[0] - 1))
    t_hidden = sd["text_model.embeddings.token_embedding.weight"].shape[1]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=sd["text_model.embeddings.token_embedding.weight"].shape[0], hidden_size=t_hidden,
            intermediate_size=sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            num_hidden_layers=_count(sd, "text_model.encoder.layers.", ".mlp.fc1.weight"),
            num_attention_heads=t_hidden // TEXT_HEAD_WIDTH,
            max_position_embeddings=sd["text_model.embeddings.position_embedding.weight"].shape[0],
            hidden_act="gelu", eos_token_id=49407, bos_token_id=49406, pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=v_hidden, intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            num_hidden_layers=_count(sd, "vision_model.encoder.layers.", ".mlp.fc1.weight"),
            num_attention_heads=v_hidden // PICK_VISION_HEAD_DIM, patch_size=patch, image_size=patch * grid,
            hidden_act="gelu",
        ),
        projection_dim=sd["visual_projection.weight"].shape[0],
    )
    model = CLIPModel(config)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}  # buffers some versions save
    _load(model, sd, name, PICK_EXPECTED)
    return RewardModel("pickscore", _freeze(model), name, HFClipTokenizer(), patch * grid)


# LAION aesthetic v2 --------------------------------------------------------------------------------

AESTHETIC_EXPECTED = ("Put sac+logos+ava1-l14-linearMSE.pth (christophschuhmann/improved-aesthetic-predictor) into "
                      "models/blended_aesthetic/ and OpenAI's ViT-L-14.pt into models/blended_clip/.")
AESTHETIC_LINEARS = (0, 2, 4, 6, 7)  # the authors' nn.Sequential: Linear, Dropout, ... , Linear, Linear


class AestheticHead(torch.nn.Module):
    """The predictor's MLP (``layers.N`` keys as saved by the authors); dropout is inactive in eval."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        s = sizes
        L, D = torch.nn.Linear, torch.nn.Dropout
        self.layers = torch.nn.Sequential(L(s[0], s[1]), D(0.2), L(s[1], s[2]), D(0.2), L(s[2], s[3]), D(0.1),
                                          L(s[3], s[4]), L(s[4], s[5]))

    def forward(self, x):
        return self.layers(x)


class AestheticModel(torch.nn.Module):
    def __init__(self, clip, mlp: AestheticHead):
        super().__init__()
        self.clip_model = clip.model  # registered, so .to() moves it
        self.clip, self.mlp = clip, mlp


def aesthetic_from_state_dicts(mlp_sd: dict, clip_sd: dict, name: str = "") -> RewardModel:
    keys = [f"layers.{i}.weight" for i in AESTHETIC_LINEARS]
    if any(k not in mlp_sd for k in keys):
        raise CheckpointError(f"'{name}' is not the LAION aesthetic MLP (keys {', '.join(keys)}). {AESTHETIC_EXPECTED}")
    sizes = [mlp_sd[keys[0]].shape[1]] + [mlp_sd[k].shape[0] for k in keys]
    head = AestheticHead(sizes)
    _load(head, mlp_sd, name, AESTHETIC_EXPECTED)
    clip = clip_from_state_dict(clip_sd, name="ViT-L-14")
    embed = int(clip.model.text_projection.shape[1])
    if embed != sizes[0]:
        raise CheckpointError(f"'{name}' takes {sizes[0]}-d embeddings but the CLIP gives {embed}-d: "
                              "the v2 predictor needs OpenAI's ViT-L/14 (768-d).")
    model = _freeze(AestheticModel(clip, head))
    return RewardModel("aesthetic", model, name, None, clip.image_size)


# --- loading from files ---------------------------------------------------------------------------


def load_reward(kind: str, path, clip_path=None, device="cpu") -> RewardModel:
    """A reward model from its file(s); nothing in them is executed (``model_file``)."""
    path = Path(path)
    if kind == "hpsv2":
        reward = hpsv2_from_state_dict(_read(path, "HPSv2 file", HPS_EXPECTED), path.name)
    elif kind == "pickscore":
        reward = pickscore_from_state_dict(_read(path, "PickScore file", PICK_EXPECTED), path.name)
    elif kind == "aesthetic":
        if clip_path is None:
            raise CheckpointError(f"the aesthetic predictor needs its CLIP ViT-L/14. {AESTHETIC_EXPECTED}")
        reward = aesthetic_from_state_dicts(_read(path, "aesthetic predictor", AESTHETIC_EXPECTED),
                                            read_clip_state_dict(Path(clip_path)), path.name)
    else:
        raise CheckpointError(f"unknown reward model '{kind}': choose one of {', '.join(KINDS)}.")
    return reward.to(device)
