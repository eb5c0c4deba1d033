"""The graphs the main job (``run_edit.py``) posts: a shipped workflow with the command line's photo,
prompt and options set in it, and the model files a latent template or checkpoint needs, found
before the server starts (a missing one is named with the folder it goes in, as the pixel path
names its model)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    load_graph,
    nodes_of,
    prompt_input,
    set_inputs,
    write_model_paths,
)
from scripts.engine.template_needs import Engine, declared_need, engine_release, refusal, release_text

LATENT_WORKFLOW = API_WORKFLOWS / "Blended - SD1.5 or SDXL edit.api.json"


def find_checkpoint(given: str, models_dir: Path) -> Path:
    """The checkpoint file: a path as given, else a name in models/checkpoints; missing -> the
    file and the folder it goes in, as the pixel path says for its model."""
    path = Path(given).expanduser()
    if path.is_file():
        return path.resolve()
    folder = models_dir / "checkpoints"
    if (folder / given).is_file():
        return (folder / given).resolve()
    raise SystemExit(
        f"error: checkpoint '{given}' not found. Put your SD1.5 or SDXL single-file checkpoint (.safetensors) into "
        f"{folder} and pass its file name, or pass its path with --checkpoint. Checkpoints are your own files; "
        "nothing is downloaded for the latent path (e.g. v1-5-pruned-emaonly.safetensors from "
        "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive, sd_xl_base_1.0.safetensors from "
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0)."
    )


def checkpoint_resolution(path: Path) -> int:
    """The model's native resolution, from the keys in the safetensors header (no weights read):
    SDXL's second text encoder under conditioner.embedders.1 means 1024, anything else 512."""
    try:
        with path.open("rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            keys = json.loads(f.read(size)).keys()
    except (OSError, ValueError, struct.error):
        return 512  # not a safetensors file: ComfyUI's loader says what is wrong with it
    return 1024 if any(k.startswith("conditioner.embedders.1.") for k in keys) else 512


def latent_graph(args, image_name: str, checkpoint: Path) -> dict:
    graph = template_graph(args, image_name, load_graph(LATENT_WORKFLOW))
    set_inputs(graph, "CheckpointLoaderSimple", ckpt_name=checkpoint.name)
    set_inputs(graph, "BlendedLatentCrop", resolution=args.resolution or checkpoint_resolution(checkpoint))
    if args.iterations is not None:
        set_inputs(graph, "BlendedBackgroundReconstruction", iterations=args.iterations)
    if args.clip:
        set_inputs(graph, "BlendedCLIPLoader", clip_name=args.clip)
    return graph


# Where core's loaders look for each file input (ComfyUI's folder names; the legacy unet/ and clip/
# are searched too).
LOADER_FOLDERS = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
}
LEGACY_FOLDERS = {"diffusion_models": "unet", "text_encoders": "clip"}


def template_folders() -> tuple[str, ...]:
    """The folders ``load_template`` looks in, for the server's search paths too (ComfyUI maps the
    legacy names onto the new ones)."""
    folders = {folder for names in LOADER_FOLDERS.values() for folder in names.values()}
    return tuple(sorted(folders | {LEGACY_FOLDERS[f] for f in folders if f in LEGACY_FOLDERS}))


LATENT_SECTION = "blended_checkpoint"


def model_paths(models_dir: Path, path: Path, template: bool, checkpoint: Path | None) -> Path:
    """The server's extra_model_paths.yaml: ``models_dir``'s folders (a template's core ones too) and a
    checkpoint's own folder, wherever it is."""
    paths = write_model_paths(models_dir, path, core=template_folders() if template else ())
    if checkpoint is not None:
        with paths.open("a") as f:
            f.write(f"{LATENT_SECTION}:\n    base_path: {json.dumps(str(checkpoint.parent))}\n    checkpoints: .\n")
    return paths


def image_templates() -> list[str]:
    """The shipped latent templates that edit one photo (the video ones take a video file)."""
    names = []
    for path in sorted(API_WORKFLOWS.glob("*.api.json")):
        graph = load_graph(path)
        if nodes_of(graph, "LoadImage") and nodes_of(graph, "BlendedLatentSampler"):
            names.append(path.name[: -len(".api.json")])
    return names


def image_template_graphs() -> dict[str, dict]:
    return {name: load_graph(API_WORKFLOWS / f"{name}.api.json") for name in image_templates()}


def template_choices() -> str:
    """--template's help: every choice, those whose note names a later ComfyUI marked with it."""
    def choice(name):
        need = declared_need(name)
        return repr(name) + (f" (needs ComfyUI {release_text(need.release)} or newer)" if need else "")
    return "; ".join(choice(name) for name in image_templates())


