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
    _shrink(config.unet_config, fam.sizes)
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
