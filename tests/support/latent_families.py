"""Tiny randomly initialised models of ComfyUI 0.3.75's image model families, built with ComfyUI's
own classes (``comfy.supported_models.<Family>(small unet_config).get_model(...)`` in a
``ModelPatcher``), with conditioning of each family's real structure.

No weights can be downloaded where the pack is tested, and the properties the latent path promises
(background at the sample's level at every model call, one call per step, conditioning untouched)
depend on the family's latent format, model sampling and conditioning plumbing, not on the weights.
So each model keeps the family's classes, latent channels, patching, ``model_sampling`` and
``extra_conds`` and shrinks only widths and depths. Weights are drawn from a seeded generator
(fan-in scaled), since ComfyUI's layers are created uninitialised.

``FAMILIES`` maps the README table's names to a ``Family``; ``build(name)`` returns a ``Built``.

Qwen-Image (and its Edit) and Cosmos Predict2 use the Wan 2.1 VAE's latent format, whose latents
are 5-D ``[B,C,1,H,W]`` even for one image (what VAEEncode gives them, and what their diffusion
models unpack), so ``Built.latent_shape`` has the time axis where the format has one. The text
encoders (Qwen2.5-VL 7B, Llama 3.1 8B + T5-XXL, ByT5, ...) are not built: the conditioning they
produce is given directly at a tiny width, with the shapes and keys ComfyUI's encoders put in it.
Wan video is in tests/test_latent_video.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from tests.support.sd15_fixture import comfy_engine_path

CTX = 32  # text-embedding width of every tiny model (the real ones: 768 ... 4096)


@dataclass
class Family:
    config: str  # class name in comfy.supported_models
    unet_config: dict
    channels: int  # latent channels
    factor: int  # pixels per latent cell
    multiple: int  # crop multiple (pixels) the model needs
    guider: str  # "cfg" or "basic" (guidance-distilled: BasicGuider + FluxGuidance)
    cond: Callable[[int, int, int], dict]  # (latent h, w, seed) -> the positive conditioning's dict
    ctx_dim: int = CTX
    detect_sd: dict = field(default_factory=dict)  # keys ComfyUI's model_type detection reads
    reference: bool = False  # an edit model: needs reference latents
    latent_hw: tuple[int, int] = (8, 8)  # the test's latent size in cells (patching must fit)
    passes: dict = field(default_factory=dict)  # conditioning key -> the diffusion model's argument it becomes
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


def _unet(ctx=CTX, adm=None, channels=4, mc=32):
    return {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "in_channels": channels, "out_channels": channels, "model_channels": mc, "num_res_blocks": [1],
            "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
            "transformer_depth_middle": 1, "context_dim": ctx, "use_linear_in_transformer": True,
            "adm_in_channels": adm, "num_classes": "sequential" if adm else None,
            "use_temporal_attention": False, "use_temporal_resblock": False}


def _flux(in_channels=16, guidance=True, **extra):
    return {"image_model": "flux", "in_channels": in_channels, "out_channels": 16, "vec_in_dim": 768,
            "context_in_dim": CTX, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
            "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True,
            "guidance_embed": guidance, **extra}


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


_QWEN = {"image_model": "qwen_image", "in_channels": 64, "out_channels": 16, "num_layers": 1, "attention_head_dim": 32,
         "num_attention_heads": 2, "joint_attention_dim": CTX, "axes_dims_rope": (8, 12, 12)}
_LLAMA = 24  # HiDream's Llama 3.1 hidden states (4096 wide, 32 layers in the real model)


FAMILIES: dict[str, Family] = {
    "sd15": Family("SD15", {**_unet(), "context_dim": 768, "num_heads": 8, "num_head_channels": -1}, 4, 8, 8,
                   "cfg", lambda h, w, s: {}, ctx_dim=768),
    "sd2-v": Family("SD20", {**_unet(ctx=1024, mc=64), "use_linear_in_transformer": True}, 4, 8, 8, "cfg",
                    lambda h, w, s: {}, ctx_dim=1024,
                    detect_sd={"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1, 1, 8)},
                    notes="v-prediction (ComfyUI's own detection reads the norm's spread)"),
    "sdxl": Family("SDXL", {**_unet(ctx=2048, adm=2816, mc=64), "transformer_depth": [2]}, 4, 8, 8, "cfg", _sdxl_cond,
                   ctx_dim=2048),
    "sd3": Family("SD3", {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 1, "input_size": None,
                          "adm_in_channels": 2048, "pos_embed_max_size": 16, "num_patches": 256,
                          "context_embedder_config": {"target": "torch.nn.Linear",
                                                      "params": {"in_features": CTX, "out_features": 64}},
                          "pos_embed_scaling_factor": None, "qk_norm": "rms", "x_block_self_attn_layers": []},
                  16, 8, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s, 2048)}),
    "auraflow": Family("AuraFlow", {"cond_seq_dim": CTX, "max_seq": 256, "n_double_layers": 1, "n_layers": 2,
                                    "dim": 64, "n_heads": 2, "patch_size": 2, "in_channels": 4},
                       4, 8, 16, "cfg", lambda h, w, s: {}),
    "flux-dev": Family("Flux", _flux(), 16, 8, 16, "basic",
                       lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 3.5}),
    "flux-schnell": Family("FluxSchnell", _flux(guidance=False), 16, 8, 16, "basic",
                           lambda h, w, s: {"pooled_output": _pooled(s)}),
    "flux-fill": Family("FluxInpaint", _flux(in_channels=96), 16, 8, 16, "basic",
                        lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 30.0,
                                         "concat_latent_image": torch.randn(1, 16, h, w, generator=_g(s + 300)),
                                         "concat_mask": torch.ones(1, 1, h * 8, w * 8)}),
    "flux-kontext": Family("Flux", _flux(), 16, 8, 16, "basic",
                           lambda h, w, s: {"pooled_output": _pooled(s), "guidance": 2.5,
                                            "reference_latents": _ref(h, w, s)}, reference=True),
    "chroma": Family("Chroma", {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": CTX,
                                "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
                                "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2,
                                "qkv_bias": True, "in_dim": 64, "out_dim": 64, "hidden_dim": 64, "n_layers": 1},
                     16, 8, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s)}),
    "lumina2": Family("Lumina2", {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64,
                                  "cap_feat_dim": CTX, "n_layers": 1, "n_refiner_layers": 1, "n_heads": 2,
                                  "n_kv_heads": 2, "multiple_of": 16, "qk_norm": True, "axes_dims": [8, 12, 12],
                                  "axes_lens": [300, 64, 64], "rope_theta": 10000.0, "ffn_dim_multiplier": 2.0},
                      16, 8, 16, "cfg", lambda h, w, s: {}),
    "z-image": Family("ZImage", {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256,
                                 "cap_feat_dim": CTX, "n_layers": 1, "n_refiner_layers": 1, "n_heads": 2,
                                 "n_kv_heads": 2, "multiple_of": 16, "qk_norm": True, "axes_dims": [32, 48, 48],
                                 "axes_lens": [300, 64, 64], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0,
                                 "z_image_modulation": True, "time_scale": 1000.0},
                      16, 8, 16, "cfg", lambda h, w, s: {}),
    "chroma-radiance": Family("ChromaRadiance", {
        "image_model": "chroma_radiance", "in_channels": 3, "out_channels": 3, "context_in_dim": CTX,
        "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
        "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 16, "qkv_bias": True, "in_dim": 64, "out_dim": 64,
        "hidden_dim": 64, "n_layers": 1, "nerf_hidden_size": 16, "nerf_mlp_ratio": 2, "nerf_depth": 1,
        "nerf_max_freqs": 4, "nerf_tile_size": 0, "nerf_final_head_type": "conv", "nerf_embedder_dtype": None},
        3, 1, 16, "cfg", lambda h, w, s: {"pooled_output": _pooled(s)}, latent_hw=(32, 32),
        notes="pixel space: the latent is the image, 3 channels, 1 px per cell"),
    "flux2": Family("Flux2", {
        "image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None, "context_in_dim": CTX,
        "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
        "axes_dim": [8, 8, 8, 8], "theta": 2000, "patch_size": 1, "qkv_bias": False, "guidance_embed": True,
        "global_modulation": True, "mlp_silu_act": True, "ops_bias": False, "default_ref_method": "index",
        "ref_index_scale": 10.0}, 128, 16, 16, "basic", lambda h, w, s: {"guidance": 4.0, "pooled_output": None}),
    "qwen-image": Family("QwenImage", _QWEN, 16, 8, 16, "cfg", lambda h, w, s: {},
                         notes="5-D Wan 2.1 latents; 2x2 patches packed to 64 channels"),
    "qwen-image-edit": Family("QwenImage", _QWEN, 16, 8, 16, "cfg",
                              lambda h, w, s: {"reference_latents": _qwen_refs(h, w, s)}, reference=True,
                              notes="Qwen-Image-Edit 2509: three reference latents of other sizes"),
    "hidream": Family("HiDream", {
        "image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 1,
        "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2, "caption_channels": [CTX, _LLAMA],
        "text_emb_dim": 48, "num_routed_experts": 2, "num_activated_experts": 1, "axes_dims_rope": [16, 8, 8],
        "max_resolution": [16, 16], "llama_layers": [0, 1]}, 16, 8, 16, "cfg",
        lambda h, w, s: {"pooled_output": _pooled(s, 48),
                         "conditioning_llama3": torch.randn(1, 2, 8, _LLAMA, generator=_g(s + 400))},
        passes={"pooled_output": "y", "conditioning_llama3": "encoder_hidden_states_llama3"},
        notes="T5 context, pooled CLIP-L/G, and one Llama hidden state per layer (its own key)"),
    "hunyuan-image-2.1": Family("HunyuanImage21", {
        "image_model": "hunyuan_video", "in_channels": 64, "out_channels": 64, "patch_size": [1, 1], "vec_in_dim": None,
        "axes_dim": [16, 16], "meanflow": False, "context_in_dim": CTX, "hidden_size": 64, "mlp_ratio": 2.0,
        "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "theta": 256, "qkv_bias": True, "byt5": True,
        "guidance_embed": False, "use_cond_type_embedding": False, "vision_in_dim": None}, 64, 32, 32, "cfg",
        lambda h, w, s: {"conditioning_byt5small": torch.randn(1, 4, 1472, generator=_g(s + 500))},
        passes={"conditioning_byt5small": "txt_byt5"},
        notes="64-channel latents, 32 px per cell; the ByT5 glyph mapper keeps its real 1472 -> 2048 widths"),
    "cosmos-predict2": Family("CosmosT2IPredict2", {
        "image_model": "cosmos_predict2", "max_img_h": 16, "max_img_w": 16, "max_frames": 4, "in_channels": 16,
        "out_channels": 16, "patch_spatial": 2, "patch_temporal": 1, "concat_padding_mask": True, "model_channels": 64,
        "num_blocks": 1, "num_heads": 2, "crossattn_emb_channels": CTX, "pos_emb_cls": "rope3d",
        "pos_emb_learnable": True, "pos_emb_interpolation": "crop", "min_fps": 1, "max_fps": 30,
        "use_adaln_lora": True, "adaln_lora_dim": 16, "extra_per_block_abs_pos_emb": False,
        "rope_h_extrapolation_ratio": 4.0, "rope_w_extrapolation_ratio": 4.0, "rope_t_extrapolation_ratio": 1.0,
        "extra_h_extrapolation_ratio": 1.0, "extra_w_extrapolation_ratio": 1.0, "extra_t_extrapolation_ratio": 1.0,
        "rope_enable_fps_modulation": False}, 16, 8, 16, "cfg", lambda h, w, s: {},
        notes="EDM-style flow (FLOW_COSMOS), 5-D Wan 2.1 latents"),
    "omnigen2": Family("Omnigen2", {
        "image_model": "omnigen2", "axes_dim_rope": [8, 12, 12], "axes_lens": [300, 64, 64],
        "ffn_dim_multiplier": None, "hidden_size": 64, "in_channels": 16, "multiple_of": 16, "norm_eps": 1e-5,
        "num_attention_heads": 2, "num_kv_heads": 1, "num_layers": 1, "num_refiner_layers": 1, "out_channels": None,
        "patch_size": 2, "text_feat_dim": CTX, "timestep_scale": 1000.0}, 16, 8, 16, "cfg",
        lambda h, w, s: {"attention_mask": torch.ones(1, 8, dtype=torch.long),
                         "reference_latents": _ref(h, w, s)}, reference=True,
        notes="the text encoder's attention mask gives the token count; a reference latent (its edit mode)"),
}


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
    comfy_engine_path()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    fam = FAMILIES[name]
    config = getattr(sm, fam.config)(fam.unet_config)
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model(dict(fam.detect_sd), "")
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
