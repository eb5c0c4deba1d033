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

The image templates run the same way: each model file is written under the template's file name
just before its test (core rescans a model folder when it changes) and the models are freed after
it. SDXL: a single-file checkpoint core loads with SDXL's classes (tests/support/sdxl_fixture.py says why
the UNet is Segmind Vega's depth). Z-Image: a diffusion model core detects as Z-Image (its width,
3840, is what detection keys on; one layer) and the Flux VAE layout; the Qwen3-4B text encoder is
built from a fixed config (``Qwen3_4BConfig``, 4 B parameters) whatever the file holds, so it is
replaced as for Flux, by conditioning of its shape [1, tokens, 2560]. Qwen-Image-Edit 2509: a
one-block diffusion model at the real width, the Wan 2.1 VAE layout; the Qwen2.5-VL 7B encoder
(fixed config) is replaced by a test node that gives [1, tokens, 3584] conditioning with the crop
encoded by the template's VAE as its reference latent, as TextEncodeQwenImageEditPlus attaches it
(at the crop's own size, not scaled to about 1 Mpx: that would put 4096 more tokens in every model call).
What those replacements leave out is sent once more as shipped, to a server whose model files are
empty placeholders: /prompt must accept every graph, and the run must stop only at a loader.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.engine.comfy_engine import (
    REPO,
    PromptRejected,
    describe_rejection,
    execution_error,
    output_images,
    prepare_base,
)
from tests.support.comfy_harness import api_workflow, offline_server, served_reports
from tests.support.latent_families import detected_config
from tests.support.sd15_fixture import comfy_engine_path, write_random_checkpoint
from tests.support.sdxl_fixture import write_random_sdxl

WAN_VIDEO = "Blended - Wan 2.2 video edit"
FLUX = "Blended - Flux.1 dev edit"
SDXL = "Blended - SDXL edit"
Z_IMAGE = "Blended - Z-Image edit"
QWEN_EDIT = "Blended - Qwen-Image-Edit"
QWEN_CONFINED = "Blended - Qwen-Image-Edit, confined"
FLUX2 = "Blended - Flux.2 dev edit"
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


class BlendedTestTextConditioning:
    """Test only: conditioning of a large text encoder's shape [1, tokens, width], for servers
    without the 4-7 B encoders (Qwen3-4B: 2560, Qwen2.5-VL 7B: 3584). Given a VAE and an image, it
    also attaches the image encoded by that VAE as a reference latent, as TextEncodeQwenImageEditPlus does."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0}), "width": ("INT", {"default": 2560})},
                "optional": {"vae": ("VAE",), "image": ("IMAGE",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed, width, vae=None, image=None):
        gen = torch.Generator().manual_seed(seed)
        extra = {"pooled_output": None}  # as core's encode_from_tokens_scheduled gives for these encoders
        if vae is not None:
            extra["reference_latents"] = [vae.encode(image[:, :, :, :3])]
        return ([[torch.randn(1, 12, width, generator=gen), extra]],)


NODE_CLASS_MAPPINGS = {"BlendedTestUMT5Conditioning": BlendedTestUMT5Conditioning,
                       "BlendedTestTextConditioning": BlendedTestTextConditioning}
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
    ``model_detection``, so the width must be the real 3072; every field is the engine's own detection
    of the real layout (a field a newer ComfyUI adds, such as 0.33's ``txt_ids_dims``, comes with it);
    depth is counted from the keys, so one double and one single block (545 M parameters, 1.1 GB in
    fp16, instead of 12 B)."""
    from safetensors.torch import save_file

    net = small_flux_net("flux-dev")
    gen = torch.Generator().manual_seed(2)
    sd = {k: (torch.randn(v.shape, generator=gen) * 0.02 if v.dim() > 1 else torch.ones(v.shape)).half()
          for k, v in net.state_dict().items()}
    save_file(sd, str(path))


def small_flux_net(family: str):
    """A Flux-class model on the meta device with the engine's detected config of ``family``'s real
    layout and one double and one single block."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.flux.model import Flux

    config = dict(detected_config(family).unet_config, depth=1, depth_single_blocks=1)
    with torch.device("meta"):
        return Flux(**config, operations=comfy.ops.disable_weight_init, device="meta")


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


def write_meta_model(net, path, seed, family):
    """A diffusion model built on the meta device, written with random weights (fan-in scaled), once
    core's own detection (what UNETLoader runs on the file's keys and shapes) names it ``family``."""
    import comfy.model_detection

    sd = net.state_dict()
    detected = type(comfy.model_detection.model_config_from_unet(sd, "")).__name__
    assert detected == family, f"core detects this layout as {detected}, not {family}"
    write_random_checkpoint(path, {k: (tuple(v.shape), v.dtype) for k, v in sd.items()}, seed)


def write_small_z_image(path):
    """Z-Image as core detects it: ``model_detection`` keys on the width (3840) and fixes heads, rope
    and modulation from it; layers are counted (one, plus the two refiner blocks of each kind) and the
    caption width is read off ``cap_embedder`` (Qwen3-4B's 2560). 0.9 B parameters instead of 6 B."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.lumina.model import NextDiT

    with torch.device("meta"):
        net = NextDiT(patch_size=2, in_channels=16, dim=3840, n_layers=1, n_heads=30, n_kv_heads=30, qk_norm=True,
                      cap_feat_dim=2560, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512], rope_theta=256.0,
                      ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True, time_scale=1000.0,
                      pad_tokens_multiple=32, device="meta", operations=comfy.ops.disable_weight_init)
    write_meta_model(net, path, seed=4, family="ZImage")


