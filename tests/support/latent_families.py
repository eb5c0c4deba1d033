"""Tiny randomly initialised models of ComfyUI's image model families, built the way ComfyUI builds a
checkpoint's model: its own detection (``comfy.model_detection``) reads a state dict of the family's
real layout, picks the family's class in ``comfy.supported_models`` and derives its config; only the
size fields (depths, widths, head counts, text widths) are then shrunk, and ``get_model(...)`` goes in
a ``ModelPatcher``. Conditioning has each family's real structure.

No weights can be downloaded where the pack is tested, and the properties the latent path promises
(background at the sample's level at every model call, one call per step, conditioning untouched)
depend on the family's latent format, model sampling and conditioning plumbing, not on the weights.
So each model keeps the family's classes, latent channels, patching, ``model_sampling`` and
``extra_conds``, and every field that is not a size keeps the value the engine itself gives that
family: a field a newer ComfyUI adds to a parameter class (``FluxParams.txt_ids_dims`` in 0.33) is
filled by that ComfyUI's own detection, not by these tests. The layouts are meta tensors (key names and
shapes, no memory); weights are drawn from a seeded generator (fan-in scaled), since ComfyUI's layers
are created uninitialised.

``FAMILIES`` maps the README table's names to a ``Family``; ``build(name)`` returns a ``Built``.

Qwen-Image (and its Edit) and Cosmos Predict2 use the Wan 2.1 VAE's latent format, whose latents
are 5-D ``[B,C,1,H,W]`` even for one image (what VAEEncode gives them, and what their diffusion
models unpack), so ``Built.latent_shape`` has the time axis where the format has one. The text
encoders (Qwen2.5-VL 7B, Llama 3.1 8B + T5-XXL, ByT5, ...) are not built: the conditioning they
produce is given directly at a tiny width, with the shapes and keys ComfyUI's encoders put in it.
``VIDEO_FAMILIES`` are the video families (Wan 2.1/2.2 and its I2V / control / VACE variants, LTXV,
HunyuanVideo 1 and 1.5, Mochi, Cosmos, CogVideoX), built the same way with 5-D latents of ``latent_frames``
frames; their per-call proof is tests/test_latent_video.py with tests/support/video_proof.py.
Families of ComfyUI 0.33 (Krea 2, Ideogram 4, HiDream-O1, CogVideoX, ...) are skipped, naming their class,
on an engine without it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from tests.support.sd15_fixture import comfy_engine_path

CTX = 32  # text-embedding width of every tiny DiT (the real ones: 2048 ... 15360); the UNets keep theirs
_LLAMA = 24  # HiDream's Llama 3.1 hidden states (4096 wide, 32 layers in the real model)


@dataclass
class Family:
    config: str  # the class in comfy.supported_models that ComfyUI's detection must pick for `layout`
    layout: dict  # checkpoint key -> shape: the keys ComfyUI's detection reads, at the real model's shapes
    sizes: dict  # the only fields the tests set: depths, widths, head counts, text widths
    channels: int  # latent channels
    factor: int  # pixels per latent cell
    multiple: int  # crop multiple (pixels) the model needs
    guider: str  # "cfg" or "basic" (guidance-distilled: BasicGuider + FluxGuidance)
    cond: Callable[[int, int, int], dict]  # (latent h, w, seed) -> the positive conditioning's dict
    ctx_dim: int = CTX
    diffusers: bool = False  # `layout` has diffusers' UNet names (ComfyUI's model_config_from_diffusers_unet)
    detect_sd: dict = field(default_factory=dict)  # values (not only shapes) ComfyUI's model_type() reads
    reference: bool = False  # an edit model: needs reference latents
    latent_hw: tuple[int, int] = (8, 8)  # the test's latent size in cells (patching must fit)
    passes: dict = field(default_factory=dict)  # conditioning key -> the diffusion model's argument it becomes
    kwargs_sizes: dict = field(default_factory=dict)  # sizes a model reads from its **kwargs (LTX-2's connectors)
    notes: str = ""
    temporal: int = 1  # video families: frames per latent frame (the VAE's temporal compression)
    latent_frames: int = 1  # video families: the test's latent frames
    # video families: (model, the positive's dict, latent shape) -> the diffusion model's arguments that
    # conditioning becomes, by hand (one row; a non-tensor is a constant): tests/support/video_proof.py checks them
    seen: Callable | None = None


@dataclass
class Built:
    name: str
    family: Family
    model: object  # comfy.model_patcher.ModelPatcher
    positive: list
    negative: list
    latent_hw: tuple[int, int]
    latent_shape: tuple[int, ...]  # [1,C,h,w], or [1,C,1,h,w] for formats with a time axis


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _ctx(seed, n=8, dim=CTX):
    return torch.randn(1, n, dim, generator=_g(seed))


def _pooled(seed, dim=768):
    return torch.randn(1, dim, generator=_g(seed + 100))


def _sdxl_cond(h, w, seed):
    return {"pooled_output": _pooled(seed, 1280), "width": w * 8, "height": h * 8, "crop_w": 0, "crop_h": 0,
            "target_width": w * 8, "target_height": h * 8}


def _ref(h, w, seed, channels=16, n=1):
    return [torch.randn(1, channels, h, w, generator=_g(seed + 200 + i)) for i in range(n)]


def _qwen_refs(h, w, seed):
    """TextEncodeQwenImageEditPlus: up to three images, each scaled to about 1 Mpx of its own aspect
    and encoded by the Wan 2.1 VAE ([1,16,1,h,w]); sizes differ from the edited latent's and each other's."""
    sizes = [(h, w), (h - 2, w + 2), (h // 2, w // 2)]
    return [torch.randn(1, 16, 1, hh, ww, generator=_g(seed + 200 + i)) for i, (hh, ww) in enumerate(sizes)]


def _hidream_o1_ids(seed, n=6):
    """HiDream-O1's "text encoder" gives token ids (the prompt in its chat template, ending with the
    <|boi|> and <|tms|> markers); its diffusion model runs the Qwen3-VL decoder on them every call."""
    words = torch.randint(1000, 150000, (1, n), generator=_g(seed + 600))
    head, tail = torch.tensor([[151644, 872, 198]]), torch.tensor([[151645, 198, 151644, 77091, 198, 151669, 151673]])
    return torch.cat([head, words, tail], dim=1)


# --- the real layouts: what ComfyUI's detection reads of each family's checkpoint ---------------------------


def _blocks(prefix, count, suffix, shape):
    """Keys of ``count`` numbered blocks: detection counts a model's blocks by their indices."""
    return {f"{prefix}.{i}.{suffix}": shape for i in range(count)}


def _diffusers_unet(context_dim, transformer_depth, channels=(320, 640, 1280, 1280), adm=None):
    """A diffusers-named SD UNet (two resnets per down block, an attention with ``depth`` transformer
    blocks after each where the block has any): ComfyUI matches these counts and widths against its
    table of the real SD1.5 / SD2.x / SDXL configs and returns the whole config."""
    layout = {"conv_in.weight": (channels[0], 4, 3, 3)}
    if adm:
        layout["add_embedding.linear_1.weight"] = (channels[0] * 4, adm)
    for i, (width, depth) in enumerate(zip(channels, transformer_depth)):
        for r in range(2):
            layout[f"down_blocks.{i}.resnets.{r}.conv1.weight"] = (width, width, 3, 3)
            attention = f"down_blocks.{i}.attentions.{r}"
            for t in range(depth):
                layout[f"{attention}.transformer_blocks.{t}.attn2.to_k.weight"] = (width, context_dim)
    return layout


def _flux(in_channels=16, guidance=True):
    """FLUX.1: hidden 3072 (24 heads of 128), 19 double and 38 single blocks, T5-XXL text (4096),
    CLIP-L pooled (768); [dev] has the guidance embedder, [schnell] not, Fill takes 96 channels."""
    layout = {"img_in.weight": (3072, in_channels * 4), "txt_in.weight": (3072, 4096),
              "vector_in.in_layer.weight": (3072, 768),
              **_blocks("double_blocks", 19, "img_attn.norm.key_norm.scale", (128,)),
              **_blocks("single_blocks", 38, "norm.key_norm.scale", (128,))}
    if guidance:
        layout["guidance_in.in_layer.weight"] = (3072, 256)
    return layout