def require_engine_for(name: str, comfy: Path, server=None) -> None:
    """Stop, before an input is written or a prompt queued, when the engine cannot run the template:
    before the server starts on the release the template's note names (the copy's comfyui_version.py),
    once ``server`` is up on the node types its /object_info lacks too. The message names what is
    missing, the fix and the templates this engine runs (``template_needs.refusal``)."""
    require_shipped(name)
    templates = image_template_graphs()
    engine = Engine(comfy, engine_release(comfy))
    if server is not None:
        engine = Engine(comfy, engine.release, frozenset(server.object_info()), server.log())
    source = os.environ.get("BLENDED_COMFY_ENGINE")
    message = refusal(name, templates[name], engine, templates, Path(source) if source else None)
    if message:
        raise SystemExit(message)


def require_shipped(name: str) -> None:
    shipped = image_templates()
    if name not in shipped:
        raise SystemExit(f"error: --template {name!r} is not a shipped latent image template; one of: "
                         + ", ".join(repr(n) for n in shipped))


def load_template(name: str, models_dir: Path) -> dict:
    """The template's graph, once every model file it names is in ``models_dir``; otherwise each
    missing file and the folder it goes in, as the pixel path says for its model."""
    require_shipped(name)
    graph = load_graph(API_WORKFLOWS / f"{name}.api.json")
    missing = []
    for node in graph.values():
        for key, folder in LOADER_FOLDERS.get(node["class_type"], {}).items():
            file = node["inputs"][key]
            if "." not in file:  # a built-in choice such as VAELoader's pixel_space
                continue
            places = [models_dir / folder, models_dir / LEGACY_FOLDERS.get(folder, folder)]
            if not any((place / file).is_file() for place in places):
                missing.append(f"  {file} -> {models_dir / folder}")
    if missing:
        raise SystemExit(f"error: the template '{name}' needs these model files, not found:\n" + "\n".join(missing)
                         + "\nPut them there (or pass --models-dir); nothing is downloaded for the latent path. "
                         "The template's note (open it in ComfyUI) says where each comes from.")
    return graph


def template_graph(args, image_name: str, graph: dict) -> dict:
    """A latent template's graph with the photo, the prompt (its positive encoder and the ranking's
    CLIP guidance) and the sampling options of ``args``."""
    set_inputs(graph, "LoadImage", image=image_name)
    node, key = prompt_input(graph)
    node["inputs"][key] = args.prompt
    if nodes_of(graph, "BlendedCLIPGuidance"):
        set_inputs(graph, "BlendedCLIPGuidance", prompt=args.prompt)
    if args.resolution:
        set_inputs(graph, "BlendedLatentCrop", resolution=args.resolution)
    if args.steps and not str(args.steps).isdigit():
        raise SystemExit(f"error: --steps {args.steps}: the latent path takes a number of sampling steps, e.g. 30.")
    overrides = {"batch_size": args.batch_size, "steps": int(args.steps) if args.steps else None}
    set_inputs(graph, "BlendedLatentSampler", seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
    if args.top_k and nodes_of(graph, "BlendedRankResults"):
        set_inputs(graph, "BlendedRankResults", top_k=args.top_k)
    return graph


def job_graph(args, image_name: str, template: dict | None, checkpoint: Path | None) -> dict:
    """What the main job posts: the template's graph, the latent one on the checkpoint, else the pixel workflow."""
    if template is not None:
        return template_graph(args, image_name, template)
    if checkpoint is not None:
        return latent_graph(args, image_name, checkpoint)
    return pixel_graph(args, image_name)


def pixel_graph(args, image_name: str) -> dict:
    name = image_name
    graph = load_graph(args.workflow)
    set_inputs(graph, "LoadImage", image=name)
    set_inputs(graph, "BlendedCLIPGuidance", prompt=args.prompt)
    set_inputs(graph, "BlendedDiffusionModelLoader", model_name=args.model)
    set_inputs(graph, "BlendedSampler", seed=args.seed)
    overrides = {"batch_size": args.batch_size, "steps": args.steps, "skip_timesteps": args.skip}
    set_inputs(graph, "BlendedSampler", **{k: v for k, v in overrides.items() if v is not None})
    if args.clip:
        set_inputs(graph, "BlendedCLIPLoader", clip_name=args.clip)
    if args.top_k:
        set_inputs(graph, "BlendedRankResults", top_k=args.top_k)
    return graph
