"""The family templates in the real ComfyUI engine, with tiny model files under the real names.

Wan 2.2 video inpainting (``Blended - Wan 2.2 video edit``): UNETLoader loads a tiny Wan
file that core's ``model_detection`` detects from its key shapes (Wan 2.2 A14B's layout is Wan
2.1's: one block, width 128, random weights) and VAELoader a tiny Wan 2.1 VAE (width read off
``decoder.head.0.gamma``). The text encoder cannot be made tiny: ComfyUI 0.3.75 builds UMT5-XXL
from a fixed config (``comfy/text_encoders/umt5_config_xxl.json``: d_model 4096, 24 layers, 5.7 B
parameters), whatever the file holds. So this test, and only it, replaces the shipped CLIPLoader +
two CLIPTextEncode by a test-only node (written into this server's custom_nodes/) that gives
conditioning of UMT5-XXL's shape [1, tokens, 4096]; every other node is as shipped, at a small
resolution and two steps. A SaveImage on the stitched frames lets the test compare pixels.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from comfy_harness import api_workflow
from PIL import Image
from sd15_fixture import comfy_engine_path

from scripts.comfy_engine import (
    REPO,
    ComfyServer,
    execution_error,
    output_images,
    prepare_base,
)

WAN_VIDEO = "Blended - Wan 2.2 video edit"
FLUX = "Blended - Flux.1 dev edit"
EXAMPLES = REPO / "workflows" / "examples"

TEST_NODE = '''
import torch


class BlendedTestUMT5Conditioning:
    """Test only: conditioning of UMT5-XXL's / T5-XXL's shape [1, tokens, 4096] (and CLIP-L's pooled
    output for Flux), for servers without the 4.7-5.7 B text encoders."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0}), "pooled": ("INT", {"default": 0})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed, pooled):
        gen = torch.Generator().manual_seed(seed)
        extra = {"pooled_output": torch.randn(1, pooled, generator=gen)} if pooled else {}
        return ([[torch.randn(1, 12, 4096, generator=gen), extra]],)