def _chroma(radiance=False):
    """Chroma: FLUX.1 without CLIP and guidance, its modulation from the distilled guidance layer
    (5 layers, 5120 wide); Radiance works on pixels (16 px patches, a NeRF-style head), no img_in."""
    layout = {"txt_in.weight": (3072, 4096), "distilled_guidance_layer.norms.0.scale": (5120,),
              **_blocks("double_blocks", 19, "img_attn.norm.key_norm.scale", (128,)),
              **_blocks("single_blocks", 38, "norm.key_norm.scale", (128,))}
    if radiance:
        layout.update({"img_in_patch.weight": (3072, 3, 16, 16), **_blocks("nerf_blocks", 4, "norm.scale", (64,)),
                       "nerf_final_layer_conv.norm.scale": (64,)})
    else:
        layout["img_in.weight"] = (3072, 64)
    return layout


# Sizes: fewer blocks and heads; each head keeps the real model's width where ComfyUI fixes the
# rotary axes from it (128 for the Flux line, Qwen, HiDream, HunyuanImage, Cosmos, Z-Image; 96 for
# Lumina 2; 120 for Omnigen2), so those axes stay the engine's.
_FLUX_SIZES = {"hidden_size": 256, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "context_in_dim": CTX}
_CHROMA_SIZES = {**_FLUX_SIZES, "out_dim": 256, "hidden_dim": 64, "n_layers": 1}  # out_dim: the modulation width
_UNET_SIZES = {"num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
               "transformer_depth_middle": 1}
_QWEN_LAYOUT = {"txt_norm.weight": (3584,), "img_in.weight": (3072, 64),
                **_blocks("transformer_blocks", 60, "attn.norm_q.weight", (128,))}
_QWEN_SIZES = {"num_layers": 1, "num_attention_heads": 2, "joint_attention_dim": CTX}
# ComfyUI 0.33's Mage-Flow: Qwen-Image's blocks (and size fields), 3072 wide (24 heads of 128), 12 of them,
# Qwen3-VL 4B (2560) text, 1x1 patches of Flux.2's 128-channel latents; LongCat-Image: Flux's
_MAGE_LAYOUT = {"txt_norm.weight": (2560,), "proj_out.weight": (128, 3072), "img_in.weight": (3072, 128),
                **_blocks("transformer_blocks", 12, "attn.norm_q.weight", (128,))}
# HiDream-O1: all fixed by the class (the Qwen3-VL 8B decoder, 4096 wide, 36 layers, and its ViT); its
# sizes are the two configs' overrides, each head keeping 128 (the decoder's rotary sections)
_HIDREAM_O1_LAYOUT = {"t_embedder1.mlp.0.weight": (4096, 256), "x_embedder.proj1.weight": (1024, 3072)}
_HIDREAM_O1_SIZES = {"text_config_overrides": {"hidden_size": 128, "intermediate_size": 64, "num_hidden_layers": 1,
                                               "num_attention_heads": 1, "num_key_value_heads": 1},
                     "vision_config_overrides": {"hidden_size": 32, "num_heads": 1, "intermediate_size": 32,
                                                 "depth": 1}}
_LONGCAT_LAYOUT = {"img_in.weight": (3072, 64), "txt_in.weight": (3072, 3584),  # no CLIP, no guidance
                   **_blocks("double_blocks", 10, "img_attn.norm.key_norm.scale", (128,)),
                   **_blocks("single_blocks", 20, "norm.key_norm.scale", (128,))}

# PixArt XL-2 1024-MS (Alpha and Sigma): 28 blocks 1152 wide (16 heads), T5-XXL (4096); Alpha embeds the
# image's size and aspect (its checkpoint has the ar_embedder; they embed in thirds of the width, so it
# stays divisible by 3), Sigma does not and reads 300 T5 tokens
_PIXART_SIZES = {"hidden_size": 96, "num_heads": 2, "depth": 1, "caption_channels": CTX}
# HunyuanDiT DiT-g/2: 40 blocks 1408 wide; BERT states (the context, 77 tokens) and mT5-XL's (256 tokens,
# 2048 wide); 16 heads of 88 (rotary axes from the head width). The token counts are the model's fixed
# lengths (both encoders pad to them), shrunk with the widths; an even depth keeps its long skips paired
_HYDIT_SIZES = {"hidden_size": 176, "num_heads": 2, "depth": 4, "text_states_dim": CTX, "text_states_dim_t5": 32,
                "text_len": 8, "text_len_t5": 8}
_HYDIT_PASSES = {"attention_mask": "text_embedding_mask", "conditioning_mt5xl": "encoder_hidden_states_t5",
                 "attention_mask_mt5xl": "text_embedding_mask_t5"}
# PixelDiT 1300M (and PiD on its body): 16 px patches, 1536 wide (24 groups of 64), 14 patch blocks and
# 2 pixel blocks (1152 wide, 16 groups of 72), Gemma 2 2B text (2304)
_PIXELDIT_SIZES = {"hidden_size": 128, "num_groups": 2, "patch_depth": 2, "pixel_depth": 1,
                   "pixel_attn_hidden_size": 144, "pixel_num_groups": 2, "txt_embed_dim": CTX}


def _pixart(alpha):
    layout = {"t_block.1.weight": (6912, 1152), "pos_embed": (1, 4096, 1152),
              "y_embedder.y_embedding": (120 if alpha else 300, 4096),
              **_blocks("blocks", 28, "attn.qkv.weight", (3456, 1152))}
    if alpha:
        layout["ar_embedder.mlp.0.weight"] = (1152, 256)
    return layout


def _hydit(v1_0):
    """v1.0 adds the image size (6 x 256) and a style embedding (1408) to the pooled mT5 (1024) it
    conditions on: 3968 in; v1.1 / v1.2 the pooled mT5 alone."""
    return {"mlp_t5.0.weight": (8192, 2048), "x_embedder.proj.weight": (1408, 4, 2, 2),
            "extra_embedder.0.weight": (5632, 3968 if v1_0 else 1024),
            **_blocks("blocks", 40, "attn1.qkv.weight", (4224, 1408))}


def _hydit_cond(h, w, seed):
    """CLIPTextEncode(HunyuanDiT): BERT's states (the context), pooled output and mask, mT5-XL's states
    and mask, each padded to the model's length (the padding masked out)."""
    return {"pooled_output": _pooled(seed, 1024), "attention_mask": torch.tensor([[1] * 5 + [0] * 3]),
            "conditioning_mt5xl": torch.randn(1, 8, 32, generator=_g(seed + 600)),
            "attention_mask_mt5xl": torch.tensor([[1] * 6 + [0] * 2])}


def _anima_cond(h, w, seed):
    """Anima's encoder: Qwen3 0.6B states (the context) and their mask, and the prompt's T5 token ids
    and weights, which the model's LLM adapter turns into its cross-attention context."""
    return {"attention_mask": torch.ones(1, 8, dtype=torch.long),
            "t5xxl_ids": torch.randint(0, 32128, (8,), generator=_g(seed + 700), dtype=torch.int),
            "t5xxl_weights": 0.8 + 0.4 * torch.rand(8, generator=_g(seed + 701))}


