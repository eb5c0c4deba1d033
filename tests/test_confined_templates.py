"""Maskless instruction edits, confined, for Flux Kontext: "Blended - Flux Kontext, confined".

Core's Flux.1 Kontext dev graph (the photo scaled to about 1 Mpx with its aspect kept, VAEEncode,
ReferenceLatent on the instruction, FluxGuidance 2.5, an all-zero negative, KSampler at denoise 1 and
CFG 1), then Blended Confine Edit against the photo at its own size: the edit inside the region it
changed, the photo bit for bit outside. As the Qwen-Image-Edit one in tests/test_family_templates.py:
the Flux file is core's detected Flux.1 layout with one block of each kind (Kontext's layout is dev's:
the reference latent is conditioning, not weights) and T5-XXL is replaced by conditioning of its shape.
"""

from __future__ import annotations

import copy

import pytest

from scripts.engine.comfy_engine import (
    REPO,
    PromptRejected,
    describe_rejection,
    execution_error,
    prepare_base,
)
from tests.support.comfy_harness import api_workflow, offline_server
from tests.test_family_templates import check_confined_edit, flux_stand_ins

KONTEXT = "Blended - Flux Kontext, confined"
EXAMPLES = REPO / "workflows" / "examples"


def node_of(graph, class_type):
    (key,) = [k for k, n in graph.items() if n["class_type"] == class_type]
    return key


def test_flux_kontext_confined_template_shape():
    """Core's Kontext graph on the whole photo (no crop, no mask), then Blended Confine Edit on the photo."""
    g = api_workflow(KONTEXT)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "flux1-dev-kontext_fp8_scaled.safetensors"
    clip = g[node_of(g, "DualCLIPLoader")]["inputs"]
    assert (clip["clip_name1"], clip["clip_name2"], clip["type"]) == (
        "clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux")
    vae, photo, scale = node_of(g, "VAELoader"), node_of(g, "LoadImage"), node_of(g, "ImageScaleBy")
    assert g[vae]["inputs"]["vae_name"] == "ae.safetensors"
    # the 600x400 example to 1200x800 (0.96 Mpx, whole 16 px cells); aspect kept, nothing cropped
    assert g[scale]["inputs"] == {"image": [photo, 0], "upscale_method": "lanczos", "scale_by": 2.0}
    encoded = node_of(g, "VAEEncode")
    assert g[encoded]["inputs"]["pixels"] == [scale, 0]
    s = g[node_of(g, "KSampler")]["inputs"]
    guidance = g[s["positive"][0]]
    assert guidance["class_type"] == "FluxGuidance" and guidance["inputs"]["guidance"] == 2.5
    reference = g[guidance["inputs"]["conditioning"][0]]
    assert reference["class_type"] == "ReferenceLatent" and reference["inputs"]["latent"] == [encoded, 0]
    assert g[s["negative"][0]]["class_type"] == "ConditioningZeroOut"
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"], s["denoise"]) == (20, 1.0, "euler", "simple", 1.0)
    assert s["latent_image"] == [encoded, 0]
    confine = g[node_of(g, "BlendedConfineEdit")]["inputs"]
    assert confine["source"] == [photo, 0] and g[confine["edited"][0]]["class_type"] == "VAEDecode"
    assert confine["seam"] == "gradient domain"
    assert not any(v == [photo, 1] for n in g.values() for v in n["inputs"].values())  # the photo's mask: unused
    assert g[node_of(g, "PreviewAny")]["inputs"]["source"] == [node_of(g, "BlendedConfineEdit"), 2]


def kontext_models(models):
    """Kontext's layout is Flux.1 dev's (the reference latent is conditioning, not weights): the
    family tests' small Flux file under Kontext's name, and the Flux VAE."""
    from tests.test_family_templates import model_file, write_flux_vae, write_if_missing, write_small_flux

    write_small_flux(model_file(models, KONTEXT, "UNETLoader"))
    write_if_missing(model_file(models, KONTEXT, "VAELoader"), write_flux_vae)


@pytest.fixture(scope="module")
def kontext_server(comfy, tmp_path_factory):
    from tests.test_family_templates import TEST_NODE

    root = tmp_path_factory.mktemp("kontext")
    base = prepare_base(root / "base")
    kontext_models(base / "models")
    (base / "custom_nodes" / "blended_test_umt5_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


def test_flux_kontext_confined_template_keeps_the_photo_exact_outside_the_found_region(kontext_server):
    """As the Qwen-Image-Edit one (``check_confined_edit`` says how a random-weight edit is made to look
    like an instruction edit, and what is checked)."""
    server, base = kontext_server
    graph = copy.deepcopy(api_workflow(KONTEXT))
    flux_stand_ins(graph)  # T5-XXL: 4.7 B parameters from a fixed config
    report = check_confined_edit(server, base, graph)
    print(f"\n{KONTEXT}: {report}")


@pytest.fixture(scope="module")
def placeholder_server(comfy, tmp_path_factory):
    """Empty files under every model name the template loads: /prompt checks names, links, ranges."""
    root = tmp_path_factory.mktemp("kontext-placeholders")
    base = prepare_base(root / "base")
    folders = {"unet_name": "diffusion_models", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
               "vae_name": "vae"}
    for node in api_workflow(KONTEXT).values():
        for key, folder in folders.items():
            if key in node["inputs"]:
                (base / "models" / folder).mkdir(parents=True, exist_ok=True)
                (base / "models" / folder / node["inputs"][key]).touch()
    with offline_server(comfy, base, root) as server:
        yield server


def test_the_shipped_kontext_graph_passes_the_servers_validation(placeholder_server):
    """Sent as shipped (the text encoders too): accepted; the run stops at a loader (empty files)."""
    try:
        entry = placeholder_server.run(api_workflow(KONTEXT), timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{KONTEXT}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in ("UNETLoader", "DualCLIPLoader", "VAELoader"), error