NODE_CLASS_MAPPINGS = {"BlendedTestUMT5Conditioning": BlendedTestUMT5Conditioning}
'''


def write_tiny_wan(path):
    comfy_engine_path()
    import comfy.ldm.wan.model
    import comfy.ops
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = comfy.ldm.wan.model.WanModel(model_type="t2v", in_dim=16, dim=128, ffn_dim=64, freq_dim=256, out_dim=16,
                                       num_heads=1, num_layers=1, operations=comfy.ops.disable_weight_init)
    sd = {k: torch.randn_like(v) * 0.05 for k, v in net.state_dict().items()}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def write_tiny_wan_vae(path):
    comfy_engine_path()
    import comfy.ldm.wan.vae
    from safetensors.torch import save_file

    torch.manual_seed(1)
    net = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    sd = {k: (torch.randn_like(v) * 0.1 if v.dim() > 1 else torch.zeros_like(v)) for k, v in net.state_dict().items()}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def write_small_flux(path):
    """Flux.1 dev as core detects it: the head count (24) and rope axes (16+56+56) are fixed in
    ``model_detection``, so the width must be the real 3072; depth is counted from the keys, so one
    double and one single block (545 M parameters, 1.1 GB in fp16, instead of 12 B)."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.flux.model import Flux
    from safetensors.torch import save_file

    cfg = dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0,
               num_heads=24, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000, qkv_bias=True,
               guidance_embed=True, patch_size=2)
    with torch.device("meta"):
        net = Flux(image_model="flux", **cfg, operations=comfy.ops.disable_weight_init, device="meta")
    gen = torch.Generator().manual_seed(2)
    sd = {k: (torch.randn(v.shape, generator=gen) * 0.02 if v.dim() > 1 else torch.ones(v.shape)).half()
          for k, v in net.state_dict().items()}
    save_file(sd, str(path))


def write_flux_vae(path):
    """The Flux VAE (ae.safetensors) layout: core reads only its latent channels (16) off the keys;
    width and depth are fixed (84 M parameters)."""
    comfy_engine_path()
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from safetensors.torch import save_file

    dd = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        net = AutoencoderKL(ddconfig=dd, embed_dim=16)
    gen = torch.Generator().manual_seed(3)

    def value(k, v):  # weights random, norm scales 1, biases 0
        if v.dim() > 1:
            return torch.randn(v.shape, generator=gen) * 0.02
        return torch.ones(v.shape) if k.endswith("weight") else torch.zeros(v.shape)

    sd = {k: value(k, v).half() for k, v in net.state_dict().items() if "quant_conv" not in k}  # ae has none
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def family_server(comfy, tmp_path_factory):
    """A second server on the session's engine copy, with the tiny files under the templates' names."""
    root = tmp_path_factory.mktemp("family")
    base = prepare_base(root / "base")
    graph, flux = api_workflow(WAN_VIDEO), api_workflow(FLUX)
    for sub in ("diffusion_models", "vae"):
        (base / "models" / sub).mkdir(parents=True, exist_ok=True)
    write_tiny_wan(base / "models" / "diffusion_models" / graph["4"]["inputs"]["unet_name"])
    write_tiny_wan_vae(base / "models" / "vae" / graph["9"]["inputs"]["vae_name"])
    write_small_flux(base / "models" / "diffusion_models" / flux["2"]["inputs"]["unet_name"])
    write_flux_vae(base / "models" / "vae" / flux["7"]["inputs"]["vae_name"])
    (base / "custom_nodes" / "blended_test_umt5_conditioning.py").write_text(TEST_NODE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1")
    server = ComfyServer(comfy.server.engine, base, env=env, log_path=root / "comfyui.log", cpu=True)
    server.start()
    try:
        yield server, base
    finally:
        server.stop()


def source_frames():
    import av

    with av.open(str(EXAMPLES / "blended_video.mp4")) as f:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])


def test_wan_video_template_shape():
    g = api_workflow(WAN_VIDEO)
    loaders = {n["class_type"]: n["inputs"] for n in g.values() if n["class_type"].endswith("Loader")}
    assert loaders["UNETLoader"]["unet_name"] == "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    assert loaders["CLIPLoader"] == {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan",
                                     "device": "default"}
    assert loaders["VAELoader"]["vae_name"] == "wan_2.1_vae.safetensors"  # Wan 2.2 A14B uses the 2.1 VAE
    crop = g["10"]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (480, 16)  # 480p; VAE 8 x patch 2
    assert g["14"]["inputs"]["video"] is True
    assert len(source_frames()) % 4 == 1  # the 1 + 4n frames the Wan VAE decodes back


def test_wan_video_template_runs_and_keeps_every_frame_outside_the_mask(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(WAN_VIDEO))
    del graph["6"]
    for node, seed in (("7", 1), ("8", 2)):
        graph[node] = {"class_type": "BlendedTestUMT5Conditioning", "inputs": {"seed": seed, "pooled": 0}}
    graph["10"]["inputs"]["resolution"] = 64
    graph["12"]["inputs"]["steps"] = 2
    graph["12"]["inputs"]["batch_size"] = 2  # two clips: the stitch must place frame i of each on source frame i
    graph["90"] = {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "test/frames"}}
    entry = server.run(graph, timeout=600)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"

    frames = source_frames()
    alpha = np.asarray(Image.open(EXAMPLES / "blended_video_mask.png").convert("RGBA"))[..., 3]
    outside = alpha == 255  # LoadImageMask(alpha): edit = 1 - alpha
    saved = [i for i in output_images(entry) if i["filename"].startswith("frames")]
    assert len(saved) == 2 * len(frames)
    for i, img in enumerate(saved):
        out = np.asarray(Image.open(base / "output" / img["subfolder"] / img["filename"]).convert("RGB"))
        src = frames[i % len(frames)]
        assert np.array_equal(out[outside], src[outside]), f"output frame {i}: background changed"
        assert (out[~outside] != src[~outside]).any()
    videos = list((base / "output" / "blended").glob("latent_wan22_video_inpainting*"))
    assert videos and videos[0].stat().st_size > 0


def test_flux_template_shape():
    g = api_workflow(FLUX)
    assert g["2"]["inputs"]["unet_name"] == "flux1-dev.safetensors"
    assert (g["3"]["inputs"]["clip_name1"], g["3"]["inputs"]["clip_name2"], g["3"]["inputs"]["type"]) == (
        "clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux")
    assert g["7"]["inputs"]["vae_name"] == "ae.safetensors"
    assert (g["8"]["inputs"]["resolution"], g["8"]["inputs"]["multiple"]) == (1024, 16)  # VAE 8 x patch 2
    assert g["5"]["class_type"] == "FluxGuidance" and g["10"]["inputs"]["cfg"] == 1.0  # guidance-distilled dev


def test_flux_template_runs_and_keeps_the_background_exact(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(FLUX))
    del graph["3"]  # T5-XXL: 4.7 B parameters from a fixed config; CLIP-L's pooled output comes with it
    graph["4"] = {"class_type": "BlendedTestUMT5Conditioning", "inputs": {"seed": 1, "pooled": 768}}
    graph["8"]["inputs"]["resolution"] = 64
    graph["10"]["inputs"]["steps"] = 2
    entry = server.run(graph, timeout=600)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    rgba = np.asarray(Image.open(EXAMPLES / "blended_object.png"))
    outside = rgba[..., 3] == 255
    saved = output_images(entry)
    assert len(saved) == graph["10"]["inputs"]["batch_size"]
    for img in saved:
        out = np.asarray(Image.open(base / "output" / img["subfolder"] / img["filename"]).convert("RGB"))
        assert np.array_equal(out[outside], rgba[..., :3][outside])
        assert (out[~outside] != rgba[..., :3][~outside]).any()
