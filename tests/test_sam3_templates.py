"""Masks from a phrase with core SAM3 (ComfyUI 0.33+): the templates "Blended - Edit by description"
(SAM3_Detect on a phrase -> the SDXL blended edit -> ranked results) and "Blended - Video edit by
description" (SAM3_VideoTrack + SAM3_TrackToMask -> a mask per frame -> the Wan 2.2 blended edit).

The engine tests run each template in the real engine with a small random SAM 3.1 checkpoint in the
released layout (``tests/support/tiny_sam3.py``: ComfyUI's own classes, one ViT trunk block instead of
32, loaded by core's CheckpointLoaderSimple, its text encoder at full size through core's
CLIPTextEncode). Random weights find nothing in particular, so the tests prove the wiring, the shapes
and the exact background: the mask SAM3 gives reaches the crop (its size is the photo's or the
frame's, one per frame for the video), every saved result equals the source outside the stitch's
paste mask bit for bit and that mask covers what SAM3 found. Detection thresholds are 0 in the tests:
a random detector scores every query about 0.5, so at the shipped 0.5 whether anything is kept would
be a coin toss. On ComfyUI 0.3.75 (no SAM3) those tests skip with the missing nodes' names; the shape
tests and the notes' "needs 0.33" line are checked on both engines.
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
    engine_source,
    engine_version,
    execution_error,
    output_images,
    prepare_base,
)
from tests.support.comfy_harness import api_workflow, offline_server
from tests.support.later_core_nodes import (
    LATER_CORE_NODES,
    NOTE_FIRST_LINE,
    later_core_nodes,
    needed_release,
    skip_without_later_core_nodes,
)
from tests.support.sdxl_fixture import write_random_sdxl
from tests.support.tiny_clip import save_tiny_clip
from tests.support.tiny_sam3 import DEPTH_HOOK, SAM31_FILE, TRUNK_DEPTH
from tests.test_family_templates import model_file, write_if_missing

IMAGE = "Blended - Edit by description"
VIDEO = "Blended - Video edit by description"
EXAMPLES = REPO / "workflows" / "examples"
HAS_SAM3 = (engine_source() / "comfy_extras" / "nodes_sam3.py").is_file()
requires_sam3 = pytest.mark.skipif(
    not HAS_SAM3, reason=f"ComfyUI {'.'.join(map(str, engine_version(engine_source())))} has no core SAM3 "
    "(SAM3_Detect, SAM3_VideoTrack, SAM3_TrackToMask arrived in 0.33): the SAM3 templates need ComfyUI 0.33 or later")


def node_of(graph, class_type):
    (key,) = [k for k, n in graph.items() if n["class_type"] == class_type]
    return key


def nodes_of(graph, class_type):
    return [k for k, n in graph.items() if n["class_type"] == class_type]


def note(name: str) -> str:
    return (REPO / "workflows" / "api" / f"{name}.note.md").read_text()


# --- the graphs (both engines) ------------------------------------------------------------------------


def test_edit_by_description_finds_its_mask_with_sam3_and_edits_with_sdxl():
    """The photo's own alpha is not used: SAM3_Detect on the phrase gives the crop its mask; the edit
    is the SDXL template's (1024 px crop, 30 steps dpmpp_2m karras, CFG 6; a zeroed negative), 4 samples
    ranked, best 2 saved."""
    g = api_workflow(IMAGE)
    photo, detect, crop = node_of(g, "LoadImage"), node_of(g, "SAM3_Detect"), node_of(g, "BlendedLatentCrop")
    sam3, sdxl = (k for k in nodes_of(g, "CheckpointLoaderSimple"))
    assert g[sam3]["inputs"]["ckpt_name"] == SAM31_FILE  # what core's SAM3 blueprints load
    assert g[sdxl]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    d = g[detect]["inputs"]
    assert d["model"] == [sam3, 0] and d["image"] == [photo, 0]
    phrase = g[d["conditioning"][0]]
    assert phrase["class_type"] == "CLIPTextEncode" and phrase["inputs"]["clip"] == [sam3, 1]
    assert phrase["inputs"]["text"]
    assert (d["threshold"], d["refine_iterations"], d["individual_masks"]) == (0.5, 2, False)  # core's defaults
    assert g[crop]["inputs"]["mask"] == [detect, 0] and g[crop]["inputs"]["image"] == [photo, 0]
    assert not any(v == [photo, 1] for n in g.values() for v in n["inputs"].values())  # the painted mask: unused
    s = g[node_of(g, "BlendedLatentSampler")]["inputs"]
    assert g[s["positive"][0]]["inputs"]["clip"] == [sdxl, 1] and s["model"] == [sdxl, 0]
    # SDXL's reference pipeline makes its empty negative zeros (force_zeros_for_empty_prompt)
    assert g[s["negative"][0]] == {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": s["positive"]}}
    assert (g[crop]["inputs"]["resolution"], g[crop]["inputs"]["multiple"]) == (1024, 8)
    assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (30, 6.0, "dpmpp_2m", "karras")
    assert s["batch_size"] == 4
    rank = g[node_of(g, "BlendedRankResults")]["inputs"]
    assert rank["images"] == [node_of(g, "BlendedLatentStitch"), 0] and rank["top_k"] == 2
    assert g[node_of(g, "SaveImage")]["inputs"]["images"] == [node_of(g, "BlendedRankResults"), 0]


def test_video_edit_by_description_tracks_the_phrase_through_every_frame_into_the_wan_edit():
    """SAM3_VideoTrack on the video's frames -> SAM3_TrackToMask (a mask per frame) -> the crop of
    those frames; the edit is the Wan 2.2 template's."""
    g = api_workflow(VIDEO)
    frames = [node_of(g, "GetVideoComponents"), 0]
    track, to_mask = node_of(g, "SAM3_VideoTrack"), node_of(g, "SAM3_TrackToMask")
    crop = node_of(g, "BlendedLatentCrop")
    sam3 = node_of(g, "CheckpointLoaderSimple")
    assert g[sam3]["inputs"]["ckpt_name"] == SAM31_FILE  # SAM 3.1: core tracks a phrase only with its multiplex tracker
    t = g[track]["inputs"]
    assert t["images"] == frames and t["model"] == [sam3, 0]
    assert g[t["conditioning"][0]]["inputs"]["clip"] == [sam3, 1]
    assert g[to_mask]["inputs"] == {"track_data": [track, 0], "object_indices": ""}  # all tracked objects
    assert g[crop]["inputs"]["mask"] == [to_mask, 0] and g[crop]["inputs"]["image"] == frames
    assert (g[crop]["inputs"]["resolution"], g[crop]["inputs"]["multiple"]) == (480, 16)
    assert g[node_of(g, "UNETLoader")]["inputs"]["unet_name"] == "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    assert g[node_of(g, "BlendedLatentStitch")]["inputs"]["video"] is True
    assert g[node_of(g, "CreateVideo")]["inputs"]["fps"] == [frames[0], 2]