FAMILIES: dict[str, Family] = {
    "sd15": Family("SD15", _diffusers_unet(768, (1, 1, 1, 0)), {**_UNET_SIZES, "model_channels": 32}, 4, 8, 8, "cfg",
                   lambda h, w, s: {}, ctx_dim=768, diffusers=True),
    "sd2-v": Family("SD20", _diffusers_unet(1024, (1, 1, 1, 0)), {**_UNET_SIZES, "model_channels": 64}, 4, 8, 8, "cfg",
                    lambda h, w, s: {}, ctx_dim=1024, diffusers=True,
                    detect_sd={"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1, 1, 8)},
                    notes="v-prediction (ComfyUI's own detection reads the norm's spread)"),
    "sdxl": Family("SDXL", _diffusers_unet(2048, (0, 2, 10), (320, 640, 1280), adm=2816),
                   {**_UNET_SIZES, "model_channels": 64, "transformer_depth": [2], "transformer_depth_output": [2, 2],
                    "transformer_depth_middle": 2}, 4, 8, 8, "cfg", _sdxl_cond, ctx_dim=2048, diffusers=True),
    "sd3": Family("SD3", {  # SD3.5 Large: 38 blocks, 38 x 64 = 2432 wide, RMS-normed q/k, CLIP-L+G pooled (2048)
        "joint_blocks.0.context_block.attn.qkv.weight": (7296, 2432),
        "joint_blocks.0.context_block.attn.ln_q.weight": (64,),
        "x_embedder.proj.weight": (2432, 16, 2, 2), "final_layer.linear.weight": (64, 2432),
        "y_embedder.mlp.0.weight": (2432, 2048), "context_embedder.weight": (2432, 4096),
        "pos_embed": (1, 36864, 2432)},
        {"depth": 1, "pos_embed_max_size": 16, "num_patches": 256,
         "context_embedder_config": {"params": {"in_features": CTX, "out_features": 64}}},
        16, 8, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s, 2048)}),
    "auraflow": Family("AuraFlow", {  # AuraFlow 0.3: 4 double and 32 single layers, 3072 wide, Pile-T5 (2048)
        "positional_encoding": (1, 1024, 3072), "cond_seq_linear.weight": (3072, 2048),
        **_blocks("double_layers", 4, "attn.w1q.weight", (3072, 3072)),
        **_blocks("single_layers", 32, "attn.w1q.weight", (3072, 3072))},
        {"max_seq": 256, "cond_seq_dim": CTX, "n_double_layers": 1, "n_layers": 2, "dim": 64, "n_heads": 2,
         "global_conddim": 64},
        4, 8, 16, "cfg", lambda h, w, s: {}),
    "flux-dev": Family("Flux", _flux(), _FLUX_SIZES, 16, 8, 16, "basic",
                       lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 3.5}),
    "flux-schnell": Family("FluxSchnell", _flux(guidance=False), _FLUX_SIZES, 16, 8, 16, "basic",
                           lambda h, w, s: {"pooled_output": _pooled(s)}),
    "flux-fill": Family("FluxInpaint", _flux(in_channels=96), _FLUX_SIZES, 16, 8, 16, "basic",
                        lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 30.0,
                                         "concat_latent_image": torch.randn(1, 16, h, w, generator=_g(s + 300)),
                                         "concat_mask": torch.ones(1, 1, h * 8, w * 8)}),
    "flux-kontext": Family("Flux", _flux(), _FLUX_SIZES, 16, 8, 16, "basic",
                           lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 2.5,
                                            "reference_latents": _ref(h, w, s)}, reference=True),
    "chroma": Family("Chroma", _chroma(), _CHROMA_SIZES, 16, 8, 16, "cfg",
                     lambda h, w, s: {"pooled_output": _pooled(s)}),
    "lumina2": Family("Lumina2", {  # Lumina Image 2.0: 2304 wide (24 heads of 96, 8 kv), 26 layers, Gemma 2 (2304)
        "cap_embedder.1.weight": (2304, 2304), "noise_refiner.0.attention.k_norm.weight": (96,),
        **_blocks("layers", 26, "attention.k_norm.weight", (96,))},
        {"dim": 192, "n_heads": 2, "n_kv_heads": 1, "n_layers": 1, "n_refiner_layers": 1, "cap_feat_dim": CTX},
        16, 8, 16, "cfg", lambda h, w, s: {}),
    "z-image": Family("ZImage", {  # Z-Image: 3840 wide (30 heads of 128), 30 layers, Qwen3 4B (2560), pad tokens
        "cap_embedder.1.weight": (3840, 2560), "noise_refiner.0.attention.k_norm.weight": (128,),
        "cap_pad_token": (1, 3840), "x_pad_token": (1, 3840),
        **_blocks("layers", 30, "attention.k_norm.weight", (128,))},
        {"dim": 256, "n_heads": 2, "n_kv_heads": 2, "n_layers": 1, "n_refiner_layers": 1, "cap_feat_dim": CTX},
        16, 8, 16, "cfg", lambda h, w, s: {}),
    "chroma-radiance": Family("ChromaRadiance", _chroma(radiance=True),
                              {**_CHROMA_SIZES, "nerf_depth": 1, "nerf_hidden_size": 16},
                              3, 1, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s)}, latent_hw=(32, 32),
                              notes="pixel space: the latent is the image, 3 channels, 1 px per cell"),
    "flux2": Family("Flux2", {  # FLUX.2 [dev]: 6144 wide (48 heads of 128), 8 double, 48 single, Mistral 3 (15360)
        "img_in.weight": (6144, 128), "txt_in.weight": (6144, 15360), "guidance_in.in_layer.weight": (6144, 256),
        "double_stream_modulation_img.lin.weight": (36864, 6144),
        **_blocks("double_blocks", 8, "img_attn.norm.key_norm.scale", (128,)),
        **_blocks("single_blocks", 48, "norm.key_norm.scale", (128,))},
        _FLUX_SIZES, 128, 16, 16, "basic", lambda h, w, s: {"guidance": 4.0, "pooled_output": None}),
    "qwen-image": Family("QwenImage", _QWEN_LAYOUT, _QWEN_SIZES, 16, 8, 16, "cfg", lambda h, w, s: {},
                         notes="5-D Wan 2.1 latents; 2x2 patches packed to 64 channels"),
    "qwen-image-edit": Family("QwenImage", _QWEN_LAYOUT, _QWEN_SIZES, 16, 8, 16, "cfg",
                              lambda h, w, s: {"reference_latents": _qwen_refs(h, w, s)}, reference=True,
                              notes="Qwen-Image-Edit 2509: three reference latents of other sizes"),
    "hidream": Family("HiDream", {"caption_projection.0.linear.weight": (2560, 4096)},  # I1: all fixed by detection
                      {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2,
                       "caption_channels": [CTX, _LLAMA], "llama_layers": [0, 1]}, 16, 8, 16, "cfg",
                      lambda h, w, s: {"pooled_output": _pooled(s, 2048),
                                       "conditioning_llama3": torch.randn(1, 2, 8, _LLAMA, generator=_g(s + 400))},
                      passes={"pooled_output": "y", "conditioning_llama3": "encoder_hidden_states_llama3"},
                      notes="T5 context, pooled CLIP-L/G, and one Llama hidden state per block (its own key)"),
    "hunyuan-image-2.1": Family("HunyuanImage21", {  # 3584 wide (28 heads of 128), 20 double, 40 single, ByT5 glyphs
        "img_in.proj.weight": (3584, 64, 1, 1), "final_layer.linear.weight": (64, 3584),
        "txt_in.input_embedder.weight": (3584, 3584), "txt_in.individual_token_refiner.blocks.0.norm1.weight": (3584,),
        "byt5_in.fc1.weight": (2048, 1472), **_blocks("double_blocks", 20, "img_mod.linear.weight", (21504, 3584)),
        **_blocks("single_blocks", 40, "modulation.linear.weight", (10752, 3584))},
        {**_FLUX_SIZES, "hidden_size": 256}, 64, 32, 32, "cfg",
        lambda h, w, s: {"conditioning_byt5small": torch.randn(1, 4, 1472, generator=_g(s + 500))},
        passes={"conditioning_byt5small": "txt_byt5"},
        notes="64-channel latents, 32 px per cell; the ByT5 glyph mapper keeps its real 1472 -> 2048 widths"),
    "cosmos-predict2": Family("CosmosT2IPredict2", {  # 2B: 2048 wide (16 heads of 128), 28 blocks
        "x_embedder.proj.1.weight": (2048, 68), **_blocks("blocks", 28, "mlp.layer1.weight", (8192, 2048))},
        {"model_channels": 256, "num_heads": 2, "num_blocks": 1, "crossattn_emb_channels": CTX}, 16, 8, 16, "cfg",
        lambda h, w, s: {}, notes="EDM-style flow (FLOW_COSMOS), 5-D Wan 2.1 latents"),
    "omnigen2": Family("Omnigen2", {"time_caption_embed.timestep_embedder.linear_1.bias": (1024,)},  # all fixed
                       {"hidden_size": 240, "num_attention_heads": 2, "num_kv_heads": 1, "num_layers": 1,
                        "num_refiner_layers": 1, "text_feat_dim": CTX}, 16, 8, 16, "cfg",
                       lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long),
                                        "reference_latents": _ref(h, w, s)}, reference=True,
                       notes="the text encoder's attention mask gives the token count; "
                             "a reference latent (its edit mode)"),
    "pixart-alpha": Family("PixArtAlpha", _pixart(alpha=True), _PIXART_SIZES, 4, 8, 16, "cfg",
                           lambda h, w, s: {"pooled_output": None, "width": w * 8, "height": h * 8 + 64},
                           latent_hw=(48, 48), notes="CLIPTextEncodePixArtAlpha's width and height become its size and "
                           "aspect micro-conditions; its sin-cos positions need 40 cells at least"),
    "pixart-sigma": Family("PixArtSigma", _pixart(alpha=False), _PIXART_SIZES, 4, 8, 16, "cfg",
                           lambda h, w, s: {"pooled_output": None}, latent_hw=(48, 48), notes="SDXL's latent format"),
    "hunyuan-dit": Family("HunyuanDiT", _hydit(v1_0=False), _HYDIT_SIZES, 4, 8, 16, "cfg", _hydit_cond,
                          passes=_HYDIT_PASSES, notes="v1.1 / v1.2; v-prediction; two text encoders, each masked"),
    "hunyuan-dit-1.0": Family("HunyuanDiT1", _hydit(v1_0=True), _HYDIT_SIZES, 4, 8, 16, "cfg", _hydit_cond,
                              passes=_HYDIT_PASSES, notes="v1.0: also the image-size micro-condition and a style"),
    "lens": Family("Lens", {  # Lens: 1536 wide (24 heads of 64), 48 dual-stream blocks, 4 GPT-OSS-20B layers of 2880
        "img_in.weight": (1536, 128), "proj_out.weight": (128, 1536), **_blocks("txt_norm", 4, "weight", (2880,)),
        "transformer_blocks.0.attn.norm_added_q.weight": (64,),
        **_blocks("transformer_blocks", 48, "img_mlp.w1.weight", (4096, 1536))},
        {"num_layers": 1, "num_attention_heads": 2, "enc_hidden_dim": CTX // 4}, 128, 16, 16, "cfg",
        lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long), "num_layers_stacked": 4,
                         "pooled_output": None},
        passes={"attention_mask": "attention_mask"},
        notes="Flux.2's 128-channel latents; the context is 4 text-encoder layers side by side"),
    "anima": Family("Anima", {  # Anima: Cosmos Predict2's 2B DiT (2048 wide, 28 blocks) and a 6-layer LLM adapter
        "x_embedder.proj.1.weight": (2048, 68), **_blocks("blocks", 28, "mlp.layer1.weight", (8192, 2048)),
        "llm_adapter.blocks.0.cross_attn.q_proj.weight": (1024, 1024)},
        {"model_channels": 256, "num_heads": 2, "num_blocks": 1}, 16, 8, 16, "cfg", _anima_cond, ctx_dim=1024,
        passes={"t5xxl_ids": "t5xxl_ids", "t5xxl_weights": "t5xxl_weights"},
        notes="5-D Wan 2.1 latents; the adapter (fixed 1024 wide, not a size ComfyUI's config sets) keeps its "
              "real widths, so the context is Qwen3 0.6B's 1024"),
    "z-image-pixel": Family("ZImagePixelSpace", {  # Z-Image's DiT on 32 px RGB patches, an MLP decoder per patch
        "cap_embedder.1.weight": (3840, 2560), "noise_refiner.0.attention.k_norm.weight": (128,),
        "cap_pad_token": (1, 3840), "x_pad_token": (1, 3840),
        **_blocks("layers", 30, "attention.k_norm.weight", (128,)),
        "x_embedder.weight": (3840, 3072), "dec_net.cond_embed.weight": (3840, 3840),
        "dec_net.input_embedder.embedder.0.weight": (3840, 3072 + 64),
        "dec_net.final_layer.linear.weight": (3072, 3840),
        **_blocks("dec_net.res_blocks", 4, "norm.weight", (3840,)), "__x0__": (0,)},
        {"dim": 256, "n_heads": 2, "n_kv_heads": 2, "n_layers": 1, "n_refiner_layers": 1, "cap_feat_dim": CTX,
         "decoder_hidden_size": 32, "decoder_num_res_blocks": 1},
        3, 1, 32, "cfg", lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long)}, latent_hw=(64, 64),
        notes="pixel space: the latent is the image, 3 channels, 1 px per cell; 32 px patches"),
    "pixeldit": Family("PixelDiTT2I", {"core.pixel_embedder.proj.weight": (16, 3)},  # all fixed by the class
                       _PIXELDIT_SIZES, 3, 1, 16, "cfg",
                       lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long)}, latent_hw=(32, 32),
                       passes={"attention_mask": "attention_mask"},
                       notes="pixel space: the latent is the image, 3 channels, 1 px per cell; 16 px patches"),
    "pid": Family("PiD", {  # PiD v1 for Flux.1 latents: a 512-wide projection of the latent, 7 sigma-aware gates
        "lq_proj.latent_proj.0.weight": (512, 16, 3, 3),
        **_blocks("lq_proj.gate_modules", 7, "content_proj.weight", (1536, 3072))},
        {**_PIXELDIT_SIZES, "lq_hidden_dim": 16, "lq_num_res_blocks": 1}, 3, 1, 16, "basic",
        lambda h, w, s: {"lq_latent": torch.randn(1, 16, h // 32, w // 32, generator=_g(s + 800)),
                         "degrade_sigma": torch.tensor([0.0])}, latent_hw=(64, 64),
        passes={"lq_latent": "lq_latent", "degrade_sigma": "degrade_sigma"},
        notes="pixel space at 4x the Flux.1 latent it decodes (PiDConditioning's lq_latent: 32 px per cell)"),
    # ComfyUI 0.33 image families (part B)
    "hidream-o1": Family("HiDreamO1", _HIDREAM_O1_LAYOUT, _HIDREAM_O1_SIZES, 3, 1, 32, "cfg",
                         lambda h, w, s: {"text_input_ids": _hidream_o1_ids(s)}, ctx_dim=1, latent_hw=(64, 64),
        passes={"text_input_ids": "input_ids"},
        notes="pixel space, 32 px patches; the prompt's token ids run through the model's own Qwen3-VL"),
    "hidream-o1-edit": Family("HiDreamO1", _HIDREAM_O1_LAYOUT, _HIDREAM_O1_SIZES, 3, 1, 32, "cfg",
                              lambda h, w, s: {"text_input_ids": _hidream_o1_ids(s),
                                               "reference_latents": [torch.rand(1, h - 16, w + 16, 3,
                                                                                generator=_g(s))]},
                              ctx_dim=1, latent_hw=(64, 64), reference=True,
                              notes="HiDreamO1ReferenceImages: the reference is the IMAGE itself (its ViT and "
                                    "32 px patches read it; its vision tokens join the prompt's ids)"),
    "boogu": Family("Boogu", {  # OmniGen2 + a dual-stream stage: 3360 wide (28 heads of 120), Qwen3-VL 8B (4096)
        "x_embedder.weight": (3360, 64), "time_caption_embed.caption_embedder.0.weight": (4096,),
        **_blocks("double_stream_layers", 8, "img_instruct_attn.processor.img_to_q.weight", (3360, 3360)),
        **_blocks("single_stream_layers", 32, "attn.norm_q.weight", (120,)),
        **_blocks("noise_refiner", 2, "attn.norm_q.weight", (120,))},
        {"hidden_size": 240, "num_attention_heads": 2, "num_kv_heads": 1, "num_layers": 1,
         "num_double_stream_layers": 1, "num_refiner_layers": 1, "instruction_feat_dim": CTX}, 16, 8, 16, "cfg",
        lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long), "reference_latents": _ref(h, w, s)},
        reference=True, notes="TextEncodeBooguEdit: the image to edit as a reference latent; the mask's token count"),
    "ideogram4": Family("Ideogram4", {  # 34 layers, 18 heads of 256 (4608), 13 Qwen3-VL 8B layers (53248)
        "embed_image_indicator.weight": (2, 4608), "input_proj.weight": (4608, 128),
        **_blocks("layers", 34, "attn.norm_q.weight", (256,))},
        {"num_layers": 1, "num_attention_heads": 1, "intermediate_size": 64, "adaln_dim": 64,
         "llm_features_dim": CTX}, 128, 16, 16, "cfg",
        lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long)},
        notes="Flux.2 latents (128 channels, 16 px per cell) read as 2x2 patches of 32"),
    "krea2": Family("Krea2", {  # 6144 wide (48 heads of 128, 12 kv), 28 blocks, 12 Qwen3-VL 4B layers (2560)
        "first.weight": (6144, 64), "txtfusion.projector.weight": (1, 12),
        "txtfusion.layerwise_blocks.0.prenorm.scale": (2560,), "blocks.0.attn.wk.weight": (1536, 6144),
        **_blocks("blocks", 28, "attn.wq.weight", (6144, 6144))},
        {"features": 256, "heads": 2, "kvheads": 1, "layers": 1, "txtdim": 16, "txtlayers": 2, "txtheads": 1,
         "txtkvheads": 1}, 16, 8, 16, "cfg", lambda h, w, s: {}, ctx_dim=32,
        notes="5-D Wan 2.1 latents; the text is 12 encoder layers side by side (here 2 of 16)"),
    "mageflow": Family("MageFlow", _MAGE_LAYOUT, _QWEN_SIZES, 128, 16, 16, "cfg",
        lambda h, w, s: {}, notes="Flux.2 latents; its timestep rounded to bf16 as the model was trained"),
    "mageflow-edit": Family("MageFlow", _MAGE_LAYOUT, _QWEN_SIZES, 128, 16, 16, "cfg",
                            lambda h, w, s: {"reference_latents": _ref(h, w, s, channels=128)}, reference=True,
                            notes="TextEncodeMageFlowEdit: the image at the output size, on both conditionings"),
    "joyimage": Family("JoyImage", {  # 3072 wide (24 heads of 128), 20 double blocks, Qwen3-VL 8B (4096)
        "img_in.weight": (3072, 16, 1, 2, 2), "double_blocks.0.attn.img_attn_q_norm.weight": (128,),
        "condition_embedder.time_embedder.linear_1.weight": (3072, 256),
        **_blocks("double_blocks", 20, "attn.img_attn_qkv.weight", (9216, 3072))},
        {"hidden_size": 256, "num_attention_heads": 2, "num_layers": 1, "text_dim": CTX}, 16, 8, 16, "cfg",
        lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long),
                         "reference_latents": _qwen_refs(h, w, s)[1:2]}, reference=True,
        notes="JoyAI Image Edit (TextEncodeJoyImageEdit): the image at its bucket size, a 5-D Wan 2.1 latent"),
    "kandinsky5-image": Family("Kandinsky5Image", {  # Lite image: 2560 wide (20 heads of 128), Qwen2.5-VL + CLIP-L
        "visual_embeddings.in_layer.weight": (2560, 64), "visual_embeddings.in_layer.bias": (2560,),
        "time_embeddings.in_layer.bias": (512,),
        "visual_transformer_blocks.0.feed_forward.in_layer.weight": (10240, 2560),
        **_blocks("text_transformer_blocks", 2, "feed_forward.in_layer.weight", (10240, 2560)),
        **_blocks("visual_transformer_blocks", 50, "cross_attention.key_norm.weight", (128,))},
        {"model_dim": 256, "ff_dim": 64, "time_dim": 64, "num_text_blocks": 1, "num_visual_blocks": 1,
         "in_text_dim": CTX}, 16, 8, 16, "cfg",
        lambda h, w, s: {"pooled_output": _pooled(s), "attention_mask": torch.ones(1, 8, dtype=torch.long)},
        passes={"pooled_output": "y", "attention_mask": "attention_mask"},
        notes="pooled CLIP-L and the Qwen2.5-VL mask reach the model (CLIPTextEncodeKandinsky5)"),
    "longcat-image": Family("LongCatImage", _LONGCAT_LAYOUT, _FLUX_SIZES, 16, 8, 16, "cfg", lambda h, w, s: {},
                            notes="Flux's blocks, 3072 wide, 10 double and 20 single, Qwen2.5-VL 7B (3584) text; "
                                  "no CLIP, no guidance"),
    "longcat-image-edit": Family("LongCatImage", _LONGCAT_LAYOUT, _FLUX_SIZES, 16, 8, 16, "cfg",
                                 lambda h, w, s: {"reference_latents": _ref(h - 2, w + 2, s),
                                                  "reference_latents_method": "index"}, reference=True,
                                 notes="TextEncodeQwenImageEdit's reference (about 1 Mpx, another size), "
                                       "FluxKontextMultiReferenceLatentMethod index"),
    "ernie-image": Family("ErnieImage", {  # all fixed but the depth: 4096 wide (32 heads of 128), 36 layers
        **_blocks("layers", 36, "mlp.linear_fc2.weight", (4096, 12288))},
        {"hidden_size": 256, "num_attention_heads": 2, "num_layers": 1, "ffn_hidden_size": 64, "text_in_dim": CTX},
        128, 16, 16, "cfg", lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long)},
        notes="Flux.2 latents, 1x1 patches; Ministral 3 3B text"),
}

