"""The Wan 2.2 TI2V 5B video template (``Blended - Wan 2.2 5B video edit``) in the real engine, with
model files under the template's names. Both engines run it (core's ``WAN22_T2V``, 0.3.75 and 0.33);
an engine without that class skips the engine tests with a message naming it.

Why Wan 2.2 5B: of the video families this pack proves, ComfyUI's own workflow templates (0.11.41,
what 0.33 pins) count the most runs for MiniMax H3 and LTX-2.x, both audio + video models whose
templates also load an audio VAE and a 32 B Qwen3-VL or a Gemma 3 encoder; then Wan 2.2 A14B (this
pack's ``Blended - Wan 2.2 video edit``), then Wan 2.2 TI2V 5B (169 runs, ahead of HunyuanVideo 1.5's
132 + 23 and Kandinsky 5's 19 + 11). Its loaders and settings are core's 5B template's: the 5B file,
UMT5-XXL (type wan), the Wan 2.2 VAE (48 channels, 16 px per cell), ModelSamplingSD3 shift 8, cfg 5,
20 steps; 704 px (core's 1280x704) in multiples of 32 (VAE 16 x patch 2).

The diffusion model is one block of width 128 in the 5B layout (48 input and output channels), which
core's detection names WAN22_T2V. The Wan 2.2 VAE cannot be shrunk: core builds it from a fixed config
(``dim`` 160, 0.70 B parameters) whatever the file holds, so the file has every key at its real shape
(fan-in scaled random weights, fp16, streamed to disk: 1.4 GB) and the run uses a 64 px crop. UMT5-XXL
is built from a fixed config too (5.7 B parameters): the run replaces the CLIPLoader and the two
CLIPTextEncode nodes by the test-only node of ``tests/test_family_templates.py`` giving conditioning of
its shape [1, tokens, 4096]. What that leaves out is sent as shipped to a second server, whose
model files are all empty placeholders: /prompt must accept the graph and the run must stop at a
loader.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    PromptRejected,
    describe_rejection,
    execution_error,
    output_images,
    prepare_base,
)
from tests.support.comfy_harness import api_workflow, offline_server
from tests.support.sd15_fixture import comfy_engine_path, write_random_checkpoint
from tests.test_family_templates import (
    EXAMPLES,
    LOADER_FILES,
    TEST_NODE,
    free_models,
    model_file,
    node_of,
    source_frames,
    wan_video_stand_ins,
    write_if_missing,
    write_meta_model,
)
from tests.test_template_anima import engine_version

WAN5B = "Blended - Wan 2.2 5B video edit"


def skip_without_wan22():
    comfy_engine_path()
    import comfy.supported_models

    if not hasattr(comfy.supported_models, "WAN22_T2V"):
        pytest.skip(f"this ComfyUI ({engine_version()}) has no comfy.supported_models.WAN22_T2V: the Wan 2.2 "
                    "5B template needs a ComfyUI that runs Wan 2.2 TI2V 5B")


def write_tiny_wan22_5b(path):
    """Wan 2.2 TI2V 5B as core detects it: 48 latent channels in and out (``head.head`` gives
    ``out_dim``, which marks WAN22_T2V), heads of 128; one block of width 128 instead of 30 of 3072."""
    comfy_engine_path()
    import comfy.ldm.wan.model
    import comfy.ops

    net = comfy.ldm.wan.model.WanModel(model_type="t2v", in_dim=48, dim=128, ffn_dim=64, freq_dim=256, out_dim=48,
                                       num_heads=1, num_layers=1, device="meta",
                                       operations=comfy.ops.disable_weight_init)
    write_meta_model(net, path, seed=9, family="WAN22_T2V")


def write_wan22_vae(path):
    """The Wan 2.2 VAE at its real size: core's VAE class keys it by
    ``decoder.upsamples.0.upsamples.0.residual.2.weight`` and builds it from a fixed config."""
    comfy_engine_path()
    import comfy.ldm.wan.vae2_2
    import torch

    with torch.device("meta"):
        net = comfy.ldm.wan.vae2_2.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                          attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    assert "decoder.upsamples.0.upsamples.0.residual.2.weight" in shapes  # what core's VAE reads as Wan 2.2
    write_random_checkpoint(path, shapes, seed=10)


def wan5b_models(models):
    """The 5B model and the Wan 2.2 VAE under the template's names, UMT5-XXL's file empty (core builds
    it from a fixed config whatever the file holds). On an engine without WAN22_T2V it skips first,
    naming the class, before any file is written."""
    skip_without_wan22()
    write_tiny_wan22_5b(model_file(models, WAN5B, "UNETLoader"))
    write_if_missing(model_file(models, WAN5B, "VAELoader"), write_wan22_vae)  # 1.4 GB: once per models folder
    model_file(models, WAN5B, "CLIPLoader").touch()


def wan5b_placeholders(models):
    """Every file the template loads, empty."""
    for class_type in ("UNETLoader", "CLIPLoader", "VAELoader"):
        model_file(models, WAN5B, class_type).touch()


@contextmanager
def server_on(comfy, root, write_models):
    """A server on the session's engine with the template's model files as ``write_models`` writes
    them (``wan5b_models`` or ``wan5b_placeholders``) and the test-only conditioning node."""
    base = prepare_base(root / "base")
    write_models(base / "models")
    (base / "custom_nodes" / "blended_test_umt5_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


@pytest.fixture(scope="module")
def wan5b_server(request, tmp_path_factory):
    skip_without_wan22()  # before the session's server starts on an engine that cannot run the template
    with server_on(request.getfixturevalue("comfy"), tmp_path_factory.mktemp("wan5b"), wan5b_models) as s:
        yield s


@pytest.fixture(scope="module")
def placeholder_server(request, tmp_path_factory):
    """Every model file empty: the shipped graph at 704 px would otherwise encode the whole video with
    the 0.7 B VAE on the CPU before it reached the empty text encoder."""
    skip_without_wan22()
    with server_on(request.getfixturevalue("comfy"), tmp_path_factory.mktemp("wan5b-placeholders"),
                   wan5b_placeholders) as s:
        yield s


def test_wan5b_template_shape():
    g = api_workflow(WAN5B)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "wan2.2_ti2v_5B_fp16.safetensors"
    assert g[node_of(g, "CLIPLoader")]["inputs"] == {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                     "type": "wan", "device": "default"}
    assert g[node_of(g, "VAELoader")]["inputs"]["vae_name"] == "wan2.2_vae.safetensors"  # 48 channels, 16 px
    crop = g[node_of(g, "BlendedLatentCrop")]["inputs"]
    assert (crop["resolution"], crop["multiple"]) == (704, 32)  # core's 1280x704; VAE 16 x patch 2
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert (s["steps"], s["cfg"]) == (20, 5.0)  # core's 5B template
    assert g[s["model"][0]] == {"class_type": "ModelSamplingSD3", "inputs": {"model": [node_of(g, "UNETLoader"), 0],
                                                                             "shift": 8.0}}
    positive, negative = g[s["positive"][0]]["inputs"], g[s["negative"][0]]["inputs"]
    assert positive["clip"] == negative["clip"] and "flickering" in negative["text"]
    assert g[node_of(g, "BlendedLatentStitch")]["inputs"]["video"] is True
    assert len(source_frames()) % 4 == 1  # the 1 + 4n frames the Wan 2.2 VAE decodes back


def test_the_wan5b_note_names_every_file_and_its_folder():
    note = (API_WORKFLOWS / f"{WAN5B}.note.md").read_text(encoding="utf-8")
    assert "Wan 2.2 TI2V 5B" in note.splitlines()[0]
    for node in api_workflow(WAN5B).values():
        if node["class_type"] in LOADER_FILES:
            (key,), folder = LOADER_FILES[node["class_type"]]
            assert f"{node['inputs'][key]} in models/{folder}" in note


def test_the_main_job_does_not_offer_the_video_template():
    """``--template`` edits one photo: a template that loads a video is not among its choices."""
    from scripts.cli.edit_graphs import image_templates

    assert WAN5B not in image_templates() and "Blended - Anima edit" in image_templates()


def engine_decoded_frames(base, entry) -> list[np.ndarray]:
    """The source frames as this engine's LoadVideo decoded them (the stitch must keep those; 0.33
    converts colour differently from 0.3.75), checked against PyAV's count, size and mean colour."""
    pyav = source_frames()
    loaded = [np.asarray(Image.open(base / "output" / i["subfolder"] / i["filename"]).convert("RGB"))
              for i in output_images(entry) if i["filename"].startswith("source")]
    assert len(loaded) == len(pyav) and loaded[0].shape == pyav[0].shape
    drift = max(float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(loaded, pyav))
    assert drift < 2, f"the engine's decode is {drift:.2f} levels from PyAV's on average: another video?"
    return loaded