@pytest.mark.parametrize("name", (IMAGE, VIDEO))
def test_a_template_with_newer_core_nodes_says_which_comfyui_it_needs(name):
    """On 0.3.75 the frontend shows the SAM3 nodes as missing; the note's first line says why."""
    types = later_core_nodes(api_workflow(name))
    assert types and set(types) <= set(LATER_CORE_NODES)
    assert note(name).startswith(NOTE_FIRST_LINE.format(release=needed_release(types)))


# --- the SAM3 file (0.33) -----------------------------------------------------------------------------


@requires_sam3
def test_the_small_sam3_file_has_the_layout_cores_loader_converts():
    """Core's own conversion of the file's keys gives exactly the keys of its SAM3Model and of its
    SAM3 text encoder, and core's detection names the layout SAM 3.1 but fixes no size (why the
    servers below get the test-only depth hook)."""
    from tests.support.tiny_sam3 import checkpoint_shapes, layout_round_trips

    assert layout_round_trips() == (set(), set(), set(), set())  # puts the engine on sys.path
    import comfy.model_detection

    sd = {k: torch.empty(shape, device="meta") for k, (shape, _) in checkpoint_shapes().items()}
    assert comfy.model_detection.detect_unet_config(sd, "") == {"image_model": "SAM31"}
    hooked: dict = {}
    exec(DEPTH_HOOK.replace("comfy.model_detection.detect_unet_config = detect_unet_config", ""), hooked)
    assert hooked["detect_unet_config"](sd, "") == {"image_model": "SAM31", "depth": TRUNK_DEPTH}


# --- the templates in the engine (0.33) ----------------------------------------------------------------


