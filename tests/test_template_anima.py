"""The Anima template (``Blended - Anima edit``) in the real engine, with tiny model files under the
template's names. Anima is a ComfyUI 0.33 model (0.3.75 has no ``comfy.supported_models.Anima``): the
engine tests skip there with a message naming the class and the version the template needs; the
graph's shape is checked on both.

Why Anima: ComfyUI's own workflow templates (0.11.41, what 0.33 pins) feature it (two text-to-image
graphs, three LLLite control and inpainting ones), and LanPaint 2.1.0, the training-free inpainter users
pick, ships an Anima example; its loaders and settings are core's template's (30 steps, cfg 4, euler /
simple, the Qwen-Image VAE, the Qwen3 0.6B encoder through CLIPLoader type stable_diffusion).

The diffusion model is one block at the real width (2048, what detection fixes the heads from) with
the model's LLM adapter (fixed in the class), written under the template's file name once core's own
detection names it Anima. The VAE is the Wan 2.1 layout (Qwen-Image's VAE is Wan 2.1's). The text
encoder is built from a fixed config (Qwen3 0.6B, 28 layers) whatever the file holds, so the run
replaces the two CLIPTextEncode nodes by a test-only node giving what Anima's encoder gives: Qwen3
states [1, tokens, 1024], their mask, and the prompt's T5 ids and weights, which the model's adapter
turns into its context under the server's inference mode. What that leaves out is sent as shipped
to the same server, whose text-encoder file is an empty placeholder: /prompt must accept the graph
and the run must stop at a loader.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

from scripts.engine.comfy_engine import (
    PromptRejected,
    describe_rejection,
    engine_source,
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

ANIMA = "Blended - Anima edit"

TEST_NODE = '''
import torch


class BlendedTestAnimaConditioning:
    """Test only: what Anima's text encoder (Qwen3 0.6B + the T5 tokenizer) puts in a CONDITIONING,
    for servers without the 0.6 B encoder: Qwen3 states [1, tokens, 1024], their mask, the prompt's
    T5 token ids and weights."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed):
        gen = torch.Generator().manual_seed(seed)
        extra = {"pooled_output": None, "attention_mask": torch.ones(1, 12, dtype=torch.long),
                 "t5xxl_ids": torch.randint(0, 32128, (12,), generator=gen, dtype=torch.int),
                 "t5xxl_weights": torch.ones(12)}
        return ([[torch.randn(1, 12, 1024, generator=gen), extra]],)


NODE_CLASS_MAPPINGS = {"BlendedTestAnimaConditioning": BlendedTestAnimaConditioning}
'''


def engine_version() -> str:
    stamp = engine_source() / "comfyui_version.py"
    found = re.search(r'__version__ = "([^"]+)"', stamp.read_text(encoding="utf-8")) if stamp.exists() else None
    return found[1] if found else "version unknown"


def skip_without_anima():
    comfy_engine_path()
    import comfy.supported_models

    if not hasattr(comfy.supported_models, "Anima"):
        pytest.skip(f"this ComfyUI ({engine_version()}) has no comfy.supported_models.Anima: the Anima "
                    "template needs ComfyUI 0.33 or newer")


def write_small_anima(path):
    """Anima as core detects it: the LLM adapter's key marks the family, the width (2048) fixes 16
    heads, the blocks are counted; one block instead of 28, with the adapter the class always builds
    (0.22 B parameters, 0.13 B of them the adapter, instead of 2.1 B)."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.anima.model import Anima

    config = dict(detected_config("anima").unet_config, num_blocks=1)
    with torch.device("meta"):
        net = Anima(**config, device="meta", operations=comfy.ops.disable_weight_init)
    write_meta_model(net, path, seed=8, family="Anima")


def anima_models(models):
    """The tiny Anima model and the VAE under the template's names, an empty file under its text
    encoder's (Qwen3 0.6B: a fixed config whatever the file holds). On an engine without Anima it
    skips first, naming the class, before any file is written."""
    skip_without_anima()
    write_small_anima(model_file(models, ANIMA, "UNETLoader"))
    write_if_missing(model_file(models, ANIMA, "VAELoader"), write_tiny_wan_vae)  # Qwen-Image's, Wan 2.1's layout
    model_file(models, ANIMA, "CLIPLoader").touch()


def anima_stand_ins(graph):
    """The CLIPLoader and the two CLIPTextEncode nodes give way to the test-only node giving what
    Anima's encoder gives (Qwen3 0.6B is built from a fixed config)."""
    del graph[node_of(graph, "CLIPLoader")]
    s = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]
    for seed, role in enumerate(("positive", "negative")):
        graph[s[role][0]] = {"class_type": "BlendedTestAnimaConditioning", "inputs": {"seed": seed + 1}}


@pytest.fixture(scope="module")
def anima_server(request, tmp_path_factory):
    """A server on the session's engine with the template's files (``anima_models``) and the
    test-only conditioning node."""
    skip_without_anima()  # before the session's server starts on an engine that cannot run the template
    comfy = request.getfixturevalue("comfy")
    root = tmp_path_factory.mktemp("anima")
    base = prepare_base(root / "base")
    anima_models(base / "models")
    (base / "custom_nodes" / "blended_test_anima_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


def test_anima_template_shape():
    g = api_workflow(ANIMA)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "anima-base-v1.0.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "qwen_3_06b_base.safetensors",
                                                     "type": "stable_diffusion", "device": "default"}
    assert g[node_of(g, "VAELoader")]["inputs"]["vae_name"] == "qwen_image_vae.safetensors"  # Wan 2.1's VAE
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (1024, 16)  # VAE 8 x patch 2
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (30, 4.0, "euler", "simple")  # core's
    assert g[s["model"][0]]["class_type"] == "UNETLoader"  # the model's own shift (3), as core's template
    positive, negative = g[s["positive"][0]]["inputs"], g[s["negative"][0]]["inputs"]
    assert positive["clip"] == negative["clip"] and "worst quality" in negative["text"]


def test_the_anima_note_says_which_comfyui_it_needs():
    from scripts.engine.comfy_engine import API_WORKFLOWS

    note = (API_WORKFLOWS / f"{ANIMA}.note.md").read_text(encoding="utf-8")
    assert "ComfyUI 0.33 or newer" in note.splitlines()[0]
    for node in api_workflow(ANIMA).values():  # every file the graph loads is named with its folder
        if node["class_type"] in LOADER_FILES:
            (key,), folder = LOADER_FILES[node["class_type"]]
            assert f"{node['inputs'][key]} in models/{folder}" in note


def test_anima_template_runs_and_keeps_the_background_exact(anima_server):
    server, base = anima_server
    graph = copy.deepcopy(api_workflow(ANIMA))
    anima_stand_ins(graph)
    check_object_edit(server, base, graph)


def test_the_shipped_anima_graph_passes_the_servers_validation(anima_server):
    """The run above replaces the text encoder; this sends the graph exactly as shipped. The empty
    encoder file cannot load, so the run must stop at a loader, after validation accepted it all."""
    server, _ = anima_server
    try:
        entry = server.run(api_workflow(ANIMA), timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{ANIMA}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in LOADER_FILES, error