def write_small_qwen_image(path):
    """Qwen-Image (its Edit 2509 has the same layout) as core detects it: ``txt_norm`` marks the family,
    input channels and block count are read off the keys, the width (24 heads x 128) and the text
    width (3584) are the model's defaults. One block: 0.4 B parameters instead of 20 B."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel

    with torch.device("meta"):
        net = QwenImageTransformer2DModel(num_layers=1, image_model="qwen_image", device="meta",
                                          operations=comfy.ops.disable_weight_init)
    write_meta_model(net, path, seed=5, family="QwenImage")


@pytest.fixture(scope="module")
def family_server(comfy, tmp_path_factory):
    """A second server on the session's engine copy, with the tiny files under the templates' names."""
    root = tmp_path_factory.mktemp("family")
    base = prepare_base(root / "base")
    wan_video_models(base / "models")
    flux_models(base / "models")
    (base / "custom_nodes" / "blended_test_umt5_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


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
    wan_video_stand_ins(graph)
    graph["10"]["inputs"]["resolution"] = 64
    graph["12"]["inputs"]["steps"] = 2
    graph["12"]["inputs"]["batch_size"] = 2  # two clips: the stitch must place frame i of each on source frame i
    graph["90"] = {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "test/frames"}}
    # the frames as this engine decoded them: the source the stitch must keep. ComfyUI 0.33's LoadVideo
    # converts colour differently from 0.3.75's (up to 41 levels from PyAV's rgb24 at sharp colour edges,
    # chroma upsampling), so the reference is the engine's own decode, checked against PyAV's frame
    # count, size and mean colour
    graph["91"] = {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "test/source"}}
    entry = server.run(graph, timeout=600)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"

    pyav = source_frames()
    loaded = [np.asarray(Image.open(base / "output" / i["subfolder"] / i["filename"]).convert("RGB"))
              for i in output_images(entry) if i["filename"].startswith("source")]
    assert len(loaded) == len(pyav) and loaded[0].shape == pyav[0].shape
    drift = max(float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(loaded, pyav))
    assert drift < 2, f"the engine's decode is {drift:.2f} levels from PyAV's on average: another video?"
    alpha = np.asarray(Image.open(EXAMPLES / "blended_video_mask.png").convert("RGBA"))[..., 3]
    outside = alpha == 255  # LoadImageMask(alpha): edit = 1 - alpha
    saved = [i for i in output_images(entry) if i["filename"].startswith("frames")]
    assert len(saved) == 2 * len(loaded)
    for i, img in enumerate(saved):
        out = np.asarray(Image.open(base / "output" / img["subfolder"] / img["filename"]).convert("RGB"))
        src = loaded[i % len(loaded)]
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
    flux_stand_ins(graph)
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



def write_small_flux2(path):
    """Flux.2 dev as core detects it: ``double_stream_modulation_img`` marks the family and fixes 48
    heads and rope axes 4 x 32, so the width is the real 6144; the text width (Mistral Small 3's
    three stacked layers, 15360) and the depth are read off the keys; the rest is the engine's own
    detection of the real layout. One double and one single block: 2.3 B parameters instead of 32 B."""
    write_meta_model(small_flux_net("flux2"), path, seed=6, family="Flux2")


def write_flux2_vae(path):
    """The Flux.2 VAE layout: the SD/Flux KL autoencoder with 32 latent channels, quant convs and a
    batch norm over 2x2-patchified latents (``bn.running_mean`` is what core keys on: 128 channels,
    16 px per latent cell)."""
    comfy_engine_path()
    from comfy.ldm.models.autoencoder import AutoencoderKL

    dd = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
          "batch_norm_latent": True}
    with torch.device("meta"):
        net = AutoencoderKL(ddconfig=dd, embed_dim=32)
    write_random_checkpoint(path, {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}, seed=7)

def free_models(server):
    """Each image family's model is large; the next test needs the memory."""
    server.post("/free", {"unload_models": True, "free_memory": True})