# --- video families: tests/test_latent_video.py (their README rows say `[id]` in that file) ------------------
VIDEO_T = 3  # latent frames of every video test: 1 + k*2 frames for a VAE that folds k frames into one


def _frames(channels, h, w, seed, t=VIDEO_T):
    return torch.randn(1, channels, t, h, w, generator=_g(seed))


def _first_frame_kept(h, w, t=VIDEO_T):
    """The concat_mask of core's image-to-video nodes (WanImageToVideo, HunyuanImageToVideo,
    HunyuanVideo15ImageToVideo): 0 on the latent frames the start image gives, 1 on the rest."""
    mask = torch.ones(1, 1, t, h, w)
    mask[:, :, :1] = 0.0
    return mask


def _vision(seed, width, key):
    """A CLIP vision output (comfy.clip_vision.Output) with the one field the family's model reads:
    Wan's CLIP-H penultimate states (1280 wide), HunyuanVideo 1.5's SigLIP last states (1152)."""
    from comfy.clip_vision import Output

    out = Output()
    out[key] = torch.randn(1, 4, width, generator=_g(seed + 600))
    return out


def _wan_i2v_cond(h, w, s):
    return {"concat_latent_image": _frames(16, h, w, s + 300), "concat_mask": _first_frame_kept(h, w),
            "clip_vision_output": _vision(s, 1280, "penultimate_hidden_states")}