# --- each template's test setup: its model files, and stand-ins for what cannot be made small ----------
# The engine tests below and the app runs (tests/test_app_mode.py) use the same ones.

TINY_CLIP = "tiny_clip.safetensors"  # the ranking CLIP in place of ViT-B-16 (an open_clip download)


def sam31_models(models):
    """The small SAM 3.1 file under the name both templates load (core's blueprints' name)."""
    from tests.support.tiny_sam3 import write_tiny_sam31

    write_if_missing(checkpoint(models, SAM31_FILE), write_tiny_sam31)


def checkpoint(models, name):
    path = models / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sdxl_checkpoint(models):
    """Where the image template's SDXL file goes (its second CheckpointLoaderSimple; the first is SAM3's)."""
    graph = api_workflow(IMAGE)
    return checkpoint(models, graph[nodes_of(graph, "CheckpointLoaderSimple")[1]]["inputs"]["ckpt_name"])


def edit_by_description_models(models):
    """SAM 3.1, a random SDXL under the template's name (the SDXL template's file: written once) and
    the tiny CLIP the guidance and the ranking load instead of ViT-B-16."""
    sam31_models(models)
    write_if_missing(sdxl_checkpoint(models), write_random_sdxl)
    write_if_missing(models / "blended_clip" / TINY_CLIP, save_tiny_clip)


def edit_by_description_stand_ins(graph):
    """The tiny CLIP for ViT-B-16; detection threshold 0: a random detector scores every query
    about 0.5, so at the shipped 0.5 whether anything is kept would be a coin toss."""
    graph[node_of(graph, "BlendedCLIPLoader")]["inputs"]["clip_name"] = TINY_CLIP
    graph[node_of(graph, "SAM3_Detect")]["inputs"]["threshold"] = 0.0


SHORT_CLIP = "blended_video_5.mp4"  # SAM3 costs seconds per frame here: the video tests load 5 frames


def write_short_clip(folder):
    """``SHORT_CLIP`` in ``folder``: the example video's first 5 frames (``short_clip``)."""
    short_clip(folder / SHORT_CLIP)


def video_by_description_models(models):
    """SAM 3.1 and the family tests' tiny Wan 2.2 model and Wan VAE under the template's names (the
    Wan 2.2 template's files: written once)."""
    from tests.test_family_templates import write_tiny_wan, write_tiny_wan_vae

    sam31_models(models)
    write_if_missing(model_file(models, VIDEO, "UNETLoader"), write_tiny_wan)
    write_if_missing(model_file(models, VIDEO, "VAELoader"), write_tiny_wan_vae)


def video_by_description_stand_ins(graph):
    """UMT5-XXL (5.7 B, a fixed config) gives way to conditioning of its shape, as in
    tests/test_family_templates.py, for the sampler's prompts only (the phrase's CLIPTextEncode is
    SAM3's own encoder, at full size); detection threshold 0, as for the image template."""
    del graph[node_of(graph, "CLIPLoader")]
    sampler = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]
    for link, seed in ((sampler["positive"], 1), (sampler["negative"], 2)):
        graph[link[0]] = {"class_type": "BlendedTestUMT5Conditioning", "inputs": {"seed": seed, "pooled": 0}}
    graph[node_of(graph, "SAM3_VideoTrack")]["inputs"]["detection_threshold"] = 0.0


@pytest.fixture(scope="module")
def sam3_server(comfy, tmp_path_factory):
    """A server on the session's engine with the small SAM 3.1 file under the templates' name, the
    test-only depth hook and conditioning nodes in its custom_nodes."""
    from tests.test_family_templates import TEST_NODE

    root = tmp_path_factory.mktemp("sam3")
    base = prepare_base(root / "base")
    sam31_models(base / "models")
    (base / "custom_nodes" / "blended_test_sam3_depth.py").write_text(DEPTH_HOOK)
    (base / "custom_nodes" / "blended_test_umt5_conditioning.py").write_text(TEST_NODE)
    with offline_server(comfy, base, root) as server:
        yield server, base


def run_and_free(server, graph) -> dict:
    """Run ``graph`` to the end, polls retried (this CPU server can stall past one request's timeout
    while it loads a model), the models freed after; it must raise nothing."""
    from tests.support.soak import wait_one

    try:
        entry = wait_one(server, server.queue_prompt(graph), timeout=1200)
    finally:
        server.post("/free", {"unload_models": True, "free_memory": True})
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    return entry