def run_and_free(server, graph) -> dict:
    """Run ``graph`` to the end (models freed after, whatever happened) and insist it raised nothing."""
    try:
        entry = server.run(graph, timeout=900)
    finally:
        free_models(server)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    return entry


def cheapen(graph: dict) -> None:
    """The engine tests' cost cuts (CPU time; random weights also drift to NaN over 100 steps): a 64 px
    crop and 2 steps for the latent samplers, 4 pixel steps skipping the shipped share of them."""
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "BlendedLatentCrop":
            inputs["resolution"] = 64
        if node["class_type"] in ("BlendedLatentSampler", "KSampler"):
            inputs["steps"] = 2
        if node["class_type"] == "BlendedSampler":
            inputs["skip_timesteps"] = round(inputs["skip_timesteps"] * 4 / int(inputs["steps"]))
            inputs["steps"] = "4"


def check_object_edit(server, base, graph):
    """Runs ``graph`` (a template on blended_object.png, its SaveImage as shipped) at a 64 px crop and
    2 steps (CPU time) and checks every saved image: outside the photo's mask the source pixels
    exactly, inside some change."""
    cheapen(graph)
    entry = run_and_free(server, graph)
    rgba = np.asarray(Image.open(EXAMPLES / "blended_object.png"))
    outside = rgba[..., 3] == 255
    sampler = next(n for n in graph.values() if n["class_type"] == "BlendedLatentSampler")
    saved = output_images(entry)
    assert len(saved) == sampler["inputs"]["batch_size"]
    for img in saved:
        out = np.asarray(Image.open(base / "output" / img["subfolder"] / img["filename"]).convert("RGB"))
        assert np.array_equal(out[outside], rgba[..., :3][outside])
        assert (out[~outside] != rgba[..., :3][~outside]).any()


def node_of(graph, class_type):
    (key,) = [k for k, n in graph.items() if n["class_type"] == class_type]
    return key


# Loader class -> (its file inputs, the models/ folder ComfyUI lists them from).
LOADER_FILES = {
    "CheckpointLoaderSimple": (("ckpt_name",), "checkpoints"),
    "UNETLoader": (("unet_name",), "diffusion_models"),
    "CLIPLoader": (("clip_name",), "text_encoders"),
    "DualCLIPLoader": (("clip_name1", "clip_name2"), "text_encoders"),
    "VAELoader": (("vae_name",), "vae"),
}


