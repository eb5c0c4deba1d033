"""Hostile and unusual inputs sent to the real ComfyUI server, as a careless user or an attacker would.

Every case POSTs a graph to the session's ComfyUI (tests/support/comfy_harness.py) and asserts: a clear
message on the node that names the input and the fix, no raw exception text, and a server that
still serves. Categories: model files (broken or code-carrying, in every model folder, by
path-like names), image formats and bit depths, mask shapes, sizes from 1x1 to 24 MP, image/mask
batches, odd prompts, odd step strings, odd numbers through the API, queued prompts and Cancel.
Time bounds are generous on purpose: they catch minutes, not seconds.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image
from test_comfy_engine import TOP_K, assert_serving, fast, run_error, run_ok

from scripts.engine.comfy_engine import PromptRejected, execution_error, output_images, set_inputs
from tests.support.comfy_harness import api_workflow, ellipse, photo, run_bad_combo, save_rgba
from tests.support.hostile_files import pickle_that_runs_code, torchscript_that_runs_code

RAW_EXCEPTION_WORDS = ("Traceback", "KeyError", "TypeError:", "UnboundLocalError", "cannot convert float NaN")


def edit_graph(comfy, **sampler) -> dict:
    graph = fast(api_workflow("Blended - Object editing"), comfy)
    if sampler:
        set_inputs(graph, "BlendedSampler", **sampler)
    return graph


def expect_error(comfy, graph: dict, node_type: str, *words: str) -> str:
    return named_error(comfy, run_error(comfy, graph), node_type, *words)


def named_error(comfy, error: dict, node_type: str, *words: str) -> str:
    """The node's own run-time message: from ``node_type``, with every one of ``words``, no raw exception."""
    message = error["exception_message"]
    assert error["node_type"] == node_type, (error["node_type"], message)
    for word in words:
        assert word in message, message
    assert not any(raw in message for raw in RAW_EXCEPTION_WORDS), message
    assert_serving(comfy)
    return message


def load_image_as(graph: dict, name: str) -> dict:
    graph["1"]["inputs"]["image"] = name
    return graph


# --- model files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_models(comfy):
    """Code-carrying and broken files in every model folder the pack reads."""
    models = comfy.base / "models"
    marker = comfy.base / "hostile_marker"
    names = {}
    for folder in ("blended_diffusion", "blended_clip", "lpips"):
        (models / folder).mkdir(parents=True, exist_ok=True)
        names[(folder, "torchscript")] = torchscript_that_runs_code(models / folder / "hostile_ts.pt", marker).name
        names[(folder, "pickle")] = pickle_that_runs_code(models / folder / "hostile_pickle.ckpt", marker).name
        (models / folder / "broken_empty.pt").write_bytes(b"")
        (models / folder / "broken_page.safetensors").write_bytes(b"<!DOCTYPE html><html>404</html>")
        (models / folder / "broken_random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    return marker, names


LOADERS = {
    "blended_diffusion": ("2", "BlendedDiffusionModelLoader", "model_name"),
    "blended_clip": ("3", "BlendedCLIPLoader", "clip_name"),
}


@pytest.mark.parametrize("folder", list(LOADERS))
@pytest.mark.parametrize("kind", ["torchscript", "pickle"])
def test_code_in_a_model_file_is_refused_and_never_runs(comfy, hostile_models, folder, kind):
    marker, names = hostile_models
    node_id, node_type, field = LOADERS[folder]
    graph = edit_graph(comfy)
    graph[node_id]["inputs"][field] = names[(folder, kind)]
    message = expect_error(comfy, graph, node_type, "refused", "code", names[(folder, kind)], ".safetensors")
    assert "download it again" not in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["torchscript", "pickle"])
def test_code_in_an_lpips_file_is_refused(comfy, hostile_models, kind):
    marker, names = hostile_models
    graph = edit_graph(comfy)
    graph["20"] = {"class_type": "BlendedLPIPSLoader", "inputs": {"lpips_name": names[("lpips", kind)]}}
    graph["21"] = {"class_type": "BlendedBackgroundLoss",
                   "inputs": {"guidance": ["5", 0], "lpips": ["20", 0], "lambda_lpips": 1000.0, "lambda_l2": 10000.0}}
    graph["6"]["inputs"]["guidance"] = ["21", 0]
    expect_error(comfy, graph, "BlendedLPIPSLoader", "refused", "code")
    assert not marker.exists()


