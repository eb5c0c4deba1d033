"""The Krea 2 template (``Blended - Krea 2 edit``) in the real engine, with tiny model files under the
template's names. Krea 2 is a ComfyUI 0.33 model (0.3.75 has no ``comfy.supported_models.Krea2``,
nor CLIPLoader's type ``krea2``): the engine tests skip there with a message naming the class and the
version the template needs; the graph's shape and note are checked on both.

Why Krea 2: ComfyUI's own workflow templates (0.11.41, what 0.33 pins) list "Krea-2: Text to Image"
(Krea 2 Turbo) sixth of their 158 Image graphs (fifth of the open-model ones), the second most used
(4224 recorded uses, after Z-Image Turbo's 7263), and LanPaint 2.1.0, the training-free inpainter
users pick, ships a Krea 2 example. Its loaders and settings are core's
template's: 8 steps, cfg 1, euler / simple (Turbo is distilled; the negative is the positive zeroed,
ConditioningZeroOut), the model's own shift (1.15), the Qwen-Image VAE (Wan 2.1's layout, so 5-D
latents), the Qwen3-VL 4B encoder through CLIPLoader type krea2.

The diffusion model is one block, 256 wide (2 heads of 128, 1 kv head): core's detection reads the
width, heads, kv heads, depth and the text stack (12 layers of 2560, the encoder's hidden width) off
the keys, so all but the text fusion is shrunk; that fusion transformer runs at the encoder's width
with the class's own 20 heads (0.35 B parameters, 0.34 B of them the text fusion, instead of 12.8 B).
It is written under the template's file name once core's own detection names it Krea2. The VAE is
the Wan 2.1 layout. The text encoder cannot be made small: ComfyUI builds Qwen3-VL 4B from a fixed
config (``Qwen3VL_4BConfig``: 36 layers of 2560 and the vision tower, about 4.4 B parameters)
whatever the file holds, so the run replaces the CLIPTextEncode by a test-only node giving what
Krea 2's encoder gives: the 12 tapped layers side by side, [1, tokens, 12 x 2560], no pooled output
(and no attention mask: the encoder drops an all-ones one). The ConditioningZeroOut stays as shipped
and zeroes that. What the replacement leaves out is sent as shipped to the same server, whose
text-encoder file is an empty placeholder: /prompt must accept the graph and the run must stop at
a loader.
"""

from __future__ import annotations

import copy

import pytest
import torch

from scripts.engine.comfy_engine import (
    PromptRejected,
    describe_rejection,
    execution_error,
    prepare_base,
)
from tests.support.comfy_harness import api_workflow, offline_server
from tests.support.latent_families import detected_config
from tests.support.sd15_fixture import comfy_engine_path
from tests.test_family_templates import (
    LOADER_FILES,
    check_object_edit,
    model_file,
    node_of,
    write_if_missing,
    write_meta_model,
    write_tiny_wan_vae,
)
from tests.test_template_anima import engine_version

KREA2 = "Blended - Krea 2 edit"
TAPPED_LAYERS, ENCODER_WIDTH = 12, 2560  # comfy.text_encoders.krea2: KREA2_TAP_LAYERS of Qwen3-VL 4B

TEST_NODE = '''
import torch


class BlendedTestKrea2Conditioning:
    """Test only: what Krea 2's text encoder (Qwen3-VL 4B, 12 tapped layers side by side) puts in a
    CONDITIONING, for servers without the 4 B encoder: [1, tokens, 12 x 2560], no pooled output."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed):
        gen = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, 12, %d, generator=gen), {"pooled_output": None}]],)


NODE_CLASS_MAPPINGS = {"BlendedTestKrea2Conditioning": BlendedTestKrea2Conditioning}
''' % (TAPPED_LAYERS * ENCODER_WIDTH)


def skip_without_krea2():
    comfy_engine_path()
    import comfy.supported_models

    if not hasattr(comfy.supported_models, "Krea2"):
        pytest.skip(f"this ComfyUI ({engine_version()}) has no comfy.supported_models.Krea2: the Krea 2 "
                    "template needs ComfyUI 0.33 or newer")