def _wan_concat(model, extra, shape):
    """WAN21.concat_cond of WanImageToVideo's conditioning: [4 x (1 - concat_mask), process_latent_in(image)]."""
    inverted = (1.0 - extra["concat_mask"]).repeat(1, 4, 1, 1, 1)
    return {"c_concat": torch.cat([inverted, model.process_latent_in(extra["concat_latent_image"])], dim=1)}


def _wan_i2v_seen(model, extra, shape):
    """The concat as ``_wan_concat``; clip_fea: the CLIP vision output's penultimate states."""
    return {**_wan_concat(model, extra, shape), "clip_fea": extra["clip_vision_output"].penultimate_hidden_states}


def _per_16(model, latent):
    """How WAN21 / CogVideoX take a concat latent of stacked 16-channel latents: process_latent_in per 16."""
    return torch.cat([model.process_latent_in(part) for part in latent.split(16, dim=1)], dim=1)


def _fun_control_cond(h, w, s):  # WanFunControlToVideo: [control video latent, start image latent], no mask
    return {"concat_latent_image": _frames(32, h, w, s + 300),
            "clip_vision_output": _vision(s, 1280, "penultimate_hidden_states")}


def _vace_cond(h, w, s):  # WanVaceToVideo without a reference image: [inactive, reactive] latents + 64-ch mask
    return {"vace_frames": [_frames(32, h, w, s + 300)], "vace_strength": [0.75],
            "vace_mask": [(_frames(64, h, w, s + 301) > 0).float()]}


def _vace_seen(model, extra, shape):
    frames, mask = extra["vace_frames"][0], extra["vace_mask"][0]
    return {"vace_context": torch.cat([_per_16(model, frames), mask], dim=1)[:, None], "vace_strength": [0.75]}


def _padded(latent, t=VIDEO_T):
    """A one-frame latent padded with zero frames to the video's length, as core's concat_cond does."""
    return torch.nn.functional.pad(latent, (0, 0, 0, 0, 0, t - latent.shape[2]))


def _hunyuan_i2v_cond(h, w, s):  # HunyuanImageToVideo "v1 (concat)": the start image's latent, one frame
    return {"pooled_output": _pooled(s), "guidance": 6.0, "concat_latent_image": _frames(16, h, w, s + 300, t=1),
            "concat_mask": _first_frame_kept(h, w)}


def _hunyuan_i2v_seen(model, extra, shape):
    """concat_keys ("concat_image", "mask_inverted"): the processed image padded in time, then 1 - mask."""
    image = _padded(model.process_latent_in(extra["concat_latent_image"]))
    return {"c_concat": torch.cat([image, 1.0 - extra["concat_mask"]], dim=1), "y": extra["pooled_output"],
            "guidance": torch.tensor([6.0])}