@pytest.mark.parametrize("name, words", [
    ("broken_empty.pt", ["0 bytes", "download it again"]),
    ("broken_page.safetensors", ["web page", "download the file again"]),
    ("broken_random.pth", ["could not be read", "download it again"]),
])
@pytest.mark.parametrize("folder", list(LOADERS))
def test_broken_model_files_in_every_folder(comfy, hostile_models, folder, name, words):
    node_id, node_type, field = LOADERS[folder]
    graph = edit_graph(comfy)
    graph[node_id]["inputs"][field] = name
    expect_error(comfy, graph, node_type, name, *words)


def test_oversized_stored_unet_config_is_refused_before_building(comfy):
    from safetensors.torch import save_file

    from blended.pixel.checkpoint import CONFIG_METADATA_KEY
    from tests.support.tiny_unet import tiny_unet_config, tiny_unet_state_dict

    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in tiny_unet_config().__dict__.items()}
    path = comfy.base / "models" / "blended_diffusion" / "huge_config.safetensors"
    save_file(tiny_unet_state_dict(0), str(path),
              metadata={CONFIG_METADATA_KEY: json.dumps({**fields, "num_res_blocks": 400})})
    graph = edit_graph(comfy)
    graph["2"]["inputs"]["model_name"] = path.name
    start = time.monotonic()
    expect_error(comfy, graph, "BlendedDiffusionModelLoader", "num_res_blocks", "400", "Remove")
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("name", ["../input/blended_object.png", "/etc/passwd", "..\\..\\x.pt", "sub/../../x.pt"])
def test_path_like_model_names_stay_inside_the_model_folder(comfy, name):
    graph = edit_graph(comfy)
    graph["2"]["inputs"]["model_name"] = name
    expect_error(comfy, graph, "BlendedDiffusionModelLoader", "is not in", "models")


# --- images and masks -------------------------------------------------------------------------------


def write_image(comfy, name: str, save) -> str:
    save(comfy.input_dir / name)
    return name


@pytest.fixture(scope="module")
def odd_images(comfy):
    """The same photo in the formats users load, none with an alpha channel."""
    rgb = photo(64, 48, seed=3)
    grey = rgb.mean(-1).astype(np.uint8)
    made = {
        "rgb_png": lambda p: Image.fromarray(rgb).save(p),
        "grey_png": lambda p: Image.fromarray(grey, "L").save(p),
        "grey16_png": lambda p: Image.fromarray(grey.astype(np.uint16) * 257).save(p),  # 16-bit greyscale
        "palette_png": lambda p: Image.fromarray(rgb).convert("P").save(p),
        "jpeg": lambda p: Image.fromarray(rgb).save(p, quality=90),
    }
    suffix = {"jpeg": ".jpg"}
    return {kind: write_image(comfy, f"odd_{kind}{suffix.get(kind, '.png')}", save) for kind, save in made.items()}


@pytest.mark.parametrize("kind", ["rgb_png", "grey_png", "grey16_png", "palette_png", "jpeg"])
def test_image_without_alpha_says_nothing_is_painted(comfy, odd_images, kind):
    graph = load_image_as(edit_graph(comfy), odd_images[kind])
    expect_error(comfy, graph, "BlendedSampler", "nothing is painted", "MaskEditor")


def test_faint_mask_names_the_threshold(comfy):
    rgb = photo(64, 48, seed=4)
    alpha = np.full((48, 64), 255, np.uint8)
    alpha[ellipse(64, 48, 30, 24, 10, 8)] = 200  # painted at ~22 % opacity
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(comfy.input_dir / "faint_mask.png")
    graph = load_image_as(edit_graph(comfy), "faint_mask.png")
    expect_error(comfy, graph, "BlendedSampler", "too faint", "0.22", "0.5")


def mask_case(comfy, name: str, w: int, h: int, edit) -> str:
    rgb = photo(w, h, seed=w * 7 + h)
    area = np.zeros((h, w), bool)
    edit(area)
    save_rgba(comfy.input_dir / name, rgb, area)
    return name


MASK_SHAPES = {
    "full": lambda a: a.__setitem__((slice(None), slice(None)), True),
    "one_pixel": lambda a: a.__setitem__((20, 30), True),
    "border": lambda a: a.__setitem__((slice(0, 6), slice(None)), True),
    "corner": lambda a: a.__setitem__((slice(40, 48), slice(56, 64)), True),
    "thin_line": lambda a: a.__setitem__((slice(None), 31), True),
}


@pytest.mark.parametrize("shape", list(MASK_SHAPES))
def test_mask_shapes_edit_only_inside_the_mask(comfy, shape):
    name = mask_case(comfy, f"mask_{shape}.png", 64, 48, MASK_SHAPES[shape])
    entry = run_ok(comfy, load_image_as(edit_graph(comfy), name))
    images = output_images(entry)
    assert len(images) == TOP_K
    alpha = np.asarray(Image.open(comfy.input_dir / name))[..., 3]
    source = np.asarray(Image.open(comfy.input_dir / name).convert("RGB"))
    for img in images:
        out = np.asarray(Image.open(comfy.output_path(img)).convert("RGB"))
        assert np.array_equal(out[alpha == 255], source[alpha == 255])