def write_small_krea2(path):
    """Krea 2 as core detects it (``txtfusion.projector`` marks the family): every field from the
    engine's detection of the real layout, then the sizes detection reads off the keys shrunk (width
    256 = 2 heads of 128, 1 kv head, one block); the text stack keeps the encoder's 12 x 2560."""
    comfy_engine_path()
    config = dict(detected_config("krea2").unet_config, features=256, heads=2, kvheads=1, layers=1)
    import comfy.ops
    from comfy.ldm.krea2.model import SingleStreamDiT

    assert (config["txtlayers"], config["txtdim"]) == (TAPPED_LAYERS, ENCODER_WIDTH), config
    with torch.device("meta"):
        net = SingleStreamDiT(**config, device="meta", operations=comfy.ops.disable_weight_init)
    write_meta_model(net, path, seed=9, family="Krea2")


def krea2_models(models):
    """The tiny Krea 2 model and the VAE under the template's names, an empty file under its text
    encoder's (Qwen3-VL 4B: a fixed config whatever the file holds). On an engine without Krea 2 it
    skips first, naming the class, before any file is written."""
    skip_without_krea2()
    write_small_krea2(model_file(models, KREA2, "UNETLoader"))
    write_if_missing(model_file(models, KREA2, "VAELoader"), write_tiny_wan_vae)  # Qwen-Image's, Wan 2.1's layout
    model_file(models, KREA2, "CLIPLoader").touch()


def krea2_stand_ins(graph):
    """The CLIPLoader and the CLIPTextEncode give way to the test-only node giving what Krea 2's
    encoder gives (Qwen3-VL 4B is built from a fixed config); the ConditioningZeroOut stays."""
    del graph[node_of(graph, "CLIPLoader")]
    positive = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]["positive"][0]
    graph[positive] = {"class_type": "BlendedTestKrea2Conditioning", "inputs": {"seed": 1}}


@pytest.fixture(scope="module")
def krea2_server(request, tmp_path_factory):
    """A server on the session's engine with the template's files (``krea2_models``) and the
    test-only conditioning node."""
    skip_without_krea2()  # before the session's server starts on an engine that cannot run the template
    comfy = request.getfixturevalue("comfy")
    root = tmp_path_factory.mktemp("krea2")
    base = prepare_base(root / "base")
    krea2_models(base / "models")
    (base / "custom_nodes" / "blended_test_krea2_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


def test_krea2_template_shape():
    g = api_workflow(KREA2)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "krea2_turbo_fp8_scaled.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "qwen3vl_4b_fp8_scaled.safetensors",
                                                     "type": "krea2", "device": "default"}
    assert g[node_of(g, "VAELoader")]["inputs"]["vae_name"] == "qwen_image_vae.safetensors"  # Wan 2.1's VAE
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (1024, 16)  # VAE 8 x patch 2
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (8, 1.0, "euler", "simple")  # core's Turbo
    assert g[s["model"][0]]["class_type"] == "UNETLoader"  # the model's own shift (1.15), as core's template
    positive, negative = g[s["positive"][0]], g[s["negative"][0]]
    assert positive["class_type"] == "CLIPTextEncode" and positive["inputs"]["text"]
    assert negative == {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": s["positive"]}}


def test_the_krea2_note_says_which_comfyui_it_needs():
    from scripts.engine.comfy_engine import API_WORKFLOWS

    note = (API_WORKFLOWS / f"{KREA2}.note.md").read_text(encoding="utf-8")
    assert "ComfyUI 0.33 or newer" in note.splitlines()[0]
    for node in api_workflow(KREA2).values():  # every file the graph loads is named with its folder
        if node["class_type"] in LOADER_FILES:
            (key,), folder = LOADER_FILES[node["class_type"]]
            assert f"{node['inputs'][key]} in models/{folder}" in note


def test_krea2_template_runs_and_keeps_the_background_exact(krea2_server):
    server, base = krea2_server
    graph = copy.deepcopy(api_workflow(KREA2))
    krea2_stand_ins(graph)
    check_object_edit(server, base, graph)


def test_the_shipped_krea2_graph_passes_the_servers_validation(krea2_server):
    """The run above replaces the text encoder; this sends the graph exactly as shipped. The empty
    encoder file cannot load, so the run must stop at a loader, after validation accepted it all
    (CLIPLoader's type krea2 included)."""
    server, _ = krea2_server
    try:
        entry = server.run(api_workflow(KREA2), timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{KREA2}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in LOADER_FILES, error