def _skyreels_cond(h, w, s):  # HunyuanImageToVideo v1 on SkyReels: 32 input channels take the image, not the mask
    return {"pooled_output": _pooled(s), "guidance": 1.0, "concat_latent_image": _frames(16, h, w, s + 300, t=1),
            "concat_mask": _first_frame_kept(h, w)}


def _skyreels_seen(model, extra, shape):
    return {"c_concat": _padded(model.process_latent_in(extra["concat_latent_image"])), "y": extra["pooled_output"],
            "guidance": torch.tensor([1.0])}


def _hunyuan15_cond(h, w, s):  # HunyuanVideo15ImageToVideo + the ByT5 glyph encoder's tokens
    image = torch.zeros(1, 32, VIDEO_T, h, w)
    image[:, :, :1] = _frames(32, h, w, s + 300, t=1)
    return {"pooled_output": None, "conditioning_byt5small": torch.randn(1, 4, 1472, generator=_g(s + 500)),
            "concat_latent_image": image, "concat_mask": _first_frame_kept(h, w),
            "clip_vision_output": _vision(s, 1152, "last_hidden_state")}


def _hunyuan15_seen(model, extra, shape):
    return {"c_concat": torch.cat([model.process_latent_in(extra["concat_latent_image"]), 1.0 - extra["concat_mask"]],
                                  dim=1), "clip_fea": extra["clip_vision_output"].last_hidden_state}


def _tokens(n=8):
    """A T5 encoder's attention mask (Mochi, LTXV, Cosmos return one): ``n`` tokens, the last two padding."""
    mask = torch.ones(1, n, dtype=torch.long)
    mask[:, n - 2 :] = 0  # the encoder's padding
    return mask


def _mochi_seen(model, extra, shape):
    return {"attention_mask": extra["attention_mask"], "num_tokens": int(extra["attention_mask"].sum())}


def _cosmos_i2v_seen(model, extra, shape):
    """CosmosVideo / CosmosPredict2 image-to-video: concat_keys ("mask_inverted",); with no denoise mask (the
    blended sampler gives none: the latent's own noise_mask is for core KSampler) one zero channel."""
    return {"c_concat": torch.zeros(1, 1, *shape[2:])}


def _cog_i2v_seen(model, extra, shape):  # CogVideoX.concat_cond pads the image in time, then processes it
    return {"c_concat": _per_16(model, _padded(extra["concat_latent_image"]))}


def _wan(dim, ffn, blocks, in_dim=16, out_dim=16, extra=None):
    """Wan 2.x: ``dim`` wide (heads of 128), ``blocks`` blocks, patches 1x2x2 of ``in_dim`` channels."""
    return {"head.modulation": (1, 2, dim), "head.head.weight": (out_dim * 4, dim),
            "patch_embedding.weight": (dim, in_dim, 1, 2, 2), **_blocks("blocks", blocks, "ffn.0.weight", (ffn, dim)),
            **(extra or {})}


def _hunyuan_video(in_channels=16, hidden=3072, double=20, single=40, patch=(1, 2, 2), out=16, text=4096,
                   extra=None):
    """HunyuanVideo 13B: 3072 wide (24 heads of 128), 20 double and 40 single blocks, Llava-Llama 3 text (4096),
    CLIP-L pooled (768), guidance embedder; 1.5 (8.3B): 2048 wide, 54 double blocks, Qwen2.5-VL text (3584)."""
    layout = {"img_in.proj.weight": (hidden, in_channels, *patch), "final_layer.linear.weight": (out * math.prod(patch),
                                                                                                hidden),
              "txt_in.input_embedder.weight": (hidden, text), "txt_in.individual_token_refiner.blocks.0.norm1.weight":
              (hidden,), **_blocks("double_blocks", double, "img_mod.linear.weight", (6 * hidden, hidden)),
              **_blocks("single_blocks", single, "modulation.linear.weight", (3 * hidden, hidden))}
    return {**layout, **(extra or {})}


_HY_EXTRA = {"vector_in.in_layer.weight": (3072, 768), "guidance_in.in_layer.weight": (3072, 256)}
_HY15_EXTRA = {"byt5_in.fc1.weight": (2048, 1472), "vision_in.proj.0.weight": (1152,),
               "cond_type_embedding.weight": (3, 2048)}
_HY_SIZES = {"hidden_size": 256, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "context_in_dim": CTX}
_WAN_SIZES = {"dim": 256, "num_heads": 2, "ffn_dim": 64, "num_layers": 1, "text_dim": CTX}
_COSMOS7B = {"blocks.block0.blocks.0.block.attn.to_q.0.weight": (4096, 4096)}  # 7B: 28 blocks, 32 heads of 128
_COSMOS_SIZES = {"model_channels": 256, "num_blocks": 1, "num_heads": 2, "crossattn_emb_channels": CTX}
_COG5B = {**_blocks("blocks", 42, "norm1.linear.weight", (6 * 3072, 512)), "patch_embed.text_proj.weight": (3072, 4096)}
# 3 heads of 64: the learned positions need a width divisible by 12 (the real 3072 is)
_COG_SIZES = {"num_attention_heads": 3, "num_layers": 1, "text_embed_dim": CTX}


def _video(config, layout, sizes, channels, factor, temporal, cond=None, seen=None, passes=None, notes="", patch=2):
    """A video family: CFG, crops in whole patches (``patch`` latent cells of ``factor`` px)."""
    return Family(config, layout, sizes, channels, factor, patch * factor, "cfg", cond or (lambda h, w, s: {}),
                  passes=passes or {}, notes=notes, temporal=temporal, latent_frames=VIDEO_T, seen=seen)


