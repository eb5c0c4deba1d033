"""Run an object edit headless in the real ComfyUI engine: the README's main job.

    python scripts/run_edit.py --image photo.png --mask mask.png --prompt "a bowl of cherries" --out results/

It starts ComfyUI (the copy ``scripts/setup_comfy.sh`` made in ``.comfy/ComfyUI``) on a loopback
port, POSTs ``workflows/api/object_editing.api.json`` with the given inputs, waits, and copies the
ranked results to ``--out``. Running the shipped workflow through the server, rather than calling
the library directly, means the command exercises exactly what a ComfyUI user runs. The engine is
started by ``scripts/comfy_engine.py``, as in the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Run as a file, Python puts scripts/ on sys.path, not the repository that holds the scripts package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.comfy_engine import (  # noqa: E402
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
    output_images,
    output_texts,
    prefetch_model,
    prepare_base,
    prepare_engine,
    set_inputs,
    write_model_paths,
)


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
    p.add_argument("--workflow", type=Path, default=WORKFLOW, help="API-format workflow to run")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the edit")
    p.add_argument("--cpu", action="store_true", help="run ComfyUI with --cpu even if a GPU is present")
    return p


def main(argv=None) -> int:
    args = create_argparser().parse_args(argv)
    comfy = prepare_engine(args.comfy_dir.resolve())
    base = prepare_base(comfy)
    models_dir = (args.models_dir or comfy / "models").resolve()
    prefetch_model(models_dir, args.model)

    name = f"blended_edit_{os.getpid()}.png"
    compose_input(args.image, args.mask, base / "input" / name)
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

    cpu = args.cpu or not cuda_available()
    extra = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.models_dir:
            extra = ["--extra-model-paths-config", str(write_model_paths(models_dir, Path(tmp) / "paths.yaml"))]
        server = ComfyServer(comfy, base, extra_args=extra, log_path=Path(tmp) / "comfyui.log", cpu=cpu)
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