# --- each template's test setup: its model files, and stand-ins for encoders that cannot be tiny ----------
# The engine tests below and the app runs (tests/test_app_mode.py) use the same ones.


def model_file(models, name, class_type):
    """Where ``class_type``'s file of template ``name`` goes under ``models`` (its folder made)."""
    graph = api_workflow(name)
    keys, folder = LOADER_FILES[class_type]
    path = models / folder / graph[node_of(graph, class_type)]["inputs"][keys[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_if_missing(path, write):
    """Templates share files (the Flux VAE, the Qwen model): written once per models folder."""
    if not path.exists():
        write(path)


def wan_video_models(models):
    write_tiny_wan(model_file(models, WAN_VIDEO, "UNETLoader"))
    write_tiny_wan_vae(model_file(models, WAN_VIDEO, "VAELoader"))


def wan_video_stand_ins(graph):
    """UMT5-XXL (5.7 B parameters from a fixed config) gives way to conditioning of its shape."""
    del graph[node_of(graph, "CLIPLoader")]
    for seed, key in enumerate([k for k, n in graph.items() if n["class_type"] == "CLIPTextEncode"]):
        graph[key] = {"class_type": "BlendedTestUMT5Conditioning", "inputs": {"seed": seed + 1, "pooled": 0}}


def flux_models(models):
    write_small_flux(model_file(models, FLUX, "UNETLoader"))
    write_if_missing(model_file(models, FLUX, "VAELoader"), write_flux_vae)


def flux_stand_ins(graph):
    """T5-XXL: 4.7 B parameters from a fixed config; CLIP-L's pooled output comes with it."""
    del graph[node_of(graph, "DualCLIPLoader")]
    graph[node_of(graph, "CLIPTextEncode")] = {"class_type": "BlendedTestUMT5Conditioning",
                                               "inputs": {"seed": 1, "pooled": 768}}


def sdxl_models(models):
    write_random_sdxl(model_file(models, SDXL, "CheckpointLoaderSimple"))


def z_image_models(models):
    write_small_z_image(model_file(models, Z_IMAGE, "UNETLoader"))
    write_if_missing(model_file(models, Z_IMAGE, "VAELoader"), write_flux_vae)  # Z-Image uses the Flux VAE


def text_stand_ins(width):
    """Replaces the CLIPLoader and its encoders by conditioning [1, tokens, ``width``]: the encoders
    these templates load (Qwen3-4B, Mistral Small 3) are built from fixed configs of 4-24 B parameters."""
    def stand_ins(graph):
        del graph[node_of(graph, "CLIPLoader")]
        for seed, key in enumerate([k for k, n in graph.items() if n["class_type"] == "CLIPTextEncode"]):
            graph[key] = {"class_type": "BlendedTestTextConditioning", "inputs": {"seed": seed + 1, "width": width}}
    return stand_ins


z_image_stand_ins = text_stand_ins(2560)  # Qwen3-4B
flux2_stand_ins = text_stand_ins(15360)  # Mistral Small 3's three stacked layers


def qwen_edit_models(models, name=None):
    write_if_missing(model_file(models, name or QWEN_EDIT, "UNETLoader"), write_small_qwen_image)
    write_if_missing(model_file(models, name or QWEN_EDIT, "VAELoader"), write_tiny_wan_vae)


def qwen_edit_stand_ins(graph):
    """Qwen2.5-VL 7B (a fixed config) gives way to [1, tokens, 3584] conditioning with the crop
    encoded by the template's VAE as its reference latent, as TextEncodeQwenImageEditPlus attaches it."""
    del graph[node_of(graph, "CLIPLoader")]
    keys = [k for k, n in graph.items() if n["class_type"] == "TextEncodeQwenImageEditPlus"]
    for seed, key in enumerate(keys):
        inputs = graph[key]["inputs"]
        graph[key] = {"class_type": "BlendedTestTextConditioning",
                      "inputs": {"seed": seed + 1, "width": 3584, "vae": inputs["vae"], "image": inputs["image1"]}}


def flux2_models(models):
    write_small_flux2(model_file(models, FLUX2, "UNETLoader"))
    write_flux2_vae(model_file(models, FLUX2, "VAELoader"))


def test_sdxl_template_shape():
    g = api_workflow(SDXL)
    assert g[node_of(g, "CheckpointLoaderSimple")]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (1024, 8)  # SDXL's native size; VAE 8, no patching
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (30, 6.0, "dpmpp_2m", "karras")


def test_sdxl_template_runs_and_keeps_the_background_exact(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(SDXL))
    sdxl_models(base / "models")
    check_object_edit(server, base, graph)


def test_z_image_template_shape():
    g = api_workflow(Z_IMAGE)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "z_image_turbo_bf16.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2",
                                                     "device": "default"}
    assert g[node_of(g, "VAELoader")]["inputs"]["vae_name"] == "ae.safetensors"  # Z-Image uses the Flux VAE
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (1024, 16)  # VAE 8 x patch 2
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (8, 1.0, "res_multistep", "simple")  # Turbo


def test_z_image_template_runs_and_keeps_the_background_exact(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(Z_IMAGE))
    z_image_models(base / "models")
    z_image_stand_ins(graph)
    check_object_edit(server, base, graph)


def test_qwen_edit_template_shape():
    g = api_workflow(QWEN_EDIT)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                                     "type": "qwen_image", "device": "default"}
    vae, crop = node_of(g, "VAELoader"), node_of(g, "BlendedLatentCrop")
    assert g[vae]["inputs"]["vae_name"] == "qwen_image_vae.safetensors"
    assert (g[crop]["inputs"]["resolution"], g[crop]["inputs"]["multiple"]) == (1024, 16)
    encoders = [n for n in g.values() if n["class_type"] == "TextEncodeQwenImageEditPlus"]
    assert len(encoders) == 2  # positive (the instruction) and negative, both given the crop as reference
    for n in encoders:
        assert n["inputs"]["vae"] == [vae, 0] and n["inputs"]["image1"] == [crop, 0]
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert g[s["positive"][0]]["inputs"]["prompt"] and g[s["negative"][0]]["inputs"]["prompt"] == ""