# Video families: 5-D [B,C,T,h,w] latents; ``factor`` px per cell, ``temporal`` frames per latent frame.
VIDEO_FAMILIES: dict[str, Family] = {
    "wan2.1": _video("WAN21_T2V", _wan(5120, 13824, 40), _WAN_SIZES, 16, 8, 4,
                     notes="Wan 2.1 T2V 14B (Wan 2.2 A14B's experts alike): 5120 wide, 40 blocks, umT5"),
    "wan2.1-i2v": _video("WAN21_I2V", _wan(5120, 13824, 40, in_dim=36, extra={"img_emb.proj.0.bias": (1280,)}),
                         _WAN_SIZES, 16, 8, 4, _wan_i2v_cond, _wan_i2v_seen,
                         notes="WanImageToVideo: the start image's latent + mask concatenated, CLIP-H vision tokens"),
    "wan2.2-i2v": _video("WAN21_T2V", _wan(5120, 13824, 40, in_dim=36), _WAN_SIZES, 16, 8, 4,
                         lambda h, w, s: {k: v for k, v in _wan_i2v_cond(h, w, s).items() if k != "clip_vision_output"},
                         _wan_concat,
                         notes="Wan 2.2 I2V A14B: Wan 2.1's I2V input (36 channels) without CLIP vision; ComfyUI "
                               "loads it as WAN21_T2V and concatenates WanImageToVideo's latent + mask"),
    "wan2.1-fun-control": _video("WAN21_FunControl2V", _wan(5120, 13824, 40, in_dim=48,
                                                            extra={"img_emb.proj.0.bias": (1280,)}),
                                 _WAN_SIZES, 16, 8, 4, _fun_control_cond,
                                 lambda m, e, shape: {"c_concat": _per_16(m, e["concat_latent_image"]),
                                               "clip_fea": e["clip_vision_output"].penultimate_hidden_states},
                                 notes="WanFunControlToVideo: control and start-image latents concatenated, no mask"),
    "wan2.1-vace": _video("WAN21_Vace", _wan(5120, 13824, 40, extra={"vace_patch_embedding.weight":
                                                                     (5120, 96, 1, 2, 2),
                                                                     **_blocks("vace_blocks", 8, "after_proj.weight",
                                                                               (5120, 5120))}),
                          {**_WAN_SIZES, "vace_layers": 1}, 16, 8, 4, _vace_cond, _vace_seen,
                          notes="WanVaceToVideo: control latents + their 64-channel mask through the VACE blocks"),
    "wan2.2-5b": _video("WAN22_T2V", _wan(3072, 14336, 30, in_dim=48, out_dim=48), _WAN_SIZES, 48, 16, 4,
                        notes="Wan 2.2 TI2V 5B: its own VAE, 48 channels, 16 px per cell"),
    "ltxv": _video("LTXV", {"adaln_single.emb.timestep_embedder.linear_1.bias": (2048,),  # 2B: 28 layers, 32 x 64
                            **_blocks("transformer_blocks", 28, "attn2.to_k.weight", (2048, 2048))},
                   {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 32, "cross_attention_dim": 64,
                    "caption_channels": CTX}, 128, 32, 8,
                   lambda h, w, s: {"attention_mask": _tokens(), "frame_rate": 24.0},
                   lambda m, e, shape: {"attention_mask": e["attention_mask"], "frame_rate": 24.0},
                   notes="the T5 attention mask, LTXVConditioning's frame rate; 128 channels, 32 px and 8 frames per "
                         "cell", patch=1),
    "hunyuan-video": _video("HunyuanVideo", _hunyuan_video(extra=_HY_EXTRA), _HY_SIZES, 16, 8, 4,
                            lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 6.0},
                            lambda m, e, shape: {"y": e["pooled_output"], "guidance": torch.tensor([6.0])},
                            notes="pooled CLIP-L and the distilled guidance"),
    "hunyuan-video-i2v": _video("HunyuanVideoI2V", _hunyuan_video(33, extra=_HY_EXTRA), _HY_SIZES, 16, 8, 4,
                                _hunyuan_i2v_cond, _hunyuan_i2v_seen,
                                notes="HunyuanImageToVideo v1 (concat): the start image's latent and mask"),
    "hunyuan-video-skyreels-i2v": _video("HunyuanVideoSkyreelsI2V", _hunyuan_video(32, extra=_HY_EXTRA), _HY_SIZES,
                                         16, 8, 4, _skyreels_cond, _skyreels_seen,
                                         notes="SkyReels V1 I2V: the start image's latent concatenated, no mask"),
    "hunyuan-video-1.5": _video("HunyuanVideo15", _hunyuan_video(65, 2048, 54, 0, (1, 1, 1), 32, 3584, _HY15_EXTRA),
                                {k: v for k, v in _HY_SIZES.items() if k != "depth_single_blocks"}, 32, 16, 4,
                                _hunyuan15_cond, _hunyuan15_seen, {"conditioning_byt5small": "txt_byt5"},
                                notes="HunyuanVideo15ImageToVideo: concat latent + mask, SigLIP tokens; ByT5 glyphs",
                                patch=1),
    "mochi": _video("GenmoMochi", {"t5_yproj.weight": (1536, 4096)},  # all else fixed by detection (10B)
                    {"depth": 1, "num_heads": 2, "hidden_size_x": 128, "hidden_size_y": 64, "t5_feat_dim": CTX,
                     "mlp_ratio_x": 96.0},  # ComfyUI asserts the real MLP width, 12288 (3072 x 4)
                    12, 8, 6, lambda h, w, s: {"attention_mask": _tokens()}, _mochi_seen,
                    notes="T5 attention mask and its token count; 12 channels, 6 frames per latent frame"),
    "cosmos-t2v": _video("CosmosT2V", {**_COSMOS7B, "x_embedder.proj.1.weight": (4096, 68)}, _COSMOS_SIZES, 16, 8, 8,
                         lambda h, w, s: {"attention_mask": _tokens()},
                         lambda m, e, shape: {"attention_mask": e["attention_mask"]},
                         notes="Cosmos 1.0 7B Text2World: EDM sampling, the padding mask channel"),
    "cosmos-i2v": _video("CosmosI2V", {**_COSMOS7B, "x_embedder.proj.1.weight": (4096, 72)}, _COSMOS_SIZES, 16, 8, 8,
                         lambda h, w, s: {"attention_mask": _tokens()},
                         lambda m, e, shape: {"attention_mask": e["attention_mask"], **_cosmos_i2v_seen(m, e, shape)},
                         notes="Cosmos 1.0 7B Video2World: a mask channel concatenated"),
    "cosmos-predict2-i2v": _video("CosmosI2VPredict2", {"x_embedder.proj.1.weight": (2048, 72),
                                                        **_blocks("blocks", 28, "mlp.layer1.weight", (8192, 2048))},
                                  {"model_channels": 256, "num_heads": 2, "num_blocks": 1,
                                   "crossattn_emb_channels": CTX}, 16, 8, 4, None,
                                  _cosmos_i2v_seen, notes="Cosmos Predict2 2B Video2World: Wan 2.1 latents"),
    "cogvideox-t2v": _video("CogVideoX_T2V", {**_COG5B, "patch_embed.proj.weight": (3072, 16, 2, 2)}, _COG_SIZES,
                            16, 8, 4, notes="CogVideoX 5B: v-prediction DDPM (zero terminal SNR), 3-D RoPE"),
    "cogvideox-i2v": _video("CogVideoX_I2V", {**_COG5B, "patch_embed.proj.weight": (3072, 32, 2, 2),
                                              "patch_embed.pos_embedding": (1, 17776, 3072)}, _COG_SIZES, 16, 8, 4,
                            lambda h, w, s: {"concat_latent_image": _frames(16, h, w, s + 300, t=1)}, _cog_i2v_seen,
                            notes="CogVideoX 5B I2V: the start image's latent concatenated, learned positions"),
    "cogvideox-inpaint": _video("CogVideoX_Inpaint", {**_COG5B, "patch_embed.proj.weight": (3072, 48, 2, 2)},
                                _COG_SIZES, 16, 8, 4,
                                lambda h, w, s: {"concat_latent_image": _frames(32, h, w, s + 300)},
                                lambda m, e, shape: {"c_concat": _per_16(m, e["concat_latent_image"])},
                                notes="CogVideoX Fun InP (VOIDInpaintConditioning): mask and masked-video latents"),
}

# Audio + video (ComfyUI 0.33: LTX-2, MiniMax H3) and Kandinsky 5 video: their own proof, with the audio
# stream, in tests/test_latent_audio_video.py (a case of the README table like the others).
AUDIO_VIDEO_FAMILIES: dict[str, Family] = {
    "ltx2": Family("LTXAV", {  # LTX-2 19B: video 4096 wide (32 heads of 128), audio 2048, 48 blocks, Gemma 3 (3840)
        "adaln_single.emb.timestep_embedder.linear_1.bias": (4096,), "audio_adaln_single.linear.weight": (12288, 2048),
        **_blocks("transformer_blocks", 48, "attn2.to_k.weight", (4096, 4096))},
        {"num_layers": 1, "num_attention_heads": 2, "cross_attention_dim": 256, "audio_num_attention_heads": 2,
         "audio_cross_attention_dim": 128, "caption_channels": CTX},
        128, 32, 32, "cfg", lambda h, w, s: {"unprocessed_ltxav_embeds": True, "frame_rate": 25.0},
        latent_hw=(2, 2), kwargs_sizes={"connector_num_attention_heads": 1, "connector_attention_head_dim": CTX,
                                        "connector_num_layers": 1},
        notes="NestedTensor [video [B,128,T,h,w], audio [B,8,T_a,16]] latents, 8 frames per latent frame; "
              "the Gemma 3 text goes through the model's own connectors (unprocessed_ltxav_embeds)"),
    "minimax-h3": Family("MiniMaxH3", {  # MiniMax H3: 5376 wide (56 heads of 128), 50 blocks, Qwen3-VL 32B (5120)
        "video_patch_proj.weight": (5376, 96), "audio_patch_proj.weight": (5376, 32),
        "final_layer.video_out.weight": (96, 5376), "final_layer.audio_out.weight": (32, 5376),
        "condition_proj.weight": (5376, 5120), "time_embedder.proj_in.weight": (5376, 256),
        "time_embedder.proj_out.weight": (2688, 5376), "rope.inv_freq": (16,),
        "blocks.0.attn.q_norm.weight": (128,), "blocks.0.attn.qkv_proj.weight": (21504, 5376),
        "blocks.0.mlp.fc1.weight": (28672, 5376), **_blocks("blocks", 50, "norm1.weight", (5376,)),
        **_blocks("token_refiner.blocks", 2, "norm1.weight", (5376,))},
        {"hidden_size": 256, "num_layers": 1, "token_refiner_num_layers": 1, "num_attention_heads": 2,
         "ffn_hidden_size": 64, "text_dim": CTX, "time_embed_hidden_size": 64, "time_embed_dim": 64},
        24, 16, 32, "cfg", lambda h, w, s: {}, latent_hw=(4, 4),
        notes="NestedTensor [video [1,24,T,h,w], audio [1,32,2,T_a]] latents, one sample per model call"),
    "kandinsky5-video": Family("Kandinsky5", {  # Kandinsky 5 Lite video: 1792 wide (28 heads of 64), 32 blocks
        "visual_transformer_blocks.0.cross_attention.key_norm.weight": (64,),
        "visual_embeddings.in_layer.bias": (1792,), "visual_embeddings.in_layer.weight": (1792, 132),
        "time_embeddings.in_layer.bias": (512,),
        "visual_transformer_blocks.0.feed_forward.in_layer.weight": (7168, 1792),
        **_blocks("text_transformer_blocks", 2, "feed_forward.in_layer.weight", (7168, 1792)),
        **_blocks("visual_transformer_blocks", 32, "feed_forward.in_layer.weight", (7168, 1792))},
        {"model_dim": 128, "ff_dim": 64, "time_dim": 64, "num_text_blocks": 1, "num_visual_blocks": 1,
         "in_text_dim": CTX},
        16, 8, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s)},
        notes="Hunyuan Video's latent format (4 frames per latent frame); Qwen2.5-VL text, CLIP-L pooled"),
}


