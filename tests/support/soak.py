"""Many latent edits on one ComfyUI server, and what they leave behind in the server process.

Shared by the soak benchmark (``benchmarks/bench_soak.py``: 100 + 20 edits, RSS figures) and its
short test (``tests/test_soak.py``: 10 + a cancel, mechanics only). A leak in a long-running server
shows only after many runs, so both queue edits back to back on one server and compare the server
process's resident memory, open descriptors and threads, and the files in its temporary folders,
before and after.

Each edit is the shipped latent template (``Blended - SD1.5 or SDXL edit``) with a small crop and
few steps, ranked by the CLIP criterion; only the sampler's seed changes between edits, so ComfyUI
re-runs the sampler, reconstruction, stitch, ranking and save every time while the loaded checkpoint
and CLIP stay cached, as when a user edits again.
"""

from __future__ import annotations

import copy
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from scripts.engine.comfy_engine import ComfyServer, execution_error, set_inputs
from tests.support.comfy_harness import api_workflow

TEMPLATE = "Blended - SD1.5 or SDXL edit"
# The edit's settings (the docstrings of the benchmark and the test, and RESULTS.md, quote them).
RESOLUTION, STEPS, BATCH, ITERATIONS = 64, 2, 2, 2
CANCELLED_STEPS = 1000  # the cancelled edit samples long enough to be cancelled mid-sampling


def edit_graph(names: dict[str, str], seed: int, steps: int = STEPS) -> dict:
    """The latent template on ``names``' checkpoint and CLIP at RESOLUTION px, ``steps`` steps."""
    graph = copy.deepcopy(api_workflow(TEMPLATE))
    set_inputs(graph, "CheckpointLoaderSimple", ckpt_name=names["sd15"])
    set_inputs(graph, "BlendedCLIPLoader", clip_name=names["clip"])
    set_inputs(graph, "BlendedLatentCrop", resolution=RESOLUTION)
    set_inputs(graph, "BlendedLatentSampler", seed=seed, steps=steps, batch_size=BATCH)
    set_inputs(graph, "BlendedBackgroundReconstruction", iterations=ITERATIONS)
    set_inputs(graph, "BlendedRankResults", top_k=1)
    return graph


# --- the server process -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    rss_mb: float
    fds: int
    threads: int
    anon_mb: float  # of the RSS: memory the process allocated (heap, tensors) ...
    file_mb: float  # ... and mapped files (libraries, memory-mapped model files)


def sample(pid: int) -> Sample:
    """The server process's resident memory, open file descriptors and threads, now."""
    import psutil

    proc = psutil.Process(pid)
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status) if k in ("RssAnon", "RssFile")}
    return Sample(proc.memory_info().rss / 2**20, proc.num_fds(), proc.num_threads(),
                  kib.get("RssAnon", 0) / 1024, kib.get("RssFile", 0) / 1024)


def temp_dirs(server: ComfyServer) -> list[Path]:
    """Where the server may leave temporary files: ComfyUI's temp folder under its base directory and
    the folder its TMPDIR names (Python's tempfile, torch), when it was given one of its own."""
    dirs = [server.base / "temp"]
    tmpdir = server.env.get("TMPDIR")
    if tmpdir:
        dirs.append(Path(tmpdir))
    return dirs


def temp_entries(server: ComfyServer) -> set[str]:
    """Every file and folder now in the server's temporary folders, less the results the server
    reported as ``temp`` files (a preview a person views, such as the ranking's scores .txt: kept
    until the server restarts, as PreviewImage's are; not a leftover)."""
    found = set()
    for folder in temp_dirs(server):
        if folder.is_dir():
            found |= {str(p) for p in folder.rglob("*")}
    return found - reported_temp_files(server)


def reported_temp_files(server: ComfyServer) -> set[str]:
    """The files (and their subfolders) of type ``temp`` that finished runs list in /history."""
    reported = set()
    for entry in get_patiently(server, "/history").values():
        for output in entry.get("outputs", {}).values():
            for items in output.values():
                for item in items if isinstance(items, list) else ():
                    if isinstance(item, dict) and item.get("type") == "temp" and "filename" in item:
                        path = server.base / "temp" / item.get("subfolder", "") / item["filename"]
                        reported |= {str(path), *(str(d) for d in path.parents if d != server.base / "temp"
                                                  and (server.base / "temp") in d.parents)}
    return reported