def saved(base, entry, prefix: str) -> list[np.ndarray]:
    """The images the run saved under ``test/<prefix>`` (or the template's own, prefix ``blended``), in order."""
    found = [i for i in output_images(entry) if f"{i['subfolder']}/{i['filename']}".startswith(prefix)]
    return [np.asarray(Image.open(base / "output" / i["subfolder"] / i["filename"]).convert("RGB")) for i in found]


def save_mask(graph, key: str, link: list, prefix: str) -> None:
    """Nodes ``key`` and ``key + 1`` save the MASK at ``link`` as test/<prefix> images."""
    after = str(int(key) + 1)
    graph[key] = {"class_type": "MaskToImage", "inputs": {"mask": link}}
    graph[after] = {"class_type": "SaveImage", "inputs": {"images": [key, 0], "filename_prefix": f"test/{prefix}"}}


@requires_sam3
def test_edit_by_description_runs_and_keeps_the_photo_exact_outside_what_sam3_found(sam3_server):
    server, base = sam3_server
    graph = copy.deepcopy(api_workflow(IMAGE))
    edit_by_description_models(base / "models")
    edit_by_description_stand_ins(graph)
    graph[node_of(graph, "BlendedLatentCrop")]["inputs"]["resolution"] = 64
    graph[node_of(graph, "BlendedLatentSampler")]["inputs"]["steps"] = 2
    save_mask(graph, "90", [node_of(graph, "SAM3_Detect"), 0], "found")
    save_mask(graph, "92", [node_of(graph, "BlendedLatentStitch"), 1], "paste")
    try:
        entry = run_and_free(server, graph)
    finally:
        sdxl_checkpoint(base / "models").unlink()

    source = np.asarray(Image.open(EXAMPLES / "blended_object.png"))[..., :3]
    (found,), paste = saved(base, entry, "test/found"), saved(base, entry, "test/paste")
    results = saved(base, entry, "blended/")
    assert found.shape == source.shape  # SAM3's mask at the photo's size
    found = found[..., 0] > 127
    assert 0 < found.mean() < 1, f"SAM3 found {found.mean():.3f} of the photo: the test would prove nothing"
    assert len(paste) == graph[node_of(graph, "BlendedLatentSampler")]["inputs"]["batch_size"]
    inside = np.any([p[..., 0] > 0 for p in paste], axis=0)
    assert inside[found].all(), "the paste mask must cover what SAM3 found (grown by the crop's mask_dilate)"
    assert len(results) == graph[node_of(graph, "BlendedRankResults")]["inputs"]["top_k"]
    for out in results:
        assert out.shape == source.shape
        assert np.array_equal(out[~inside], source[~inside])  # the photo bit for bit
        assert (out[inside] != source[inside]).any()


def short_clip(dest, frames: int = 5) -> None:
    """The example video's first ``frames`` frames (1 + 4n, what the Wan VAE encodes), as a new mp4."""
    import av

    with av.open(str(EXAMPLES / "blended_video.mp4")) as src, av.open(str(dest), "w") as out:
        stream_in = src.streams.video[0]
        stream = out.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(stream.encode(None))


