"""End-to-end in the real ComfyUI engine: the shipped workflows, bad inputs, bad graphs, Cancel.

One ComfyUI server (0.3.75, unmodified) runs for the whole module on 127.0.0.1 with this pack in
custom_nodes and tiny random models in the real key layouts in its models folders. Graphs are
POSTed exactly as the UI or ``scripts/cli/run_edit.py`` would send them.
"""

from __future__ import annotations

import copy
import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from scripts.engine.comfy_engine import PromptRejected, execution_error, output_images, output_texts, set_inputs
from tests.support.comfy_harness import api_workflow, run_bad_combo, served_reports, watch_run

SHIPPED = ["Blended - Object editing", "Blended - New background", "Blended - Scribble editing",
           "Blended - Outpainting"]
OUR_NODES = {
    "BlendedDiffusionModelLoader", "BlendedCLIPLoader", "BlendedLPIPSLoader", "BlendedExtendingAugmentation",
    "BlendedCLIPGuidance", "BlendedBackgroundLoss", "BlendedSampler", "BlendedRankResults", "BlendedEvaluate",
    "BlendedRewardModelLoader", "BlendedRewardCriterion",
}
BATCH, TOP_K = 3, 2


def fast(graph: dict, comfy, steps: str = "4", skip: int | None = None) -> dict:
    """The shipped graph with the tiny models and a short schedule; everything else as shipped."""
    graph = copy.deepcopy(graph)
    set_inputs(graph, "BlendedDiffusionModelLoader", model_name=comfy.names["model"])
    set_inputs(graph, "BlendedCLIPLoader", clip_name=comfy.names["clip"])
    sampler = next(n for n in graph.values() if n["class_type"] == "BlendedSampler")
    shipped_skip = sampler["inputs"]["skip_timesteps"]
    # keep the shipped proportion of skipped steps (scribbles start later than object edits)
    skip = skip if skip is not None else round(shipped_skip * int(steps) / 100)
    set_inputs(graph, "BlendedSampler", steps=steps, skip_timesteps=skip, batch_size=BATCH)
    if any(n["class_type"] == "BlendedRankResults" for n in graph.values()):
        set_inputs(graph, "BlendedRankResults", top_k=TOP_K)
    return graph


def run_ok(comfy, graph: dict) -> dict:
    entry = comfy.server.run(graph, timeout=300)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    return entry


def run_error(comfy, graph: dict) -> dict:
    """Run a graph that must fail in a node; returns ComfyUI's execution_error message."""
    entry = comfy.server.run(graph, timeout=300)
    error = execution_error(entry)
    assert error is not None, "the graph was expected to fail"
    return error


def read_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def loaded_rgb(comfy, name: str) -> np.ndarray:
    return read_rgb(comfy.input_dir / name)


def assert_serving(comfy):
    assert comfy.server.alive()
    assert "BlendedSampler" in comfy.server.get("/object_info/BlendedSampler")


# --- the pack in the engine -------------------------------------------------------------------------