def test_qwen_edit_template_runs_and_keeps_the_background_exact(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(QWEN_EDIT))
    qwen_edit_models(base / "models")
    qwen_edit_stand_ins(graph)
    check_object_edit(server, base, graph)


def test_qwen_confined_template_shape():
    """Core's Qwen-Image-Edit 2509 graph (whole photo, KSampler at denoise 1, CFGNorm), scaled to about 1 Mpx
    keeping its aspect (FluxKontextImageScale's crop would move the picture), then Blended Confine Edit
    on the photo at its own size: no mask anywhere."""
    g = api_workflow(QWEN_CONFINED)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "qwen_image_edit_2509_fp8_e4m3fn.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                                     "type": "qwen_image", "device": "default"}
    vae, photo, scale = node_of(g, "VAELoader"), node_of(g, "LoadImage"), node_of(g, "ImageScaleBy")
    assert g[vae]["inputs"]["vae_name"] == "qwen_image_vae.safetensors"
    # the 600x400 example to 0.96 Mpx, about the 1 Mpx Qwen-Image-Edit works at
    assert g[scale]["inputs"] == {"image": [photo, 0], "upscale_method": "lanczos", "scale_by": 2.0}
    for n in (n for n in g.values() if n["class_type"] == "TextEncodeQwenImageEditPlus"):
        assert n["inputs"]["vae"] == [vae, 0] and n["inputs"]["image1"] == [scale, 0]
    s = g[node_of(g, "KSampler")]["inputs"]
    assert g[s["positive"][0]]["inputs"]["prompt"] and g[s["negative"][0]]["inputs"]["prompt"] == ""
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"], s["denoise"]) == (20, 2.5, "euler", "simple", 1.0)
    assert g[s["latent_image"][0]]["inputs"]["pixels"] == [scale, 0]
    confine = g[node_of(g, "BlendedConfineEdit")]["inputs"]
    assert confine["source"] == [photo, 0] and g[confine["edited"][0]]["class_type"] == "VAEDecode"
    assert confine["seam"] == "gradient domain"
    assert not any(v == [photo, 1] for n in g.values() for v in n["inputs"].values())  # the photo's mask: unused
    assert g[node_of(g, "PreviewAny")]["inputs"]["source"] == [node_of(g, "BlendedConfineEdit"), 2]


