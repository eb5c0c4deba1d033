"""Run an object edit headless in the real ComfyUI engine: the README's main job.

    python -m scripts.cli.run_edit --image photo.png --mask mask.png --prompt "a bowl of cherries" --out results/

It starts ComfyUI (the copy ``scripts/setup/setup_comfy.sh`` made in ``.comfy/ComfyUI``) on a loopback
port, POSTs ``workflows/api/Blended - Object editing.api.json`` with the given inputs, waits, and copies the
ranked results to ``--out``. Running the shipped workflow through the server, rather than calling
the library directly, means the command exercises exactly what a ComfyUI user runs. The engine is
started by ``scripts/engine/comfy_engine.py``, as in the tests.

With ``--checkpoint FILE`` (an SD1.5 or SDXL single-file checkpoint: a path, or a name in
``models/checkpoints``) it runs the latent path instead: ``workflows/api/Blended - SD1.5 or SDXL edit.api.json``
with that checkpoint, the crop at the checkpoint's resolution (read off its keys: 1024 for SDXL, else 512).
With ``--template NAME`` it runs that shipped latent template (``workflows/api/NAME.api.json``, e.g.
"Blended - Flux.1 dev edit") with the model files it names, found in ``--models-dir`` (or the engine's
models folder) under ComfyUI's usual folders; a missing one is named with the folder it goes in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    DEFAULT_COMFY,
    EXAMPLE_IMAGE,
    EXAMPLE_PROMPT,
    WORKFLOW,
    ComfyServer,
    PromptRejected,
    compose_input,
    cuda_available,
    execution_error,
    load_graph,
    nodes_of,
    output_images,
    output_texts,
    prefetch_model,
    prepare_base,
    prepare_engine,
    prompt_input,
    set_inputs,
    write_model_paths,
)

LATENT_WORKFLOW = API_WORKFLOWS / "Blended - SD1.5 or SDXL edit.api.json"


def create_argparser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=EXAMPLE_IMAGE,
                   help="the photo to edit (PNG/JPEG; RGBA: transparent = edit); default: the shipped example")
    p.add_argument("--mask", type=Path, help="mask image, same size: white = edit (omit if --image has alpha)")
    p.add_argument("--prompt", default=EXAMPLE_PROMPT, help="what should appear inside the mask")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for the ranked results")
    p.add_argument("--comfy-dir", type=Path, default=DEFAULT_COMFY, help="ComfyUI engine copy (setup_comfy.sh)")
    p.add_argument("--models-dir", type=Path, help="a models folder with blended_diffusion/, blended_clip/, lpips/ "
                   "(default: the engine's own models/)")
    p.add_argument("--model", default="256x256_diffusion_uncond.pt", help="file in models/blended_diffusion")
    p.add_argument("--clip", help="file in models/blended_clip, or an open_clip hub tag (default: the workflow's)")
    p.add_argument("--batch-size", type=int, help="samples to draw (default: the workflow's)")
    p.add_argument("--top-k", type=int, help="ranked results to keep (default: the workflow's)")
    p.add_argument("--steps", help="respacing, e.g. 100 or ddim50 (default: the workflow's)")
    p.add_argument("--skip", type=int, help="skip_timesteps (default: the workflow's)")
    p.add_argument("--seed", type=int, default=0)
    latent = p.add_argument_group("latent path (Blended Latent Diffusion on your own checkpoint)")
    latent.add_argument("--checkpoint", help="SD1.5/SDXL single-file checkpoint: a path, or a file name in "
                        "models/checkpoints; runs the latent template instead of the pixel path")
    latent.add_argument("--template", help="a shipped latent template to run instead, by its title (e.g. "
                        "'Blended - Flux.1 dev edit'); its model files must be in --models-dir")
    latent.add_argument("--resolution", type=int, help="crop short side in px (default: 1024 for SDXL, else 512)")
    latent.add_argument("--iterations", type=int, help="background reconstruction steps (default: the workflow's)")
    p.add_argument("--workflow", type=Path, default=WORKFLOW, help="API-format workflow to run")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the edit")
    p.add_argument("--cpu", action="store_true", help="run ComfyUI with --cpu even if a GPU is present")
    return p


def main(argv=None) -> int:
    args = create_argparser().parse_args(argv)
    comfy = prepare_engine(args.comfy_dir.resolve())
    base = prepare_base(comfy)
    models_dir = (args.models_dir or comfy / "models").resolve()
    if args.template and args.checkpoint:
        raise SystemExit("error: --template and --checkpoint each choose the workflow; give one of them.")
    template = load_template(args.template, models_dir) if args.template else None
    checkpoint = find_checkpoint(args.checkpoint, models_dir) if args.checkpoint else None
    if checkpoint is None and template is None:
        prefetch_model(models_dir, args.model)

    name = f"blended_edit_{os.getpid()}.png"
    compose_input(args.image, args.mask, base / "input" / name)
    if template is not None:
        graph = template_graph(args, name, template)
    elif checkpoint is not None:
        graph = latent_graph(args, name, checkpoint)
    else:
        graph = pixel_graph(args, name)

    cpu = args.cpu or not cuda_available()
    extra = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.models_dir or checkpoint is not None:
            paths = write_model_paths(models_dir, Path(tmp) / "paths.yaml", core=template_folders() if template else ())
            if checkpoint is not None:
                with paths.open("a") as f:  # the checkpoint's own folder, wherever it is
                    f.write(f"{LATENT_SECTION}:\n    base_path: {json.dumps(str(checkpoint.parent))}\n"
                            "    checkpoints: .\n")
            extra = ["--extra-model-paths-config", str(paths)]
        return run_graph(args, comfy, base, graph, extra, cpu, Path(tmp))


LATENT_SECTION = "blended_checkpoint"


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


def image_templates() -> list[str]:
    """The shipped latent templates that edit one photo (the video one takes a video file)."""
    names = []
    for path in sorted(API_WORKFLOWS.glob("*.api.json")):
        graph = load_graph(path)
        if nodes_of(graph, "LoadImage") and nodes_of(graph, "BlendedLatentSampler"):
            names.append(path.name[: -len(".api.json")])
    return names


def load_template(name: str, models_dir: Path) -> dict:
    """The template's graph, once every model file it names is in ``models_dir``; otherwise each
    missing file and the folder it goes in, as the pixel path says for its model."""
    shipped = image_templates()
    if name not in shipped:
        raise SystemExit(f"error: --template {name!r} is not a shipped latent image template; one of: "
                         + ", ".join(repr(n) for n in shipped))
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


def run_graph(args, comfy: Path, base: Path, graph: dict, extra: list, cpu: bool, tmp: Path) -> int:
    server = ComfyServer(comfy, base, extra_args=extra, log_path=tmp / "comfyui.log", cpu=cpu)
    print(f"Starting ComfyUI ({comfy}) ...", flush=True)
    with server:
        try:
            prompt_id = server.queue_prompt(graph)
        except PromptRejected as e:
            print(f"error: ComfyUI rejected the workflow:\n{e}", file=sys.stderr)
            return 1
        print(f"Editing '{args.image}' with \"{args.prompt}\" (prompt {prompt_id}) ...", flush=True)
        entry = server.wait(prompt_id, args.timeout)
        error = execution_error(entry)
        if error is not None:
            print(f"error in node {error.get('node_type')}: {error.get('exception_message', '').strip()}",
                  file=sys.stderr)
            return 1
        images = output_images(entry)
        args.out.mkdir(parents=True, exist_ok=True)
        written = []
        for rank, img in enumerate(images, 1):
            src = base / "output" / img.get("subfolder", "") / img["filename"]
            dst = args.out / f"rank_{rank:02d}.png"
            shutil.copyfile(src, dst)
            written.append(dst)
        report = "\n".join(output_texts(entry))
        if report:
            (args.out / "scores.txt").write_text(report + "\n")
            print(report)
        for path in written:
            print(f"wrote {path}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