def _family(name: str) -> Family:
    for families in (FAMILIES, VIDEO_FAMILIES, AUDIO_VIDEO_FAMILIES):
        if name in families:
            return families[name]
    raise KeyError(f"no family {name!r} in tests/support/latent_families.py")


# --- from ComfyUI's config to a tiny model -----------------------------------------------------------------


def _shrink(config: dict, sizes: dict) -> None:
    """Set the size fields in ComfyUI's config, in place; a nested dict (SD3's context embedder)
    keeps every entry the sizes do not name."""
    for key, value in sizes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = dict(config[key])
            _shrink(config[key], value)
        else:
            config[key] = value


def engine_config(name: str):
    """ComfyUI's model config for family ``name``, size fields shrunk: the engine's own detection reads
    the family's real layout (meta tensors), picks the class in ``comfy.supported_models`` and derives
    every field, as for a real checkpoint; a field a newer ComfyUI adds comes with it. Skips where the
    engine has no such class; fails where its detection takes the layout for another family."""
    src = comfy_engine_path()
    import comfy.supported_models as sm

    fam = _family(name)
    if not hasattr(sm, fam.config):
        import pytest

        stamp = src / "comfyui_version.py"
        version = re.search(r'__version__ = "([^"]+)"', stamp.read_text(encoding="utf-8") if stamp.exists() else "")
        pytest.skip(f"this ComfyUI ({version[1] if version else 'version unknown'}) has no "
                    f"comfy.supported_models.{fam.config} (family {name!r}); a ComfyUI that has it runs the case")
    config = detected_config(name)
    _shrink(config.unet_config, {**fam.sizes, **fam.kwargs_sizes})
    return config


def detected_config(name: str):
    """ComfyUI's model config for family ``name`` at the real model's sizes: what its detection derives
    from the family's real layout (meta tensors). For model files that must load through core's own
    loaders (the template tests), which shrink only what detection counts from the keys (depth)."""
    comfy_engine_path()
    import comfy.model_detection as md

    fam = _family(name)
    layout = {key: torch.empty(shape, device="meta") for key, shape in fam.layout.items()}
    config = md.model_config_from_diffusers_unet(layout) if fam.diffusers else md.model_config_from_unet(layout, "")
    if type(config).__name__ != fam.config:
        found = type(config).__name__ if config is not None else "no model"
        raise LookupError(f"family {name!r}: this ComfyUI's detection takes the {fam.config} layout in "
                          f"tests/support/latent_families.py for {found}; the layout needs the keys it now reads")
    return config


def _constructor_error(name: str, fam: Family, config, error: TypeError) -> Exception:
    """A clear error for the two ways a model class can refuse the config: a parameter it requires
    that neither ComfyUI's detection nor a default gave (the class and all its unfilled fields, from
    ``dataclasses.fields`` of a parameter class such as ``FluxParams``, or from the message for a
    constructor's own arguments), or a size naming a parameter it does not have."""
    unexpected = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(error))
    if unexpected:
        return _unknown_sizes(name, unexpected[1], [unexpected[2]])
    missing = re.search(r"(\w+)\.__init__\(\) missing \d+ required [\w -]*arguments?: (.*)", str(error))
    if not missing:
        return error
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    cls = tb.tb_frame.f_globals.get(missing[1])  # the caller's module holds the class it called
    if dataclasses.is_dataclass(cls):
        unset = [f.name for f in dataclasses.fields(cls) if f.name not in config.unet_config
                 and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    else:
        unset = re.findall(r"'(\w+)'", missing[2])
    return LookupError(f"family {name!r}: ComfyUI's {missing[1]} requires {', '.join(unset)}, which this "
                       f"ComfyUI's detection does not derive from the {fam.config} layout in "
                       "tests/support/latent_families.py and which has no default: give the layout the checkpoint "
                       "keys comfy/model_detection.py now reads for it (or, for a size, add it to the family's sizes)")


def _unknown_sizes(name: str, cls_name: str, fields: list[str]) -> LookupError:
    return LookupError(f"family {name!r}: ComfyUI's {cls_name} has no field {', '.join(fields)}; the sizes in "
                       "tests/support/latent_families.py name a field this ComfyUI does not have")


def _model_fields(module) -> set[str]:
    """The names a diffusion model's config can set: its parameter dataclass's fields (Flux, Chroma,
    HunyuanVideo keep one in ``.params``) and its constructor's arguments, with those of the parents
    a constructor hands its ``**kwargs`` on to (Anima's MiniTrainDIT, NextDiTPixelSpace's NextDiT,
    PiD's PixelDiT)."""
    names = set()
    for cls in type(module).__mro__:
        params = inspect.signature(cls.__init__).parameters
        names |= set(params)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) or cls is torch.nn.Module:
            break
    if dataclasses.is_dataclass(getattr(module, "params", None)):
        names |= {f.name for f in dataclasses.fields(module.params)}
    return names


def _check_sizes(name: str, fam: Family, module) -> None:
    """Each size the family sets is a field of the model ComfyUI built: a field a newer ComfyUI renamed
    fails by name even where a constructor takes any keyword (``**kwargs``) and would ignore it."""
    unknown = sorted(set(fam.sizes) - _model_fields(module))
    if unknown:
        raise _unknown_sizes(name, type(module).__name__, unknown)


def _init_weights(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI's layers are created uninitialised: weights ~ N(0, 1/fan_in), 1-D ones (norm scales)
    except biases (zeros)."""
    gen = _g(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() <= 1:
                p.copy_(torch.zeros_like(p) if name.endswith("bias") else torch.ones_like(p))
            else:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) / math.sqrt(fan_in))
        for name, b in module.named_buffers():
            if b.is_floating_point() and not torch.isfinite(b).all():
                b.zero_()


def build(name: str, latent_hw=None, seed=0) -> Built:
    """The family ``name`` as a MODEL (fp32 on the CPU) with positive and negative conditioning."""
    config = engine_config(name)  # puts ComfyUI on the path
    import comfy.model_management as mm
    import comfy.model_patcher

    fam = _family(name)
    config.set_inference_dtype(torch.float32, None)
    try:
        base = config.get_model(dict(fam.detect_sd), "")
    except TypeError as error:
        raise _constructor_error(name, fam, config, error) from error
    _check_sizes(name, fam, base.diffusion_model)
    _init_weights(base.diffusion_model, seed)
    base.eval()
    model = comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                             offload_device=mm.unet_offload_device())
    h, w = latent_hw or fam.latent_hw
    time_axis = (fam.latent_frames,) if base.latent_format.latent_dimensions == 3 else ()
    positive = [[_ctx(seed + 1, dim=fam.ctx_dim), fam.cond(h, w, seed + 1)]]
    neg_extra = {k: v for k, v in fam.cond(h, w, seed + 2).items() if k != "reference_latents"}
    if fam.reference:  # core's edit graphs give the negative the same references (ReferenceLatent on both)
        neg_extra["reference_latents"] = positive[0][1]["reference_latents"]
    negative = [[_ctx(seed + 2, dim=fam.ctx_dim), neg_extra]]
    return Built(name, fam, model, positive, negative, (h, w), (1, fam.channels, *time_axis, h, w))


def recording(model):
    """A clone of ``model`` whose UNet calls are recorded: (input x, sigma per row, cond_or_uncond)."""
    calls = []
    patched = model.clone()

    def wrapper(apply_model, args):
        calls.append((args["input"].detach().clone(), args["timestep"].detach().clone(), list(args["cond_or_uncond"])))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    return patched, calls