def settle(server: ComfyServer, quiet_s: float = 1.0, timeout: float = 120) -> None:
    """Wait until the queue is empty and the server has been idle ``quiet_s``: sockets of the last
    requests closed, and (with ``quiet_s`` over 10) ComfyUI's idle garbage collection, which it runs
    10 s after the last prompt, done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = get_patiently(server, "/queue")
        if not queue.get("queue_running") and not queue.get("queue_pending"):
            time.sleep(quiet_s)
            return
        time.sleep(0.2)
    raise TimeoutError(f"the queue did not empty within {timeout:.0f} s")


# --- queuing ----------------------------------------------------------------------------------------


def queue_all(server: ComfyServer, graphs: list[dict]) -> list[str]:
    """Queue every graph at once, back to back, before any finishes."""
    return [server.queue_prompt(g, client_id="blended-soak") for g in graphs]


def wait_all(server: ComfyServer, prompt_ids: list[str], timeout_each: float = 600, on_done=None) -> list[dict]:
    """The history entries of ``prompt_ids``, in order, once each has finished; ``on_done(n)`` after
    the n-th (e.g. to follow the memory while the queue runs)."""
    entries = []
    for pid in prompt_ids:
        entries.append(wait_one(server, pid, timeout_each))
        if on_done is not None:
            on_done(len(entries))
    return entries


def get_patiently(server: ComfyServer, path: str, tries: int = 10):
    """GET ``path``, retried when the server does not answer in time (see ``wait_one``)."""
    for attempt in range(tries):
        try:
            return server.get(path)
        except (OSError, urllib.error.URLError):
            if attempt == tries - 1 or not server.alive():
                raise
            time.sleep(1.0)


def wait_one(server: ComfyServer, prompt_id: str, timeout: float) -> dict:
    """``prompt_id``'s history entry once it has finished. A poll that gets no answer is retried: on
    a shared machine under memory pressure the server can stall for longer than one request's
    timeout, which says nothing about the soak."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.wait(prompt_id, timeout=max(1.0, deadline - time.monotonic()))
        except (OSError, urllib.error.URLError):  # (also wait's own TimeoutError: then past the deadline)
            if time.monotonic() > deadline or not server.alive():
                raise
            time.sleep(1.0)


def running_prompt(server: ComfyServer) -> str | None:
    running = get_patiently(server, "/queue").get("queue_running") or []
    return running[0][1] if running else None


def cancel_when_running(server: ComfyServer, prompt_id: str, after_s: float = 1.0, timeout: float = 1800) -> None:
    """Press Cancel (POST /interrupt) once ``prompt_id`` has been running ``after_s``, while the edits
    queued after it wait."""
    deadline = time.monotonic() + timeout
    while running_prompt(server) != prompt_id:
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} never started running")
        time.sleep(0.1)
    time.sleep(after_s)
    server.interrupt()


def was_interrupted(entry: dict) -> bool:
    kinds = [kind for kind, _ in entry.get("status", {}).get("messages", [])]
    return "execution_interrupted" in kinds and "execution_success" not in kinds


def failures(entries: list[dict]) -> list[str]:
    """Why each of ``entries`` that did not complete did not: an error message or its status."""
    out = []
    for entry in entries:
        error = execution_error(entry)
        status = entry.get("status", {})
        if error is not None:
            out.append(f"{error['node_type']}: {error['exception_message']}")
        elif status.get("status_str") != "success" or not status.get("completed"):
            out.append(f"status {status.get('status_str')}")
    return out


def run_edits(server: ComfyServer, names: dict[str, str], seeds: range, on_done=None) -> list[dict]:
    """Queue one edit per seed back to back and wait for all; the history entries."""
    return wait_all(server, queue_all(server, [edit_graph(names, s) for s in seeds]), on_done=on_done)


@dataclass
class CancelRun:
    cancelled: dict  # the cancelled edit's history entry
    after: list[dict]  # the entries of the edits queued after it
    before: list[dict]  # ... and before it


def run_with_cancel(server: ComfyServer, names: dict[str, str], seeds: range, cancel_at: int) -> CancelRun:
    """Queue one edit per seed back to back, the one at ``cancel_at`` a long one, and Cancel it while
    it samples; the queue must go on with the rest."""
    graphs = [edit_graph(names, s, CANCELLED_STEPS if i == cancel_at else STEPS) for i, s in enumerate(seeds)]
    ids = queue_all(server, graphs)
    cancel_when_running(server, ids[cancel_at])
    entries = wait_all(server, ids)
    return CancelRun(entries[cancel_at], entries[cancel_at + 1:], entries[:cancel_at])


def free_models(server: ComfyServer) -> None:
    """ComfyUI's "free memory" request, as its menu sends it: unload every model and drop the node
    cache (which holds the loaders' outputs: the checkpoint, the pack's CLIP and reward models)."""
    status, body = server.post("/free", {"unload_models": True, "free_memory": True})
    if status != 200:
        raise RuntimeError(f"POST /free -> HTTP {status}: {body}")
