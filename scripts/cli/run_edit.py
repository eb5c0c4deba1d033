"""Run an object edit headless in the real ComfyUI engine: the README's main job.

    python -m scripts.cli.run_edit --image photo.png --mask mask.png --prompt "a bowl of cherries" --out results/

It starts ComfyUI (the copy ``scripts/setup/setup_comfy.sh`` made in ``.comfy/ComfyUI``) on a loopback
port, POSTs ``workflows/api/Blended - Object editing.api.json`` with the given inputs, waits, and copies the
ranked results to ``--out``. Running the shipped workflow through the server, rather than calling
the library directly, means the command exercises exactly what a ComfyUI user runs. The engine is
started by ``scripts/engine/comfy_engine.py``, as in the tests; the graphs are made in ``edit_graphs.py``.

With ``--checkpoint FILE`` (an SD1.5 or SDXL single-file checkpoint: a path, or a name in
``models/checkpoints``) it runs the latent path instead: ``workflows/api/Blended - SD1.5 or SDXL edit.api.json``
with that checkpoint, the crop at the checkpoint's resolution (read off its keys: 1024 for SDXL, else 512).
With ``--template NAME`` it runs that shipped latent template (``workflows/api/NAME.api.json``, e.g.
"Blended - Flux.1 dev edit") with the model files it names, found in ``--models-dir`` (or the engine's
models folder) under ComfyUI's usual folders; a missing one is named with the folder it goes in.
A template that finds its mask from a phrase (SAM3, "Blended - Edit by description") takes the phrase
from ``--find`` and no mask (``edit_graphs.check_find``).
A template the engine cannot run (its note names a later ComfyUI, or the engine does not register a
node type it uses) is refused before an input is written or a prompt queued, naming what is missing,
the fix, and the templates this engine runs (``scripts/engine/template_needs.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from scripts.cli.edit_graphs import (
    check_find,
    find_checkpoint,
    found_nothing,
    image_templates,
    job_graph,
    job_photo,
    load_template,
    model_paths,
    phrase_templates,
    require_engine_for,
    template_choices,
)
from scripts.engine.comfy_engine import (
    DEFAULT_COMFY,
    EXAMPLE_IMAGE,
    EXAMPLE_PROMPT,
    WORKFLOW,
    ComfyServer,
    PromptRejected,
    cuda_available,
    execution_error,
    output_images,
    output_texts,
    prefetch_model,
    prepare_base,
    prepare_engine,
    save_input,
)


def create_argparser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=EXAMPLE_IMAGE,
                   help="the photo to edit (PNG/JPEG; RGBA: transparent = edit); default: the shipped example")
    p.add_argument("--mask", type=Path, help="mask image, same size: white = edit (omit if --image has alpha; "
                   "not with a template that finds its mask from --find)")
    p.add_argument("--prompt", default=EXAMPLE_PROMPT, help="what should appear inside the mask (with --find: "
                   "what the found thing becomes; it also ranks the results)")
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
    latent.add_argument("--template", metavar="TITLE", choices=image_templates(),
                        help="a shipped latent template to run instead, by its title; its model files must be in "
                        "--models-dir. A template whose note names a later ComfyUI is refused, before anything "
                        "runs, on an older engine (see BLENDED_COMFY_ENGINE in the README). One of: "
                        + template_choices())
    latent.add_argument("--find", metavar="PHRASE",
                        help="for a template that finds its mask from a phrase (SAM3): what to edit in the photo, "
                        "in words, e.g. \"cup\". Required there (the template's own phrase describes its example "
                        "photo, not yours); no --mask then, and the photo's alpha is not read. Templates that "
                        "take it: " + ", ".join(repr(n) for n in phrase_templates()))
    latent.add_argument("--resolution", type=int, help="crop short side in px (default: 1024 for SDXL, else 512)")
    latent.add_argument("--iterations", type=int, help="background reconstruction steps (default: the workflow's)")
    p.add_argument("--workflow", type=Path, default=WORKFLOW, help="API-format workflow to run")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the edit")
    p.add_argument("--cpu", action="store_true", help="run ComfyUI with --cpu even if a GPU is present")
    return p


def main(argv=None) -> int:
    args = create_argparser().parse_args(argv)
    if args.template and args.checkpoint:
        raise SystemExit("error: --template and --checkpoint each choose the workflow; give one of them.")
    check_find(args)  # --find and --mask against the template's mask source, before anything starts
    comfy = prepare_engine(args.comfy_dir.resolve())
    if args.template:
        require_engine_for(args.template, comfy)  # its release, before anything is written or started
    base = prepare_base(comfy)
    models_dir = (args.models_dir or comfy / "models").resolve()
    template = load_template(args.template, models_dir) if args.template else None
    checkpoint = find_checkpoint(args.checkpoint, models_dir) if args.checkpoint else None
    if checkpoint is None and template is None:
        prefetch_model(models_dir, args.model)
    photo = job_photo(args, template)

    cpu = args.cpu or not cuda_available()
    with tempfile.TemporaryDirectory() as tmp:
        extra = []
        if args.models_dir or checkpoint is not None:
            paths = model_paths(models_dir, Path(tmp) / "paths.yaml", template is not None, checkpoint)
            extra = ["--extra-model-paths-config", str(paths)]
        server = ComfyServer(comfy, base, extra_args=extra, log_path=Path(tmp) / "comfyui.log", cpu=cpu)
        print(f"Starting ComfyUI ({comfy}) ...", flush=True)
        with server:
            if template is not None:
                require_engine_for(args.template, comfy, server)  # and the node types it registers
            name = f"blended_edit_{os.getpid()}.png"
            save_input(photo, base / "input" / name)
            return run_graph(args, server, base, job_graph(args, name, template, checkpoint))


def run_graph(args, server: ComfyServer, base: Path, graph: dict) -> int:
    try:
        prompt_id = server.queue_prompt(graph)
    except PromptRejected as e:
        print(f"error: ComfyUI rejected the workflow:\n{e}", file=sys.stderr)
        return 1
    found = f" where it finds \"{args.find}\"" if args.find else ""
    print(f"Editing '{args.image}' with \"{args.prompt}\"{found} (prompt {prompt_id}) ...", flush=True)
    entry = server.wait(prompt_id, args.timeout)
    error = execution_error(entry)
    if error is not None:
        print(found_nothing(args, graph, error)
              or f"error in node {error.get('node_type')}: {error.get('exception_message', '').strip()}",
              file=sys.stderr)
        return 1
    return 0 if save_results(entry, base, args.out) else 1


def save_results(entry: dict, base: Path, out: Path) -> list[Path]:
    """Copy the ranked images of a finished prompt to ``out`` as rank_01.png, ...; the ranking's
    scores text to scores.txt. Prints the scores and each file written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, img in enumerate(output_images(entry), 1):
        src = base / "output" / img.get("subfolder", "") / img["filename"]
        dst = out / f"rank_{rank:02d}.png"
        shutil.copyfile(src, dst)
        written.append(dst)
    report = "\n".join(output_texts(entry))
    if report:
        (out / "scores.txt").write_text(report + "\n")
        print(report)
    for path in written:
        print(f"wrote {path}")
    return written

if __name__ == "__main__":
    sys.exit(main())