@pytest.mark.parametrize("w, h", [(1, 1), (2, 2), (1, 300), (300, 1), (5, 3)])
def test_tiny_and_degenerate_sizes(comfy, w, h):
    name = mask_case(comfy, f"size_{w}x{h}.png", w, h, lambda a: a.__setitem__((slice(0, max(1, h // 2)),
                                                                                  slice(0, max(1, w // 2))), True))
    entry = run_ok(comfy, load_image_as(edit_graph(comfy), name))
    assert len(output_images(entry)) == TOP_K
    assert_serving(comfy)


def test_24_megapixel_photo_with_huge_dilate_and_feather(comfy):
    """6000x4000 with dilate and feather at their maximum (512): seconds, not hours."""
    w, h = 6000, 4000
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    rgb[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    area = np.zeros((h, w), bool)
    area[1800:2200, 2800:3200] = True
    save_rgba(comfy.input_dir / "big_24mp.png", rgb, area)
    graph = load_image_as(edit_graph(comfy, mask_dilate=512, mask_feather=512, batch_size=1), "big_24mp.png")
    set_inputs(graph, "BlendedRankResults", top_k=1)
    start = time.monotonic()
    entry = run_ok(comfy, graph)
    assert time.monotonic() - start < 600
    out = np.asarray(Image.open(comfy.output_path(output_images(entry)[0])).convert("RGB"))
    grown = np.zeros((h, w), bool)
    grown[1800 - 512:2200 + 512, 2800 - 512:3200 + 512] = True
    assert np.array_equal(out[~grown], rgb[~grown])


def batch_graph(comfy, images: int, masks: int) -> dict:
    """The object editing template with the image repeated ``images`` times and the mask ``masks`` times."""
    graph = edit_graph(comfy, batch_size=1)
    graph["20"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": images}}
    graph["21"] = {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}}
    graph["22"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["21", 0], "amount": masks}}
    graph["23"] = {"class_type": "ImageToMask", "inputs": {"image": ["22", 0], "channel": "red"}}
    graph["6"]["inputs"]["image"] = ["20", 0]
    graph["6"]["inputs"]["mask"] = ["23", 0]
    set_inputs(graph, "BlendedRankResults", top_k=8)
    return graph


@pytest.mark.parametrize("images, masks", [(2, 1), (2, 2)])
def test_image_and_mask_batches_that_fit(comfy, images, masks):
    entry = run_ok(comfy, batch_graph(comfy, images, masks))
    assert len(output_images(entry)) == images


@pytest.mark.parametrize("images, masks", [(2, 3), (1, 2)])
def test_image_and_mask_batches_that_do_not_fit(comfy, images, masks):
    expect_error(comfy, batch_graph(comfy, images, masks), "BlendedSampler", f"batch of {masks}",
                 "one mask, or one per image")


# --- prompts, step strings and numbers through the API ----------------------------------------------


@pytest.mark.parametrize("prompt, words", [
    ("x" * 12000, ["12000 characters", "77 tokens"]),
    ("", ["prompt is empty"]),
    ("   \n\t  ", ["prompt is empty"]),
    ("a very red ball " * 75, ["CLIP tokens long"]),
])
def test_odd_prompts(comfy, prompt, words):
    graph = edit_graph(comfy)
    graph["5"]["inputs"]["prompt"] = prompt
    start = time.monotonic()
    expect_error(comfy, graph, "BlendedCLIPGuidance", *words)
    assert time.monotonic() - start < 60


def test_unicode_and_multiline_prompt_runs(comfy):
    graph = edit_graph(comfy)
    graph["5"]["inputs"]["prompt"] = "a 🍒 bowl\nof cherries — très rouges, 赤い"
    assert len(output_images(run_ok(comfy, graph))) == TOP_K


@pytest.mark.parametrize("steps, words", [
    ("", ["steps"]), ("0", ["steps"]), ("-5", ["steps"]), ("ddim0", ["steps"]), ("10,,20", ["steps"]),
    ("1e9", ["steps"]), ("ddim5000", ["steps"]), ("fast", ["steps 'fast'"]),
])
def test_odd_step_strings(comfy, steps, words):
    expect_error(comfy, edit_graph(comfy, steps=steps, skip_timesteps=0), "BlendedSampler", *words)


NUMBERS = {
    "precision_fp64": ("6", "BlendedSampler", "precision", "fp64", ["precision", "'fp64'", "fp32"]),
    "context_margin_nan": ("6", "BlendedSampler", "context_margin", float("nan"), ["context_margin", "nan", "from 0"]),
    "context_margin_inf": ("6", "BlendedSampler", "context_margin", float("inf"), ["context_margin", "inf"]),
    "clip_lambda_nan": ("5", "BlendedCLIPGuidance", "clip_lambda", float("nan"), ["clip_lambda", "nan"]),
    "range_lambda_neg_inf": ("5", "BlendedCLIPGuidance", "range_lambda", float("-inf"), ["range_lambda"]),
    "degrees_nan": ("4", "BlendedExtendingAugmentation", "degrees", float("nan"), ["degrees", "nan"]),
    "distance_unknown": ("5", "BlendedCLIPGuidance", "distance", "euclid", ["distance", "'euclid'", "spherical"]),
    "mode_unknown": ("6", "BlendedSampler", "mode", "fast", ["mode", "'fast'", "blended"]),
}


# V3 combo values outside their options: ComfyUI >= 0.8 refuses them when queued, naming the input
# (tests/support/comfy_harness.py, COMBOS_CHECKED_AT_QUEUE_SINCE); 0.3.75 lets them through to the node.
COMBO_CASES = {"precision_fp64", "distance_unknown", "mode_unknown"}


@pytest.mark.parametrize("case", list(NUMBERS))
def test_values_comfyui_lets_through_are_checked_by_the_node(comfy, case):
    node_id, node_type, field, value, words = NUMBERS[case]
    graph = edit_graph(comfy)
    graph[node_id]["inputs"][field] = value
    if case in COMBO_CASES:
        entry = run_bad_combo(comfy, graph, node_id, field)
        if entry is None:  # refused at queue time, naming the input (checked there)
            assert_serving(comfy)
            return
        error = execution_error(entry)
        assert error is not None, f"{field}={value!r} ran through"
        named_error(comfy, error, node_type, *words)
        return
    try:
        message = expect_error(comfy, graph, node_type, *words)
    except PromptRejected as rejected:  # rejected at validation by ComfyUI itself: fine, if it says why
        message = json.dumps(rejected.body)
        assert field in message
    assert "nan" not in message.lower() or field in message


# --- queue and Cancel -------------------------------------------------------------------------------


def wait_running(comfy, timeout=60):
    deadline = time.monotonic() + timeout
    while not comfy.server.running() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5])
def test_cancel_at_any_moment_stops_the_run_and_the_queue_goes_on(comfy, delay):
    """Cancel lands in whichever phase is running (loading, masks, sampling, ranking); the run stops
    soon and the next queued prompt still completes."""
    long = edit_graph(comfy, steps="1000", skip_timesteps=0, mask_dilate=300, mask_feather=300,
                      seed=int(delay * 10) + 7)
    after = edit_graph(comfy, seed=99)
    first = comfy.server.queue_prompt(long)
    second = comfy.server.queue_prompt(after)
    wait_running(comfy)
    time.sleep(delay)
    started = time.monotonic()
    comfy.server.interrupt()
    entry = comfy.server.wait(first, timeout=120)
    assert time.monotonic() - started < 60
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds
    done = comfy.server.wait(second, timeout=300)
    assert execution_error(done) is None and len(output_images(done)) == TOP_K
    assert_serving(comfy)


def test_many_queued_prompts_all_finish(comfy):
    ids = [comfy.server.queue_prompt(edit_graph(comfy, seed=500 + i, batch_size=1)) for i in range(4)]
    for prompt_id in ids:
        entry = comfy.server.wait(prompt_id, timeout=300)
        assert execution_error(entry) is None
    assert_serving(comfy)


def test_a_seed_drawn_alone_or_in_a_batch_differs_at_most_by_the_stated_tolerance(comfy):
    """The README and the seed tooltip promise: same seed, another batch size -> at most about 1/255."""

    def unranked(seed: int, batch: int) -> list[np.ndarray]:
        graph = edit_graph(comfy, seed=seed, batch_size=batch)
        del graph["7"]
        graph["8"]["inputs"]["images"] = ["6", 0]
        graph["8"]["inputs"]["filename_prefix"] = f"blended/seed_{seed}_{batch}"
        return [np.asarray(Image.open(comfy.output_path(i))).astype(int) for i in output_images(run_ok(comfy, graph))]

    alone, in_batch, other = unranked(777, 1)[0], unranked(777, 3)[0], unranked(778, 1)[0]
    assert np.abs(alone - in_batch).max() <= 2
    assert np.abs(alone - other).max() > 2  # a different seed is a different picture
