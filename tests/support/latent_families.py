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
Wan video is in tests/test_latent_video.py.
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
}

# Video families, tested in tests/test_latent_video.py (not cases of the README's image-family table).
VIDEO_FAMILIES: dict[str, Family] = {
    "wan2.1": Family("WAN21_T2V", {  # Wan 2.1 T2V 14B (Wan 2.2 A14B's experts alike): 5120 wide, 40 blocks, umT5
        "head.modulation": (1, 2, 5120), "head.head.weight": (64, 5120), "patch_embedding.weight": (5120, 16, 1, 2, 2),
        **_blocks("blocks", 40, "ffn.0.weight", (13824, 5120))},
        {"dim": 256, "num_heads": 2, "ffn_dim": 64, "num_layers": 1, "text_dim": CTX}, 16, 8, 16, "cfg",
        lambda h, w, s: {}, notes="5-D [B,16,T,h,w] latents, 4 frames per latent frame after the first"),
    # audio + video (ComfyUI 0.33)
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
    return FAMILIES[name] if name in FAMILIES else VIDEO_FAMILIES[name]


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
    comfy_engine_path()
    import comfy.supported_models as sm

    fam = _family(name)
    if not hasattr(sm, fam.config):
        import pytest

        pytest.skip(f"this ComfyUI has no comfy.supported_models.{fam.config} (family {name!r})")
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
    HunyuanVideo keep one in ``.params``) and its constructor's arguments."""
    names = set(inspect.signature(type(module).__init__).parameters)
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
    time_axis = (1,) if base.latent_format.latent_dimensions == 3 else ()
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