def check_confined_edit(server, base, graph) -> str:
    """Runs a confined template (``graph``, its encoders replaced) at 150x100 px (scale_by 0.25) and 2
    steps and returns its report. A random-weight editor changes every pixel, so its decode is made to
    look like an instruction edit's before Blended Confine Edit sees it: the decode inside the photo's
    own alpha region (the cup; the template does not use it), and 3 % of the decode everywhere else (the
    small global drift an editor leaves outside its edit). Then: outside the found mask the saved result
    is the photo bit for bit, inside it differs, and the report gives the region's share (the mask's)
    and the unconfined edit's change outside it (mean, max)."""
    import re

    graph[node_of(graph, "ImageScaleBy")]["inputs"]["scale_by"] = 0.25  # 150x100 px
    graph[node_of(graph, "KSampler")]["inputs"]["steps"] = 2
    photo, decode = node_of(graph, "LoadImage"), node_of(graph, "VAEDecode")
    confine = node_of(graph, "BlendedConfineEdit")
    graph["90"] = {"class_type": "ImageBlend", "inputs": {"image1": [photo, 0], "image2": [decode, 0],
                                                          "blend_factor": 0.03, "blend_mode": "normal"}}
    graph["91"] = {"class_type": "ImageCompositeMasked", "inputs": {"destination": ["90", 0], "source": [decode, 0],
                                                                    "x": 0, "y": 0, "resize_source": True,
                                                                    "mask": [photo, 1]}}
    graph[confine]["inputs"]["edited"] = ["91", 0]
    graph["92"] = {"class_type": "MaskToImage", "inputs": {"mask": [confine, 1]}}
    graph["93"] = {"class_type": "SaveImage", "inputs": {"images": ["92", 0], "filename_prefix": "test/confine_mask"}}
    entry = run_and_free(server, graph)

    source = np.asarray(Image.open(EXAMPLES / "blended_object.png"))[..., :3]
    saved = {img["subfolder"]: base / "output" / img["subfolder"] / img["filename"] for img in output_images(entry)}
    assert set(saved) == {"blended", "test"}, saved
    out = np.asarray(Image.open(saved["blended"]).convert("RGB"))
    found = np.asarray(Image.open(saved["test"]).convert("L"))
    assert out.shape == source.shape and found.shape == source.shape[:2]  # the photo's own size
    assert set(np.unique(found)) <= {0, 255}
    outside = found == 0
    assert 0.2 < outside.mean() < 0.99, f"found region {1 - outside.mean():.3f} of the image"
    assert np.array_equal(out[outside], source[outside])  # the source bit for bit
    assert (out[~outside] != source[~outside]).any()  # the edit inside

    report = entry["outputs"][node_of(graph, "PreviewAny")]["text"][0]
    assert report.startswith("confined with gradient domain"), report
    assert served_reports(server, entry) == {confine: report}  # the app's "Where it changed": a .txt result
    region = re.search(r"region ([0-9.]+)% of the image", report)
    mean, peak = re.search(r"outside by mean ([0-9.]+), max ([0-9.]+)", report).groups()
    assert region and abs(float(region.group(1)) - 100 * (1 - outside.mean())) < 0.1, report
    assert 0 < float(mean) <= float(peak), report  # the 3 % drift, taken away outside the region
    return report


