"""The graphs the main job (``run_edit.py``) posts: a shipped workflow with the command line's photo,
prompt and options set in it, and the model files a latent template or checkpoint needs, found
before the server starts (a missing one is named with the folder it goes in, as the pixel path
names its model).

A template whose edit mask comes from a phrase (core SAM3_Detect on words, "Blended - Edit by
description") is told so by its graph, not its name: ``phrase_input`` finds the words a SAM3_Detect
upstream of the crop's mask reads. The main job then sets them from ``--find``, wants no painted mask
and refuses ``--mask`` (``check_find``)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    input_rgba,
    load_graph,
    nodes_of,
    prompt_input,
    set_inputs,
    text_upstream,
    upstream,
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


def phrase_input(graph: dict) -> tuple[dict, str] | None:
    """The node and input holding the words a template finds its edit mask from: the text feeding the
    ``conditioning`` of a SAM3_Detect upstream of the crop's mask (None for a painted mask)."""
    for crop in nodes_of(graph, "BlendedLatentCrop"):
        for key in upstream(graph, crop["inputs"]["mask"]):
            if graph[key]["class_type"] == "SAM3_Detect":
                return text_upstream(graph, graph[key]["inputs"]["conditioning"])
    return None


def phrase_templates() -> list[str]:
    """The shipped image templates that find their mask from a phrase (take ``--find``)."""
    return [name for name, graph in image_template_graphs().items() if phrase_input(graph) is not None]


def check_find(args) -> None:
    """Before anything runs: a template that finds its mask from a phrase needs ``--find`` (its shipped
    phrase describes its example photo, not the user's) and takes no ``--mask``; every other workflow
    edits a painted mask, so ``--find`` there is a mistake, answered with the templates that take it."""
    graph = load_graph(API_WORKFLOWS / f"{args.template}.api.json") if args.template else None
    phrase = phrase_input(graph) if graph is not None else None
    if phrase is None:
        if args.find is not None:
            chosen = f"--template {args.template!r}" if args.template else "the workflow without --template"
            raise SystemExit(f"error: --find: {chosen} edits a painted mask (--mask, or the photo's alpha) and "
                             "finds nothing from words. --find is for a template that finds its mask from a "
                             "phrase: --template " + " or ".join(repr(n) for n in phrase_templates()))
        return
    node, key = phrase
    example = f'--find "{node["inputs"][key]}"'
    if args.mask is not None:
        raise SystemExit(f"error: --mask: --template {args.template!r} finds its own mask from a phrase (SAM3); "
                         f"drop --mask and name what to edit with --find, e.g. {example}.")
    if not (args.find or "").strip():
        raise SystemExit(f"error: --template {args.template!r} finds the area to edit from a phrase: pass --find "
                         f"with what to edit in your photo (--prompt says what it becomes), e.g. {example}. The "
                         "template's own phrase describes its example photo, not yours.")


def found_nothing(args, graph: dict, error: dict) -> str | None:
    """The engine's error explained where it means SAM3 found nothing that ``--find`` names: the crop
    fed by the phrase's SAM3_Detect stopped on an empty mask (its own message speaks of painting one,
    which a phrase template has none of). None for every other error."""
    phrase = phrase_input(graph)
    crop = graph.get(str(error.get("node_id")), {})
    if phrase is None or crop.get("class_type") != "BlendedLatentCrop":
        return None
    if not error.get("exception_message", "").startswith("mask is empty"):
        return None
    (detect,) = [graph[k] for k in upstream(graph, crop["inputs"]["mask"]) if graph[k]["class_type"] == "SAM3_Detect"]
    return (f"error: SAM3 found nothing in {args.image} that --find \"{args.find}\" names (SAM3_Detect's "
            f"threshold: {detect['inputs']['threshold']}), so there is nothing to edit. Name what is in the "
            "photo in other words (a short noun phrase works best, e.g. \"cup\"); the template in ComfyUI "
            "takes a lower threshold.")


def job_photo(args, template: dict | None):
    """The photo the main job writes for LoadImage: with a phrase template, its RGB (the mask comes from
    the phrase; an alpha channel is not read); otherwise RGBA with the edit area transparent, from
    ``--mask`` or the photo's own alpha (``input_rgba`` checks both)."""
    if template is not None and phrase_input(template) is not None:
        from PIL import Image

        with Image.open(args.image) as image:
            return image.convert("RGB")
    return input_rgba(args.image, args.mask)


def template_graph(args, image_name: str, graph: dict) -> dict:
    """A latent template's graph with the photo, the prompt (its positive encoder and the ranking's
    CLIP guidance, the app's "Prompt to rank by"), the phrase it finds its mask from (``--find``,
    where it has one), the ranking's CLIP and the sampling options of ``args``."""
    set_inputs(graph, "LoadImage", image=image_name)
    node, key = prompt_input(graph)
    node["inputs"][key] = args.prompt
    if nodes_of(graph, "BlendedCLIPGuidance"):
        set_inputs(graph, "BlendedCLIPGuidance", prompt=args.prompt)
    phrase = phrase_input(graph)
    if phrase is not None and args.find:
        phrase[0]["inputs"][phrase[1]] = args.find
    if args.clip and nodes_of(graph, "BlendedCLIPLoader"):
        set_inputs(graph, "BlendedCLIPLoader", clip_name=args.clip)
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
