"""Memory planning in the real ComfyUI engine: a batch of 8 under a forced small budget.

The session's server runs with ``BLENDED_MEMORY_BUDGET_MB`` set (tests/support/comfy_harness.py,
``forced_memory_budget_mb``): the shipped graphs fit in one chunk, but a very wide edit does not
fit even one sample without gradient checkpointing, so the sampler checkpoints and splits the
batch. The plan the test expects is computed with the library's own planner for the same tiny
models, budget and model input size.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.engine.comfy_engine import execution_error, output_images, set_inputs
from tests.support.comfy_harness import (
    api_workflow,
    forced_memory_budget_mb,
    photo,
    run_bad_combo,
    save_rgba,
    watch_run,
)

WIDE_W, WIDE_H = 560, 40
STEPS, SKIP, BATCH = "4", 1, 8


def wide_scene(comfy):
    """A 560x40 photo whose edit area is a band across its whole width: a very wide context box."""
    rgb = photo(WIDE_W, WIDE_H, seed=3)
    edit = np.zeros((WIDE_H, WIDE_W), bool)
    edit[12:28, 8:-8] = True
    save_rgba(comfy.input_dir / "blended_wide.png", rgb, edit)
    return rgb, edit


def expected_plan(comfy, graph, edit):
    """What the server's planner must decide for this graph (same code, same inputs)."""
    from blended import memory, region
    from blended.augment import ExtendingAugmentation
    from blended.clip_model import load_clip
    from blended.guidance import ClipGuidance, Guidance, RangeLoss
    from blended.pixel.checkpoint import load_diffusion_model
    from blended.pixel.edit import RegionSettings, prepare_masks

    models = comfy.base / "models"
    model = load_diffusion_model(models / "blended_diffusion" / comfy.names["model"])
    clip = load_clip(models / "blended_clip" / comfy.names["clip"])
    aug = graph["4"]["inputs"]
    guide = graph["5"]["inputs"]
    guidance = Guidance((
        ClipGuidance(clip, guide["prompt"], guide["clip_lambda"], guide["distance"],
                     ExtendingAugmentation(aug["count"], aug["degrees"], aug["translate"], aug["perspective"])),
        RangeLoss(guide["range_lambda"]),
    ))
    sampler = graph["6"]["inputs"]
    settings = RegionSettings(sampler["mask_dilate"], sampler["mask_feather"], sampler["context_margin"])
    edit_mask, _ = prepare_masks(torch.from_numpy(edit).float()[None, None], settings)
    box = region.context_box(edit_mask, settings.margin)
    h, w = region.model_input_size(box, model.image_size, model.config.size_multiple)
    budget = int(forced_memory_budget_mb() * 2**20)
    return memory.plan(BATCH, model, guidance, h, w, budget, "auto", "none")


def run_watching_progress(comfy, graph, client_id):
    """Queue ``graph``; returns (history entry, [(value, max)] of the sampler's progress)."""
    run = watch_run(comfy, graph, client_id, node="6")
    return comfy.server.wait(run.prompt_id, timeout=60), run.progress


def wide_graph(comfy):
    graph = copy.deepcopy(api_workflow("Blended - Object editing"))
    set_inputs(graph, "BlendedDiffusionModelLoader", model_name=comfy.names["model"])
    set_inputs(graph, "BlendedCLIPLoader", clip_name=comfy.names["clip"])
    set_inputs(graph, "LoadImage", image="blended_wide.png")
    set_inputs(graph, "BlendedSampler", steps=STEPS, skip_timesteps=SKIP, batch_size=BATCH, seed=777,
               precision="auto", memory="auto")
    set_inputs(graph, "BlendedRankResults", top_k=BATCH)
    return graph


def test_batch_8_under_a_forced_small_budget_runs_in_checkpointed_chunks(comfy):
    rgb, edit = wide_scene(comfy)
    graph = wide_graph(comfy)
    plan = expected_plan(comfy, graph, edit)
    assert plan.checkpointing, "the wide edit should need checkpointing under the forced budget"
    chunks = math.ceil(BATCH / plan.chunk)
    assert chunks > 1, plan.describe()

    entry, progress = run_watching_progress(comfy, graph, "memory-test")
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    steps = int(STEPS) - SKIP
    assert progress[-1] == (chunks * steps, chunks * steps)  # the bar spans every chunk
    assert [v for v, _ in progress] == list(range(1, chunks * steps + 1))

    images = output_images(entry)
    assert len(images) == BATCH  # no sample lost or duplicated
    outs = [np.asarray(Image.open(comfy.output_path(i)).convert("RGB")) for i in images]
    keep = ~edit
    for out in outs:
        assert out.shape == rgb.shape
        assert np.array_equal(out[keep], rgb[keep]), "pixels outside the mask changed"
        assert (out[edit] != rgb[edit]).any(), "nothing was edited inside the mask"
    assert len({o.tobytes() for o in outs}) == BATCH  # eight different samples
    assert comfy.server.alive()


@pytest.mark.parametrize("name,value,allowed", [("precision", "fp64", "auto, bf16, fp16, fp32"),
                                                 ("memory", "huge", "auto, fast, low")])
def test_unknown_precision_or_memory_is_named_with_its_choices(comfy, name, value, allowed):
    wide_scene(comfy)
    graph = wide_graph(comfy)
    set_inputs(graph, "BlendedSampler", **{name: value}, batch_size=1)
    sampler = next(node_id for node_id, node in graph.items() if node["class_type"] == "BlendedSampler")
    entry = run_bad_combo(comfy, graph, sampler, name)
    if entry is None:  # ComfyUI >= 0.8 refused it at queue time, naming the input (checked there)
        assert comfy.server.alive()
        return
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "BlendedSampler"
    assert f"{name} '{value}' is not one of its choices" in error["exception_message"]
    assert all(f"'{choice}'" in error["exception_message"] for choice in allowed.split(", "))
    assert "Traceback" not in error["exception_message"] and "KeyError" not in error["exception_message"]
    assert comfy.server.alive()
