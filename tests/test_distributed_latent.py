"""Latent best-of-N over ComfyUI-Distributed: a master and one CPU worker on 127.0.0.1, each with the
random SD1.5 checkpoint (tests/support/sd15_fixture.py) as the user's own.

The shipped ``blended_latent_distributed_best_of_n`` is queued on the master's ``/distributed/queue``
as in tests/test_distributed.py: the master samples seed S, the worker S + 1 (DistributedSeed into the
Blended Latent Sampler), each process crops, encodes, samples, reconstructs and stitches its own
sample, the DistributedCollector gathers the full-size stitched images and Blended Rank Results ranks
them. One worker, not two: each server holds the whole SD1.5 in memory on this CPU, and the worker
failure case is the pixel test's (the collector does not depend on what made the images). Small: a
64 px crop, 3 steps, 2 reconstruction steps.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from scripts.engine import comfy_distributed
from scripts.engine.comfy_engine import execution_error, output_images, output_texts, set_inputs
from tests.support.comfy_harness import TINY_CLIP, prepare_tiny_pixel

if comfy_distributed.snapshot() is None:
    pytest.skip(f"ComfyUI-Distributed snapshot {comfy_distributed.SNAPSHOT} not found in "
                f"{comfy_distributed.vendor_dir()} (the repository's ../shared/vendor, or $BLENDED_VENDOR_DIR)",
                allow_module_level=True)

SEED = 11


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sd15_checkpoint):
    def prepare(base):
        base = prepare_tiny_pixel(base)
        checkpoints = base / "models" / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / sd15_checkpoint.name).symlink_to(sd15_checkpoint)
        return base

    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with comfy_distributed.cluster(tmp_path_factory.mktemp("distributed_latent"), prepare, workers=1,
                                   timeout_s=60, env=env) as c:
        c.checkpoint = sd15_checkpoint.name
        yield c


def graph(cluster, seed: int) -> dict:
    g = comfy_distributed.template(comfy_distributed.LATENT_TEMPLATE)
    set_inputs(g, "CheckpointLoaderSimple", ckpt_name=cluster.checkpoint)
    set_inputs(g, "BlendedCLIPLoader", clip_name=TINY_CLIP)
    set_inputs(g, "BlendedLatentCrop", resolution=64)
    set_inputs(g, "BlendedLatentSampler", steps=3)
    set_inputs(g, "BlendedBackgroundReconstruction", iterations=2)
    set_inputs(g, "DistributedSeed", seed=seed)
    set_inputs(g, "BlendedRankResults", top_k=8)
    return g


def finished(server, prompt_id: str) -> dict:
    entry = server.wait(prompt_id, timeout=600)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    return entry


def ranked(server, entry: dict) -> list[tuple[int, np.ndarray]]:
    """(index in the gathered batch, saved RGB) for every saved image, best first."""
    text = next(t for t in output_texts(entry) if re.search(r"^#\d+: sample", t, re.M))
    indices = [int(i) for i in re.findall(r"^#\d+: sample (\d+)", text, re.M)]
    images = [np.asarray(Image.open(server.base / "output" / img.get("subfolder", "") / img["filename"]).convert("RGB"))
              for img in output_images(entry)]
    assert len(indices) == len(images), text
    return list(zip(indices, images))


def test_the_latent_template_wires_distributed_seed_collector_and_rank():
    g = comfy_distributed.template(comfy_distributed.LATENT_TEMPLATE)
    by_class = {n["class_type"]: k for k, n in g.items()}
    sampler, rank = g[by_class["BlendedLatentSampler"]]["inputs"], g[by_class["BlendedRankResults"]]["inputs"]
    assert sampler["seed"] == [by_class["DistributedSeed"], 0]
    # the collector gathers the stitched full-size images: what crosses back is the finished edit
    assert g[by_class["DistributedCollector"]]["inputs"]["images"] == [by_class["BlendedLatentStitch"], 0]
    assert rank["images"] == [by_class["DistributedCollector"], 0]
    assert rank["mask"] == [by_class["BlendedLatentStitch"], 1]  # the master's paste mask, one for all
    assert sampler["batch_size"] == 1  # worker k's seed + k would repeat the master's seed + i otherwise
    assert g[by_class["CheckpointLoaderSimple"]]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"


def test_master_and_worker_sample_their_own_seeds_and_the_master_ranks_both(cluster):
    body = cluster.queue(graph(cluster, SEED))
    assert body["worker_count"] == 1, body
    got = dict(ranked(cluster.master, finished(cluster.master, body["prompt_id"])))
    assert sorted(got) == [0, 1]
    assert not np.array_equal(got[0], got[1])
    assert cluster.workers[0].get("/history"), "the worker ran nothing"
    source = np.asarray(Image.open(cluster.master.base / "input" / "blended_object.png").convert("RGB"))
    edit = np.asarray(Image.open(cluster.master.base / "input" / "blended_object.png"))[..., 3] < 255
    for i, image in got.items():
        assert image.shape == source.shape
        assert np.array_equal(image[~edit], source[~edit]), f"sample {i}: a pixel outside the mask changed"
        assert not np.array_equal(image[edit], source[edit]), f"sample {i}: the mask was not edited"
    # each sample is the same seed run by the master alone, bit for bit (plain /prompt: DistributedSeed
    # passes the seed through, the collector the batch)
    for i in range(2):
        entry = finished(cluster.master, cluster.master.queue_prompt(graph(cluster, SEED + i)))
        ((_, local),) = ranked(cluster.master, entry)
        assert np.array_equal(got[i], local), f"sample {i} (seed {SEED + i}) differs from the local run"
