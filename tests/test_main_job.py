"""The README's main job (scripts/cli/run_edit.py, what scripts/edit.sh runs) end to end.

It starts its own ComfyUI server from the engine copy the session fixture made, with the tiny
models given through --models-dir (an extra_model_paths.yaml), exactly as a user with models in
another folder would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from scripts.engine.comfy_engine import API_WORKFLOWS, EXAMPLE_IMAGE, EXAMPLE_PROMPT, REPO
from tests.support.comfy_harness import ellipse, photo


def run_edit(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))  # as scripts/edit.sh runs it
    return subprocess.run([sys.executable, "-m", "scripts.cli.run_edit", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def write_photo_and_mask(folder, w=72, h=40):
    rgb = photo(w, h, seed=3)
    edit = ellipse(w, h, 50, 18, 9, 7)
    Image.fromarray(rgb).save(folder / "photo.png")
    Image.fromarray(edit.astype(np.uint8) * 255).save(folder / "mask.png")
    return rgb, edit


def test_main_job_writes_ranked_edits(comfy, tmp_path):
    rgb, edit = write_photo_and_mask(tmp_path)
    out = tmp_path / "results"
    done = run_edit(
        "--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a bowl of cherries",
        "--out", out, "--comfy-dir", comfy.server.engine, "--models-dir", comfy.base / "models",
        "--model", comfy.names["model"], "--clip", comfy.names["clip"],
        "--steps", "4", "--skip", "1", "--batch-size", "3", "--top-k", "2", "--cpu",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_results(out, rgb, edit, ranked=3, kept=2)


def test_main_job_default_is_the_shipped_example(comfy, tmp_path):
    rgba = np.asarray(Image.open(EXAMPLE_IMAGE))
    out = tmp_path / "results"
    done = run_edit("--out", out, "--comfy-dir", comfy.server.engine, "--models-dir", comfy.base / "models",
                    "--model", comfy.names["model"], "--clip", comfy.names["clip"],
                    "--steps", "3", "--skip", "1", "--batch-size", "2", "--top-k", "1", "--cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert EXAMPLE_PROMPT in done.stdout
    check_results(out, rgba[..., :3], rgba[..., 3] == 0, ranked=2, kept=1)


def check_results(out, rgb, edit, ranked, kept):
    results = sorted(out.glob("rank_*.png"))
    assert [p.name for p in results] == [f"rank_{i:02d}.png" for i in range(1, kept + 1)]
    for path in results:
        edited = np.asarray(Image.open(path).convert("RGB"))
        assert edited.shape == rgb.shape
        assert np.array_equal(edited[~edit], rgb[~edit])
        assert (edited[edit] != rgb[edit]).any()
    scores = (out / "scores.txt").read_text()
    assert f"ranked {ranked} samples" in scores and f"#{kept}:" in scores and f"#{kept + 1}:" not in scores


def test_main_job_offline_says_which_file_goes_where(comfy, tmp_path):
    write_photo_and_mask(tmp_path)
    models = tmp_path / "empty_models"
    done = run_edit(
        "--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a red ball",
        "--comfy-dir", comfy.server.engine, "--models-dir", models, timeout=120,
    )
    assert done.returncode != 0
    assert "256x256_diffusion_uncond.pt" in done.stderr
    assert str(models / "blended_diffusion") in done.stderr
    assert "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt" in done.stderr
    assert "Traceback" not in done.stderr


def test_main_job_rejects_a_mask_of_another_size(comfy, tmp_path):
    write_photo_and_mask(tmp_path)
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "small_mask.png")
    done = run_edit("--image", tmp_path / "photo.png", "--mask", tmp_path / "small_mask.png", "--prompt", "x",
                    "--comfy-dir", comfy.server.engine, "--models-dir", comfy.base / "models",
                    "--model", comfy.names["model"], timeout=120)
    assert done.returncode != 0 and "--mask is 10x10 but --image is 72x40" in done.stderr


# --- the latent path: --checkpoint runs "workflows/api/Blended - SD1.5 or SDXL edit.api.json" --------


def test_main_job_latent_path_with_a_checkpoint_file(comfy, sd15_checkpoint, tmp_path):
    """A checkpoint given by its path (outside every models folder), the random SD1.5 file core detects."""
    rgb, edit = write_photo_and_mask(tmp_path)
    out = tmp_path / "results"
    done = run_edit(
        "--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a bowl of cherries",
        "--out", out, "--comfy-dir", comfy.server.engine, "--models-dir", comfy.base / "models",
        "--checkpoint", sd15_checkpoint, "--clip", comfy.names["clip"], "--resolution", "64",
        "--steps", "2", "--iterations", "1", "--batch-size", "2", "--top-k", "1", "--cpu",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_results(out, rgb, edit, ranked=2, kept=1)


def test_main_job_latent_path_missing_checkpoint_says_which_file_goes_where(comfy, tmp_path):
    write_photo_and_mask(tmp_path)
    models = tmp_path / "empty_models"
    done = run_edit("--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a red ball",
                    "--comfy-dir", comfy.server.engine, "--models-dir", models,
                    "--checkpoint", "sd_xl_base_1.0.safetensors", timeout=120)
    assert done.returncode != 0
    assert "checkpoint 'sd_xl_base_1.0.safetensors' not found" in done.stderr
    assert str(models / "checkpoints") in done.stderr and "--checkpoint" in done.stderr
    assert "Traceback" not in done.stderr


def test_checkpoint_resolution_is_read_off_the_keys(tmp_path):
    import torch
    from safetensors.torch import save_file

    from scripts.cli.edit_graphs import checkpoint_resolution

    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2)}, tmp_path / "xl.safetensors")
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2)},
              tmp_path / "sd15.safetensors")
    assert checkpoint_resolution(tmp_path / "xl.safetensors") == 1024
    assert checkpoint_resolution(tmp_path / "sd15.safetensors") == 512


# --- --template runs a shipped latent template with the files it names ---------------------------------


def test_template_with_missing_files_names_each_file_and_its_folder(comfy, tmp_path):
    write_photo_and_mask(tmp_path)
    models = tmp_path / "empty_models"
    done = run_edit("--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a red ball",
                    "--comfy-dir", comfy.server.engine, "--models-dir", models,
                    "--template", "Blended - Flux.1 dev edit", timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    for file, folder in (("flux1-dev.safetensors", "diffusion_models"), ("clip_l.safetensors", "text_encoders"),
                         ("t5xxl_fp8_e4m3fn.safetensors", "text_encoders"), ("ae.safetensors", "vae")):
        assert f"{file} -> {models / folder}" in done.stderr, done.stderr
    assert "nothing is downloaded" in done.stderr


def test_template_graph_puts_the_prompt_in_the_positive_encoder(tmp_path):
    """Through FluxGuidance to the CLIPTextEncode the sampler's positive comes from; the negative
    (ConditioningZeroOut) and the files stay as shipped."""
    from scripts.cli.edit_graphs import load_template, template_graph
    from scripts.cli.run_edit import create_argparser

    name = "Blended - Flux.1 dev edit"
    shipped = json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())
    models = tmp_path / "models"
    for node in shipped.values():
        for key, folder in {"unet_name": "diffusion_models", "clip_name1": "clip", "clip_name2": "text_encoders",
                            "vae_name": "vae"}.items():
            if key in node["inputs"]:
                (models / folder).mkdir(parents=True, exist_ok=True)
                (models / folder / node["inputs"][key]).write_bytes(b"")  # found; never loaded here
    args = create_argparser().parse_args(["--prompt", "a red ball", "--steps", "4", "--batch-size", "3",
                                          "--resolution", "512"])
    graph = template_graph(args, "photo.png", load_template(name, models))
    sampler = next(n for n in graph.values() if n["class_type"] == "BlendedLatentSampler")["inputs"]
    guidance = graph[sampler["positive"][0]]
    assert guidance["class_type"] == "FluxGuidance"
    assert graph[guidance["inputs"]["conditioning"][0]]["inputs"]["text"] == "a red ball"
    assert (sampler["steps"], sampler["batch_size"], sampler["seed"]) == (4, 3, 0)
    assert next(n for n in graph.values() if n["class_type"] == "LoadImage")["inputs"]["image"] == "photo.png"
    assert next(n for n in graph.values() if n["class_type"] == "BlendedLatentCrop")["inputs"]["resolution"] == 512
    changed = {k for k in graph if graph[k] != shipped[k]}
    assert changed == {"1", "4", "8", "10"}, changed


def test_unknown_template_lists_the_shipped_ones(tmp_path):
    from scripts.cli.edit_graphs import load_template

    with pytest.raises(SystemExit) as e:
        load_template("object editing", tmp_path)
    assert "'Blended - Flux.1 dev edit'" in str(e.value) and "'Blended - Wan 2.2 video edit'" not in str(e.value)