def test_wan5b_template_runs_and_keeps_every_frame_outside_the_mask(wan5b_server):
    server, base = wan5b_server
    graph = copy.deepcopy(api_workflow(WAN5B))
    wan_video_stand_ins(graph)  # UMT5-XXL: the Wan 2.2 A14B template's stand-ins, the same encoder
    s = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]
    graph[node_of(graph, "BlendedLatentCrop")]["inputs"]["resolution"] = 64  # two 32 px cells a side
    s.update(steps=2, batch_size=2)  # two clips: the stitch must place frame i of each on source frame i
    stitch = node_of(graph, "BlendedLatentStitch")
    graph["90"] = {"class_type": "SaveImage", "inputs": {"images": [stitch, 0], "filename_prefix": "test/frames"}}
    frames = [node_of(graph, "GetVideoComponents"), 0]
    graph["91"] = {"class_type": "SaveImage", "inputs": {"images": frames, "filename_prefix": "test/source"}}
    try:
        entry = server.run(graph, timeout=900)
    finally:
        free_models(server)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"

    loaded = engine_decoded_frames(base, entry)
    alpha = np.asarray(Image.open(EXAMPLES / "blended_video_mask.png").convert("RGBA"))[..., 3]
    outside = alpha == 255  # LoadImageMask(alpha): edit = 1 - alpha
    saved = [i for i in output_images(entry) if i["filename"].startswith("frames")]
    assert len(saved) == 2 * len(loaded)
    for i, img in enumerate(saved):
        out = np.asarray(Image.open(base / "output" / img["subfolder"] / img["filename"]).convert("RGB"))
        src = loaded[i % len(loaded)]
        assert np.array_equal(out[outside], src[outside]), f"output frame {i}: background changed"
        assert (out[~outside] != src[~outside]).any(), f"output frame {i}: the masked region was not edited"
    videos = list((base / "output" / "blended").glob("latent_wan22_5b_video_inpainting*"))
    assert videos and videos[0].stat().st_size > 0


def test_the_shipped_wan5b_graph_passes_the_servers_validation(placeholder_server):
    """The run above replaces the text encoder; this sends the graph exactly as shipped. An empty model
    file cannot load, so the run must stop at a loader, after validation accepted it all."""
    server, _ = placeholder_server
    try:
        entry = server.run(api_workflow(WAN5B), timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{WAN5B}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in LOADER_FILES, error