def test_qwen_confined_template_runs_and_keeps_the_photo_exact_outside_the_found_region(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(QWEN_CONFINED))
    qwen_edit_models(base / "models", QWEN_CONFINED)
    qwen_edit_stand_ins(graph)
    check_confined_edit(server, base, graph)


def test_flux2_template_shape():
    g = api_workflow(FLUX2)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "flux2_dev_fp8mixed.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "mistral_3_small_flux2_fp8.safetensors",
                                                     "type": "flux2", "device": "default"}
    assert g[node_of(g, "VAELoader")]["inputs"]["vae_name"] == "flux2-vae.safetensors"
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (1024, 16)  # 16 px per latent cell, patch 1
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert g[s["positive"][0]]["class_type"] == "FluxGuidance" and s["cfg"] == 1.0  # guidance-distilled dev


def test_flux2_template_runs_and_keeps_the_background_exact(family_server):
    server, base = family_server
    graph = copy.deepcopy(api_workflow(FLUX2))
    flux2_models(base / "models")
    flux2_stand_ins(graph)
    check_object_edit(server, base, graph)


SHIPPED = (WAN_VIDEO, FLUX, SDXL, Z_IMAGE, QWEN_EDIT, QWEN_CONFINED, FLUX2)


@pytest.fixture(scope="module")
def placeholder_server(comfy, tmp_path_factory):
    """A server whose model folders hold an empty file under every name the latent templates load, so
    the shipped graphs, text encoders included, pass or fail the server's own /prompt validation (it
    checks each file name against the folder's listing, each link's type and each widget's range)."""
    root = tmp_path_factory.mktemp("placeholders")
    base = prepare_base(root / "base")
    for name in SHIPPED:
        for node in api_workflow(name).values():
            if node["class_type"] in LOADER_FILES:
                keys, folder = LOADER_FILES[node["class_type"]]
                for key in keys:
                    f = base / "models" / folder / node["inputs"][key]
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.touch()
    with offline_server(comfy, base, root) as server:
        yield server


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_graph_passes_the_servers_validation(placeholder_server, name):
    """The engine tests above replace the text encoders; this sends each graph exactly as shipped. An
    empty model file cannot load, so the run must stop at a loader, after validation accepted it all."""
    graph = api_workflow(name)
    try:
        entry = placeholder_server.run(graph, timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{name}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in LOADER_FILES, error


@pytest.mark.parametrize("name", (SDXL, Z_IMAGE, QWEN_EDIT, FLUX2, "Blended - Anima edit", "Blended - Krea 2 edit"))
def test_the_main_job_puts_the_prompt_in_the_positive_encoder_only(tmp_path, name):
    """``--template`` walks from the sampler's positive to its encoder ("text" or, for Qwen-Image-Edit,
    "prompt"); the negative encoder (or the zeroed positive, Krea 2's) and every other node stay as
    shipped. No engine is needed: the 0.33-only templates are checked on every engine."""
    from scripts.cli.edit_graphs import LOADER_FOLDERS, load_template, template_graph
    from scripts.cli.run_edit import create_argparser

    shipped = api_workflow(name)
    for node in shipped.values():
        for key, folder in LOADER_FOLDERS.get(node["class_type"], {}).items():
            (tmp_path / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / node["inputs"][key]).write_bytes(b"")  # found; never loaded here
    args = create_argparser().parse_args(["--prompt", "a red ball"])
    graph = template_graph(args, "photo.png", load_template(name, tmp_path))
    changed = {k for k in graph if graph[k] != shipped[k]}
    encoders = [k for k in changed if graph[k]["class_type"] != "LoadImage"]
    assert len(encoders) == 1 and "a red ball" in graph[encoders[0]]["inputs"].values(), changed
    sampler = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]
    assert graph[sampler["negative"][0]] == shipped[sampler["negative"][0]]
