"""Best-of-N over ComfyUI-Distributed: a master and two CPU workers on 127.0.0.1, tiny models.

The shipped template ``blended_distributed_best_of_n`` is queued on the master's
``/distributed/queue`` exactly as ComfyUI-Distributed's Queue button sends it: the master samples seed
S, worker k (DistributedSeed) seed S + k, each worker posts its IMAGE batch back to the master, the
DistributedCollector gathers master-first-then-workers, and Blended Rank Results ranks all of them.
ComfyUI-Distributed v1.4.4 is an unmodified snapshot from ``../shared/vendor`` (scripts/engine/comfy_distributed.py),
only configured; without it the module is skipped. Three ComfyUI servers run at once: each is killed
with its process group when the module ends, whatever happened.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from PIL import Image

from scripts.engine import comfy_distributed
from scripts.engine.comfy_engine import execution_error, output_images, output_texts, set_inputs
from tests.support.comfy_harness import TINY_ADM, TINY_CLIP, prepare_tiny_pixel

if comfy_distributed.snapshot() is None:
    pytest.skip(f"ComfyUI-Distributed snapshot {comfy_distributed.SNAPSHOT} not found in "
                f"{comfy_distributed.vendor_dir()} (the repository's ../shared/vendor, or $BLENDED_VENDOR_DIR)",
                allow_module_level=True)

SEED = 7
TIMEOUT_S = 15  # the master's worker_timeout_seconds: silence it tolerates before probing a worker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")  # its messages are print()s: in the log as they happen
    with comfy_distributed.cluster(tmp_path_factory.mktemp("distributed"), prepare_tiny_pixel, workers=2,
                                   timeout_s=TIMEOUT_S, env=env) as c:
        yield c


def graph(seed: int, steps: str = "8") -> dict:
    g = comfy_distributed.template()
    set_inputs(g, "BlendedDiffusionModelLoader", model_name=TINY_ADM)
    set_inputs(g, "BlendedCLIPLoader", clip_name=TINY_CLIP)
    set_inputs(g, "BlendedSampler", steps=steps, skip_timesteps=2)
    set_inputs(g, "DistributedSeed", seed=seed)
    set_inputs(g, "BlendedRankResults", top_k=8)
    return g


def finished(server, prompt_id: str, timeout: float) -> dict:
    entry = server.wait(prompt_id, timeout=timeout)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    return entry


def ranked(server, entry: dict) -> list[tuple[int, np.ndarray]]:
    """(index in the gathered batch, saved RGB) for every saved image, best first."""
    (text,) = output_texts(entry)
    indices = [int(i) for i in re.findall(r"^#\d+: sample (\d+)", text, re.M)]
    images = [np.asarray(Image.open(server.base / "output" / img.get("subfolder", "") / img["filename"]).convert("RGB"))
              for img in output_images(entry)]
    assert len(indices) == len(images), text
    return list(zip(indices, images))


def local_sample(cluster, seed: int, steps: str) -> np.ndarray:
    """The same graph and seed run by the master alone (plain /prompt: DistributedSeed passes the seed
    through, the collector passes the batch through)."""
    server = cluster.master
    entry = finished(server, server.queue_prompt(graph(seed, steps)), timeout=300)
    ((_, image),) = ranked(server, entry)
    return image


def test_the_template_wires_distributed_seed_collector_and_rank():
    g = comfy_distributed.template()
    by_class = {n["class_type"]: k for k, n in g.items()}
    sampler, rank = g[by_class["BlendedSampler"]]["inputs"], g[by_class["BlendedRankResults"]]["inputs"]
    assert sampler["seed"] == [by_class["DistributedSeed"], 0]
    assert g[by_class["DistributedCollector"]]["inputs"]["images"] == [by_class["BlendedSampler"], 0]
    assert rank["images"] == [by_class["DistributedCollector"], 0]
    # The collector gathers IMAGE only: the mask the ranking reads is the master's own (batch 1).
    assert rank["mask"] == [by_class["LoadImage"], 1]
    # DistributedSeed gives worker k seed + k and the sampler's sample i is seed + i: with more than
    # one sample per process, processes would repeat each other's seeds (README, "More GPUs").
    assert sampler["batch_size"] == 1


def test_three_processes_sample_their_own_seeds_and_the_master_ranks_all(cluster):
    started = time.monotonic()
    body = cluster.queue(graph(SEED))
    assert body["worker_count"] == 2, body
    entry = finished(cluster.master, body["prompt_id"], timeout=300)
    seconds = time.monotonic() - started
    got = ranked(cluster.master, entry)
    # master first, then the workers in enabled order: sample i is seed SEED + i
    assert sorted(i for i, _ in got) == [0, 1, 2]
    by_index = dict(got)
    assert not np.array_equal(by_index[0], by_index[1]) and not np.array_equal(by_index[1], by_index[2])
    for worker in cluster.workers:  # each worker really sampled (its own history has the run)
        assert worker.get("/history"), f"{worker.url} ran nothing"
    # Each sample equals the same seed run locally, bit for bit (the workers' IMAGE crossed as 8-bit
    # PNG, which is exactly what SaveImage writes too).
    for i in range(3):
        local = local_sample(cluster, SEED + i, "8")
        assert np.array_equal(by_index[i], local), f"sample {i} (seed {SEED + i}) differs from the local run"
    print(f"3 samples on 3 processes: {seconds:.1f} s")


def test_a_worker_killed_mid_run_leaves_the_master_with_the_surviving_samples(cluster):
    seed, steps = 1000, "40"  # a seed no earlier run used: nothing comes from a cache
    body = cluster.queue(graph(seed, steps))
    assert body["worker_count"] == 2, body
    victim = cluster.workers[1]
    comfy_distributed.wait_running(victim, timeout=120)
    victim.kill()
    started = time.monotonic()
    # bounded: the collector waits TIMEOUT_S after the last result, probes the silent worker, gives up
    entry = finished(cluster.master, body["prompt_id"], timeout=300)
    waited = time.monotonic() - started
    got = ranked(cluster.master, entry)
    assert sorted(i for i, _ in got) == [0, 1], "the master's and the surviving worker's samples"
    (text,) = output_texts(entry)
    assert "\nranked 2 samples" in text, text  # what the user sees in the scores output
    assert waited < 300
    by_index = dict(got)
    for i in range(2):
        assert np.array_equal(by_index[i], local_sample(cluster, seed + i, steps)), f"sample {i}"
    # the master and the surviving worker still serve
    assert cluster.master.alive() and cluster.workers[0].alive()
    # The collector's console line names the worker it gave up on. ComfyUI holds print()s in its own
    # buffered stdout until it exits, so it is read after stopping the master (the module's last use).
    cluster.master.stop()
    log = cluster.master.log()
    assert re.search(r"Heartbeat timeout\. Still waiting for workers: \['w2'\]", log), log[-3000:]