@requires_sam3
def test_video_edit_by_description_runs_and_keeps_every_frame_exact_outside_its_tracked_mask(sam3_server):
    """On a 5-frame cut of the example (SAM3 costs seconds per frame here), Wan at 64 px and 2 steps;
    the UMT5-XXL encoder (5.7 B, fixed config) replaced by conditioning of its shape, as in
    tests/test_family_templates.py. Two clips, so frame i of each must land on source frame i. The
    random tracker keeps its object for as long as it does (here: the first frame), so frames whose
    mask is empty are checked to be the source, the others to be edited inside."""
    server, base = sam3_server
    graph = copy.deepcopy(api_workflow(VIDEO))
    video_by_description_models(base / "models")
    write_short_clip(base / "input")
    graph[node_of(graph, "LoadVideo")]["inputs"]["file"] = SHORT_CLIP
    video_by_description_stand_ins(graph)
    graph[node_of(graph, "BlendedLatentCrop")]["inputs"]["resolution"] = 64
    sampler = graph[node_of(graph, "BlendedLatentSampler")]["inputs"]
    sampler.update(steps=2, batch_size=2)
    frames = [node_of(graph, "GetVideoComponents"), 0]
    graph["94"] = {"class_type": "SaveImage", "inputs": {"images": frames, "filename_prefix": "test/source"}}
    graph["95"] = {"class_type": "SaveImage", "inputs": {"images": [node_of(graph, "BlendedLatentStitch"), 0],
                                                         "filename_prefix": "test/frames"}}
    save_mask(graph, "90", [node_of(graph, "SAM3_TrackToMask"), 0], "tracked")
    save_mask(graph, "92", [node_of(graph, "BlendedLatentStitch"), 1], "paste")
    entry = run_and_free(server, graph)

    source, tracked = saved(base, entry, "test/source"), saved(base, entry, "test/tracked")
    paste, out = saved(base, entry, "test/paste"), saved(base, entry, "test/frames")
    assert len(source) == 5 and source[0].shape == (240, 320, 3)
    assert len(tracked) == len(source) and tracked[0].shape == source[0].shape  # a mask per frame, at its size
    tracked = [t[..., 0] > 127 for t in tracked]
    share = float(np.mean(tracked))
    assert 0 < share < 1, f"SAM3 tracked {share:.3f} of the frames: the test would prove nothing"
    assert len(out) == len(paste) == 2 * len(source)
    edited = 0
    for i, (frame, weights) in enumerate(zip(out, paste)):
        src, inside = source[i % len(source)], weights[..., 0] > 0
        assert inside[tracked[i % len(source)]].all(), f"frame {i}: the paste mask misses what SAM3 tracked"
        assert np.array_equal(frame[~inside], src[~inside]), f"output frame {i}: background changed"
        if inside.any():  # a random tracker may lose its object: a frame without a mask stays the source
            assert (frame[inside] != src[inside]).any(), f"output frame {i}: nothing edited inside its mask"
            edited += 1
    assert edited >= 2, "no frame of either clip was edited"
    assert list((base / "output" / "blended").glob("latent_video_edit_by_description*"))


# --- the shipped graphs against the server's validation -------------------------------------------------


@pytest.fixture(scope="module")
def placeholder_server(comfy, tmp_path_factory):
    """Empty files under every model name the two templates load: /prompt checks names, links, ranges."""
    root = tmp_path_factory.mktemp("sam3-placeholders")
    base = prepare_base(root / "base")
    folders = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models", "clip_name": "text_encoders",
               "vae_name": "vae"}
    for name in (IMAGE, VIDEO):
        for node in api_workflow(name).values():
            for key, folder in folders.items():
                value = node["inputs"].get(key)
                if isinstance(value, str) and value.endswith(".safetensors"):
                    (base / "models" / folder).mkdir(parents=True, exist_ok=True)
                    (base / "models" / folder / value).touch()
    with offline_server(comfy, base, root) as server:
        yield server


@pytest.mark.parametrize("name", (IMAGE, VIDEO))
def test_the_shipped_sam3_graph_passes_the_servers_validation(placeholder_server, name):
    """Sent as shipped: accepted, and the run stops at a loader (an empty file cannot load). On 0.3.75
    it skips, naming the SAM3 nodes that engine lacks."""
    graph = api_workflow(name)
    skip_without_later_core_nodes(graph, set(placeholder_server.object_info()), name)
    try:
        entry = placeholder_server.run(graph, timeout=300)
    except PromptRejected as e:
        pytest.fail(f"{name}: /prompt refused the shipped graph: {describe_rejection(e.body)}")
    error = execution_error(entry)
    assert error is not None and error["node_type"] in ("CheckpointLoaderSimple", "UNETLoader", "CLIPLoader",
                                                        "VAELoader", "BlendedCLIPLoader"), error


def test_on_an_engine_without_sam3_the_validation_test_skips_naming_the_nodes():
    graph = api_workflow(VIDEO)
    registered = {n["class_type"] for n in graph.values()} - set(LATER_CORE_NODES)
    with pytest.raises(pytest.skip.Exception, match="needs ComfyUI 0.33 or later: this engine does not register "
                       "SAM3_TrackToMask, SAM3_VideoTrack"):
        skip_without_later_core_nodes(graph, registered, VIDEO)
    skip_without_later_core_nodes(graph, registered | set(LATER_CORE_NODES), VIDEO)  # 0.33: no skip