def test_pack_imports_and_every_input_has_a_tooltip(comfy):
    log = comfy.server.log()
    failed = [line for line in log.splitlines() if "IMPORT FAILED" in line and "blended" in line.lower()]
    assert not failed, failed
    info = comfy.server.object_info()
    assert OUR_NODES <= set(info)
    for name in OUR_NODES:
        assert info[name]["category"] == "blended_diffusion"
        for section in ("required", "optional"):
            for input_name, spec in info[name]["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_pack_keeps_the_files_already_in_input(comfy):
    """The harness wrote its own blended_object.png etc. before the server started: the pack's
    example copies (issue 11) must not have replaced them."""
    from scripts.engine.comfy_engine import WORKFLOWS
    from tests.support.comfy_harness import IMAGE_H, IMAGE_W

    written = set(comfy.masks) | {"blended_landscape.png"}  # what write_inputs put there (not the video's)
    photos = [p for p in sorted((WORKFLOWS / "examples").glob("*.png")) if p.name in written]
    assert len(photos) == 4
    for example in photos:
        ours = comfy.input_dir / example.name
        assert ours.read_bytes() != example.read_bytes()
        assert Image.open(ours).size == (IMAGE_W, IMAGE_H)


def test_missing_diffusion_files_are_listed_for_new_users(comfy):
    options = comfy.server.get("/object_info/BlendedDiffusionModelLoader")["BlendedDiffusionModelLoader"]
    names = options["input"]["required"]["model_name"][1]["options"]
    assert "256x256_diffusion_uncond.pt" in names and comfy.names["model"] in names


# --- the pack's own CLIP folder (issue 11) --------------------------------------------------------


def combo_options(comfy, node: str, name: str) -> list:
    spec = comfy.server.get(f"/object_info/{node}")[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def test_clip_loader_lists_only_its_own_folder(comfy):
    options = combo_options(comfy, "BlendedCLIPLoader", "clip_name")
    assert options == ["ViT-B-16-quickgelu:openai", comfy.names["clip"], comfy.names["clip_eval"]]
    core = combo_options(comfy, "CLIPLoader", "clip_name") + combo_options(comfy, "DualCLIPLoader", "clip_name1")
    assert "users_text_encoder.safetensors" in core and comfy.names["legacy_clip"] in core
    assert comfy.names["clip"] not in core and comfy.names["clip_eval"] not in core


def test_clip_file_left_in_models_clip_still_loads_with_a_hint(comfy):
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    set_inputs(graph, "BlendedCLIPLoader", clip_name=comfy.names["legacy_clip"])
    assert len(output_images(run_ok(comfy, graph))) == TOP_K
    hints = [line for line in comfy.server.log().splitlines() if "legacy_clip.safetensors is in ComfyUI's text" in line]
    assert hints and "move it to" in hints[-1] and "blended_clip" in hints[-1]


# OpenAI's file by name, not downloaded yet, is fetched as the hub tag's weights (docs/DESIGN.md, "Newer ComfyUI")
@pytest.mark.parametrize("clip_name", ["ViT-B-16-quickgelu:openai", "ViT-B-16.pt"])
def test_hub_tag_offline_keeps_its_clear_message(comfy, clip_name):
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    set_inputs(graph, "BlendedCLIPLoader", clip_name=clip_name)
    error = run_error(comfy, graph)
    assert error["node_type"] == "BlendedCLIPLoader"
    message = error["exception_message"]
    assert "could not be fetched" in message and "HF_HUB_OFFLINE" in message and "models/blended_clip/" in message
    assert not (comfy.base / "models" / "blended_clip" / "ViT-B-16.pt.part").exists()


def test_missing_clip_file_is_told_where_it_belongs(comfy):
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    set_inputs(graph, "BlendedCLIPLoader", clip_name="ViT-L-14.pt")
    with pytest.raises(PromptRejected) as info:
        comfy.server.queue_prompt(graph)
    text = json.dumps(info.value.body["node_errors"])
    assert "'ViT-L-14.pt' is not in" in text and "blended_clip" in text and "ViT-B-16-quickgelu:openai" in text
    assert_serving(comfy)


# --- the shipped workflows --------------------------------------------------------------------------


def expected_keep(comfy, name: str, graph: dict) -> tuple[np.ndarray, np.ndarray]:
    """(source RGB at the output's size, boolean map of pixels that must not change)."""
    image = next(n for n in graph.values() if n["class_type"] == "LoadImage")["inputs"]["image"]
    rgb = loaded_rgb(comfy, image)
    edit = comfy.masks.get(image)
    if name == "Blended - New background":
        return rgb, edit  # InvertMask: the subject is kept
    if name == "Blended - Outpainting":
        pad = next(n for n in graph.values() if n["class_type"] == "ImagePadForOutpaint")["inputs"]
        dilate = next(n for n in graph.values() if n["class_type"] == "BlendedSampler")["inputs"]["mask_dilate"]
        h, w = rgb.shape[:2]
        canvas = np.zeros((h + pad["top"] + pad["bottom"], w + pad["left"] + pad["right"], 3), np.uint8)
        canvas[pad["top"]:pad["top"] + h, pad["left"]:pad["left"] + w] = rgb
        keep = np.zeros(canvas.shape[:2], bool)
        keep[pad["top"] + dilate:pad["top"] + h - dilate, pad["left"] + dilate:pad["left"] + w - dilate] = True
        return canvas, keep
    return rgb, ~edit


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workflow_edits_only_the_mask(comfy, name):
    shipped = api_workflow(name)
    entry = run_ok(comfy, fast(shipped, comfy))
    images = output_images(entry)
    assert len(images) == TOP_K
    source, keep = expected_keep(comfy, name, shipped)
    assert keep.any() and (~keep).any()
    for img in images:
        out = read_rgb(comfy.output_path(img))
        assert out.shape == source.shape
        assert np.array_equal(out[keep], source[keep]), "pixels outside the mask changed"
        if name != "Blended - Outpainting":  # the outpainted canvas starts grey: any content differs
            assert (out[~keep] != source[~keep]).any(), "nothing was edited inside the mask"
    report = "\n".join(output_texts(entry))
    assert f"ranked {BATCH} samples" in report and "#2:" in report and "#3:" not in report


def test_ranked_scores_are_sorted_and_reproducible(comfy):
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    rank = next(k for k, n in graph.items() if n["class_type"] == "BlendedRankResults")
    entries = [run_ok(comfy, graph)]
    first = "\n".join(output_texts(entries[0]))
    set_inputs(graph, "BlendedRankResults", top_k=BATCH)
    entries.append(run_ok(comfy, graph))
    again = "\n".join(output_texts(entries[1]))
    # the same texts as .txt files for APP mode, one per run: the second did not overwrite the first
    assert [served_reports(comfy.server, e) for e in entries] == [{rank: first}, {rank: again}]
    scores = [float(line.rsplit(" ", 1)[1]) for line in again.splitlines() if line.startswith("#")]
    assert len(scores) == BATCH and scores == sorted(scores)
    rows = [[line for line in text.splitlines() if line.startswith("#")] for text in (first, again)]
    assert rows[1][:TOP_K] == rows[0]  # same seeds, same ranking (after any offline notes and the header)


def test_reward_models_rank_with_the_rest_and_a_missing_one_only_adds_a_note(comfy):
    from tests.support.tiny_rewards import save_tiny_hps

    save_tiny_hps(comfy.base / "models" / "blended_hpsv2" / "HPS_v2.1_compressed.pt")
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    rank = next(k for k, n in graph.items() if n["class_type"] == "BlendedRankResults")
    graph["30"] = {"class_type": "BlendedRewardModelLoader", "inputs": {"reward_model": "HPSv2.1"}}
    graph["31"] = {"class_type": "BlendedRewardModelLoader", "inputs": {"reward_model": "PickScore v1"}}  # offline
    graph["32"] = {"class_type": "BlendedRewardCriterion", "inputs": {"reward": ["30", 0], "weight": 1.0,
                                                                      "view": "mask_box"}}
    graph["33"] = {"class_type": "BlendedRewardCriterion", "inputs": {"reward": ["31", 0], "weight": 1.0,
                                                                      "view": "whole_image", "criteria": ["32", 0]}}
    graph[rank]["inputs"]["criteria"] = ["33", 0]
    set_inputs(graph, "BlendedRankResults", top_k=BATCH)
    lines = "\n".join(output_texts(run_ok(comfy, graph))).splitlines()
    assert lines[0].startswith("PickScore (whole) not used: The model file 'PickScore_v1.safetensors' is missing")
    assert "weighted mean rank of 1 x D_CLIP" in lines[1] and "1 x HPSv2.1 (box)" in lines[1]
    assert sum(" HPSv2.1 (box) " in line and "(rank " in line for line in lines) == BATCH


def cached_nodes(entry: dict) -> set[str]:
    """The nodes ComfyUI took from its output cache in this run (its execution_cached message)."""
    return {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}


def test_every_reward_model_loads_offline_from_real_files_and_goes_with_comfyuis_free(comfy):
    """The three reward models from files in the real layouts under the downloader's names (offline,
    so nothing else could be had): a second run takes them from ComfyUI's output cache, which is their
    only owner (tests/test_reward_release.py); after POST /free (unload_models + free_memory, as the
    UI's button) that cache is gone and the next run loads each again."""
    from blended.downloads import REWARD_WEIGHTS
    from tests.support.tiny_rewards import save_tiny_aesthetic, save_tiny_hps, save_tiny_pick

    def path(kind, i=0):
        entry = REWARD_WEIGHTS[kind][i]
        return comfy.base / "models" / entry.subfolder / entry.filename

    files = [path("hpsv2"), path("pickscore"), path("aesthetic"), path("aesthetic", 1)]
    save_tiny_hps(files[0])
    save_tiny_pick(files[1])
    save_tiny_aesthetic(files[2], files[3])
    try:  # the server's models folder is the session's: the other tests rank without these files
        graph = fast(api_workflow("Blended - Object editing"), comfy)
        rank = next(k for k, n in graph.items() if n["class_type"] == "BlendedRankResults")
        loaders = {"40": "HPSv2.1", "41": "PickScore v1", "42": "LAION aesthetic v2"}
        chain = None
        for i, (node, name) in enumerate(loaders.items()):
            graph[node] = {"class_type": "BlendedRewardModelLoader",
                           "inputs": {"reward_model": name, "if_missing": "error"}}
            graph[f"5{i}"] = {"class_type": "BlendedRewardCriterion",
                              "inputs": {"reward": [node, 0], "weight": 1.0, "view": "mask_box",
                                         **({"criteria": chain} if chain else {})}}
            chain = [f"5{i}", 0]
        graph[rank]["inputs"]["criteria"] = chain
        first = run_ok(comfy, graph)
        header = "\n".join(output_texts(first)).splitlines()[0]
        assert "1 x HPSv2.1 (box) + 1 x PickScore (box) + 1 x aesthetic (box)" in header, header
        assert set(loaders) <= cached_nodes(run_ok(comfy, graph))
        status, body = comfy.server.post("/free", {"unload_models": True, "free_memory": True})
        assert status == 200, body
        time.sleep(2)  # the prompt worker frees on its next wake-up, which the request triggers
        assert not set(loaders) & cached_nodes(run_ok(comfy, graph)), "the reward models outlived ComfyUI's free"
    finally:
        for file in files:
            file.unlink(missing_ok=True)


def test_local_baseline_with_background_loss_and_evaluation(comfy):
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    graph["20"] = {"class_type": "BlendedLPIPSLoader", "inputs": {"lpips_name": comfy.names["lpips"]}}
    graph["21"] = {"class_type": "BlendedBackgroundLoss",
                   "inputs": {"guidance": ["5", 0], "lpips": ["20", 0], "lambda_lpips": 1000.0, "lambda_l2": 10000.0}}
    graph["22"] = {"class_type": "BlendedCLIPLoader", "inputs": {"clip_name": comfy.names["clip_eval"]}}
    graph["23"] = {"class_type": "BlendedEvaluate",
                   "inputs": {"images": ["6", 0], "source": ["1", 0], "mask": ["1", 1], "prompt": "a bowl of cherries",
                              "band_px": 2, "clip": ["22", 0], "lpips": ["20", 0]}}
    graph["6"]["inputs"].update(guidance=["21", 0], mode="local", enforce_background=False)
    entry = run_ok(comfy, graph)
    report = json.loads(entry["outputs"]["23"]["text"][0])
    assert len(report["background_psnr"]) == BATCH and len(report["clip_score"]) == BATCH
    assert all(math.isfinite(p) for p in report["background_psnr"])  # local mode, no paste: background moved
    assert all(v > 0 for v in report["background_lpips"]) and report["diversity_lpips"] > 0

    graph["6"]["inputs"].update(mode="blended", enforce_background=True, guidance=["5", 0])
    report = json.loads(run_ok(comfy, graph)["outputs"]["23"]["text"][0])
    assert all(math.isinf(p) for p in report["background_psnr"])  # blended: background untouched
    assert all(v == 0 for v in report["background_lpips"])


# --- bad inputs: a clear error on the node, and the server keeps serving -----------------------------


def with_changes(comfy, change) -> dict:
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    change(graph)
    return graph


def mask_from(image: str):
    def change(graph):
        graph["30"] = {"class_type": "LoadImage", "inputs": {"image": image}}
        graph["6"]["inputs"]["mask"] = ["30", 1]
    return change


BAD_INPUTS = {
    "mask_size": (mask_from("blended_small.png"), "BlendedSampler", "mask is 32x32 pixels but the image is 64x48"),
    "empty_mask": (lambda g: g["1"]["inputs"].update(image="blended_opaque.png"), "BlendedSampler", "mask is empty"),
    "missing_model": (lambda g: g["2"]["inputs"].update(model_name="512x512_diffusion.pt"),
                      "BlendedDiffusionModelLoader", "'512x512_diffusion.pt' is missing from"),
    "wrong_checkpoint": (lambda g: g["2"]["inputs"].update(model_name="clip_in_wrong_folder.safetensors"),
                         "BlendedDiffusionModelLoader", "CLIP"),
    "long_prompt": (lambda g: g["5"]["inputs"].update(prompt="a very red ball " * 75), "BlendedCLIPGuidance",
                    "CLIP tokens long"),
    "skip_too_large": (lambda g: g["6"]["inputs"].update(steps="4", skip_timesteps=4), "BlendedSampler",
                       "skip_timesteps 4 must be between 0 and 3"),
    "bad_steps": (lambda g: g["6"]["inputs"].update(steps="fast"), "BlendedSampler", "steps 'fast'"),
    # a V3 combo value outside its options (COMBO_INPUTS): the node says so on 0.3.75, the queue on >= 0.8
    "unknown_method": (lambda g: g["6"]["inputs"].update(method="euler"), "BlendedSampler", "method 'euler'"),
    "unknown_model_name": (lambda g: g["2"]["inputs"].update(model_name="nope.pt"), "BlendedDiffusionModelLoader",
                           "'nope.pt' is not in"),
}


# case -> (node id, input) of the bad value when it is a V3 combo's (tests/support/comfy_harness.py,
# COMBOS_CHECKED_AT_QUEUE_SINCE: refused when queued from ComfyUI 0.8, by the node at run time before)
COMBO_INPUTS = {"unknown_method": ("6", "method")}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_problem_and_server_survives(comfy, case):
    change, node_type, message = BAD_INPUTS[case]
    graph = with_changes(comfy, change)
    if case in COMBO_INPUTS:
        entry = run_bad_combo(comfy, graph, *COMBO_INPUTS[case])
        if entry is None:  # refused at queue time, naming the input (checked there)
            assert_serving(comfy)
            return
        error = execution_error(entry)
        assert error is not None, "the graph was expected to fail"
    else:
        error = run_error(comfy, graph)
    assert error["node_type"] == node_type
    assert message in error["exception_message"], error["exception_message"]
    assert "Traceback" not in error["exception_message"]
    assert_serving(comfy)


def test_good_run_after_errors(comfy):
    for case in ("empty_mask", "missing_model"):
        run_error(comfy, with_changes(comfy, BAD_INPUTS[case][0]))
    assert len(output_images(run_ok(comfy, fast(api_workflow("Blended - Object editing"), comfy)))) == TOP_K


# --- bad graphs: rejected at validation with node_errors ---------------------------------------------


BAD_GRAPHS = {
    "value_bigger_than_max": (lambda g: g["6"]["inputs"].update(batch_size=100000), "6", "batch_size"),
    "return_type_mismatch": (lambda g: g["6"]["inputs"].update(model=["3", 0]), "6", "model"),
    "missing_input": (lambda g: g["6"]["inputs"].pop("guidance"), "6", "guidance"),
}


@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_bad_graph_is_rejected_with_node_errors(comfy, case):
    change, node_id, field = BAD_GRAPHS[case]
    with pytest.raises(PromptRejected) as info:
        comfy.server.queue_prompt(with_changes(comfy, change))
    errors = info.value.body["node_errors"]
    assert node_id in errors and field in json.dumps(errors[node_id])
    assert_serving(comfy)


# --- Cancel -----------------------------------------------------------------------------------------


def test_interrupt_stops_sampling_within_a_step(comfy):
    long = fast(api_workflow("Blended - Object editing"), comfy, steps="1000", skip=0)
    prompt_id = comfy.server.queue_prompt(long)
    deadline = time.monotonic() + 60
    while not comfy.server.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the sampling loop
    started = time.monotonic()
    comfy.server.interrupt()
    entry = comfy.server.wait(prompt_id, timeout=60)
    assert time.monotonic() - started < 20, "Cancel took effect only after the run"
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds
    assert len(output_images(run_ok(comfy, fast(api_workflow("Blended - Object editing"), comfy)))) == TOP_K


# --- progress and preview ---------------------------------------------------------------------------


def test_progress_bar_counts_every_step_with_previews(comfy):
    graph = fast(api_workflow("Blended - Object editing"), comfy, steps="6", skip=1)
    set_inputs(graph, "BlendedSampler", seed=12345)  # not cached from an earlier test
    run = watch_run(comfy, graph, "progress-test", node="6", timeout=120)
    kind, progress, previews = run.kind, run.progress, run.previews
    assert kind == "execution_success"
    assert progress == [(i, 5) for i in range(1, 6)]  # 6 steps, 1 skipped
    assert previews >= 1  # the x̂0 preview (ComfyUI throttles how many it sends)
