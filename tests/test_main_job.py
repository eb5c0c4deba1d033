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

from scripts.engine.comfy_engine import (
    API_WORKFLOWS,
    EXAMPLE_IMAGE,
    EXAMPLE_PROMPT,
    REPO,
    engine_source,
    engine_version,
    prepare_engine,
)
from scripts.engine.template_needs import declared_need
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


def test_waiting_outlasts_a_poll_the_busy_server_does_not_answer_in_time(tmp_path, monkeypatch):
    """A CPU server loading a model can leave a /history poll unanswered past the request's timeout;
    the main job keeps waiting for its prompt (a refused connection is still an error)."""
    import urllib.error

    from scripts.engine.comfy_engine import ComfyServer

    server = ComfyServer(tmp_path, tmp_path, port=1)
    done = {"status": {"completed": True, "status_str": "success"}}
    answers = iter([TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out")), None, done])

    def history(prompt_id):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def refused(prompt_id):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(server, "history", history)
    assert server.wait("p", timeout=60) is done
    monkeypatch.setattr(server, "history", refused)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        server.wait("p", timeout=60)


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


# --- a template the engine cannot run is refused before anything is written or queued ------------------

# core SAM3 (SAM3_Detect) and two model families 0.3.75 does not have; their notes say "Needs ComfyUI 0.33"
DESCRIPTION = "Blended - Edit by description"  # finds its mask from a phrase (--find)
FLUX = "Blended - Flux.1 dev edit"
LATER_TEMPLATES = (DESCRIPTION, "Blended - Anima edit", "Blended - Krea 2 edit")


@pytest.fixture(scope="module")
def engine_copy(tmp_path_factory):
    """The engine the tests run (the CI's, or BLENDED_COMFY_ENGINE's), copied as the main job copies it."""
    return prepare_engine(tmp_path_factory.mktemp("engine") / "ComfyUI")


def where_to_edit(name: str, folder) -> tuple:
    """The arguments that say what to edit: a phrase for the template that finds its mask, else the mask."""
    return ("--find", "a cup") if name == DESCRIPTION else ("--mask", folder / "mask.png")


def files_under(*folders) -> set:
    return {p for folder in folders if folder.is_dir() for p in folder.rglob("*")}


@pytest.mark.parametrize("name", LATER_TEMPLATES)
def test_a_template_for_a_later_comfyui_is_refused_on_an_older_engine_before_anything_is_written(
        engine_copy, tmp_path, name):
    """On 0.3.75 the refusal names the template, what its note says is missing, the release, the fix and
    the templates this engine runs, before ComfyUI starts; on 0.33 the same template passes and the run
    stops at its missing model files instead (nothing is loaded in either case)."""
    write_photo_and_mask(tmp_path)
    need, release = declared_need(name), engine_version(engine_copy)
    before = files_under(engine_copy / "input", engine_copy / "output")
    done = run_edit("--image", tmp_path / "photo.png", *where_to_edit(name, tmp_path), "--prompt", "a red ball",
                    "--comfy-dir", engine_copy, "--models-dir", tmp_path / "empty_models", "--template", name,
                    timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Starting ComfyUI" not in done.stdout
    assert files_under(engine_copy / "input", engine_copy / "output") == before
    if release < need.release:
        message = " ".join(done.stderr.split())
        version = ".".join(map(str, release))
        assert f"--template {name!r} cannot run on the engine in {engine_copy} (ComfyUI {version})" in message
        assert f'It needs ComfyUI 0.33 or newer; the template\'s note says: "{need.sentence}"' in message
        assert "BLENDED_COMFY_ENGINE" in message and "--comfy-dir" in message
        usable = message.split("Or pick a template this engine runs: ")[1]
        assert "'Blended - Flux.1 dev edit'" in usable and not any(repr(t) in usable for t in LATER_TEMPLATES)
        assert "needs these model files" not in message
    else:
        assert f"the template '{name}' needs these model files, not found" in done.stderr, done.stderr
        assert "cannot run on the engine" not in done.stderr


def test_an_engine_that_failed_to_import_a_node_type_is_refused_once_started_naming_it_and_why(tmp_path):
    """The release is not all: a started engine's /object_info without a node type the template uses
    (here core's FluxGuidance, its module made to fail on import) stops the run before the input is
    written or the prompt queued, with the engine's own reason."""
    engine = prepare_engine(tmp_path / "ComfyUI")
    (engine / "comfy_extras" / "nodes_flux.py").write_text('raise ImportError("planted by the test")\n')
    models = tmp_path / "models"
    for file in ("diffusion_models/flux1-dev.safetensors", "text_encoders/clip_l.safetensors",
                 "text_encoders/t5xxl_fp8_e4m3fn.safetensors", "vae/ae.safetensors"):
        (models / file).parent.mkdir(parents=True, exist_ok=True)
        (models / file).write_bytes(b"")  # found; never loaded
    write_photo_and_mask(tmp_path)
    done = run_edit("--image", tmp_path / "photo.png", "--mask", tmp_path / "mask.png", "--prompt", "a red ball",
                    "--comfy-dir", engine, "--models-dir", models, "--template", "Blended - Flux.1 dev edit", "--cpu",
                    timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "Starting ComfyUI" in done.stdout and "Editing" not in done.stdout
    assert "does not register these node types the template uses: FluxGuidance." in done.stderr, done.stderr
    assert "nodes_flux.py module for custom nodes: planted by the test" in done.stderr
    usable = done.stderr.split("Or pick a template this engine runs: ")[1]
    assert "'Blended - SDXL edit'" in usable and "Flux" not in usable  # both Flux templates use FluxGuidance
    assert not list((engine / "input").glob("blended_edit_*.png"))


def test_a_copy_made_before_blended_comfy_engine_was_set_is_named_as_the_fix(tmp_path):
    """The engine is copied into --comfy-dir on first use only: with BLENDED_COMFY_ENGINE already naming a
    new enough ComfyUI, the fix is a new --comfy-dir, not the variable again."""
    from scripts.engine.template_needs import Engine, refusal

    newer = tmp_path / "ComfyUI-new"
    newer.mkdir()
    (newer / "comfyui_version.py").write_text('__version__ = "0.33.0"\n')
    name = "Blended - Anima edit"
    graph = json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())
    old = Engine(tmp_path / "old_copy", (0, 3, 75))
    assert "pass a new --comfy-dir" in refusal(name, graph, old, {name: graph}, source=newer)
    assert f"BLENDED_COMFY_ENGINE names ComfyUI 0.33.0 ({newer})" in refusal(name, graph, old, {}, source=newer)
    assert "set BLENDED_COMFY_ENGINE to a ComfyUI checkout" in refusal(name, graph, old, {}, source=None)
    assert refusal(name, graph, Engine(newer, (0, 33, 0)), {}) is None
    assert "ComfyUI of unknown release" in refusal(name, graph, Engine(tmp_path, None), {})


def test_every_note_that_names_a_comfyui_release_is_read_as_the_templates_need():
    """The note's first line is the one statement of a template's need: a wording the main job could
    not read would let the template through to a late, confusing failure."""
    for note in sorted(API_WORKFLOWS.glob("*.note.md")):
        name = note.name.removesuffix(".note.md")
        stated = "Needs ComfyUI" in note.read_text(encoding="utf-8").splitlines()[0]
        assert (declared_need(name) is not None) == stated, name
    assert {name: declared_need(name).release for name in LATER_TEMPLATES} == dict.fromkeys(LATER_TEMPLATES, (0, 33))
    assert declared_need("Blended - Flux.1 dev edit") is None


def test_template_help_marks_the_templates_that_need_a_later_comfyui():
    from scripts.cli.run_edit import create_argparser

    parser = create_argparser()
    text = " ".join(parser.format_help().split())
    for name in LATER_TEMPLATES:
        assert f"{name!r} (needs ComfyUI 0.33 or newer)" in text
    assert "'Blended - Flux.1 dev edit';" in text and "'Blended - Flux.1 dev edit' (needs" not in text
    with pytest.raises(SystemExit):  # the video templates are no choice of --template
        parser.parse_args(["--template", "Blended - Video edit by description"])


# --- --find: a template that finds its mask from a phrase (SAM3) -----------------------------------------


def declared_inputs(name: str) -> dict[str, tuple[str, str]]:
    """The template's app form (workflows/api/<name>.app.toml): label -> (node id, input)."""
    from scripts.templates.app_form import read_declaration

    form = read_declaration(name, json.loads((API_WORKFLOWS / f"{name}.api.json").read_text()))
    return {label: (node, key) for node, key, label in form["inputs"]}


def test_find_sets_the_phrase_sam3_reads_and_the_prompt_its_encoder_and_its_ranking():
    """Checked against what the template's app calls "What to find", "Prompt" and "Prompt to rank by":
    the phrase reaches only the encoder SAM3_Detect reads, the prompt only the sampler's positive
    encoder and the ranking's guidance; the rest stays as shipped but the photo and --clip. No engine."""
    from scripts.cli.edit_graphs import template_graph
    from scripts.cli.run_edit import create_argparser

    shipped = json.loads((API_WORKFLOWS / f"{DESCRIPTION}.api.json").read_text())
    form = declared_inputs(DESCRIPTION)
    args = create_argparser().parse_args(["--template", DESCRIPTION, "--find", "the red mug",
                                          "--prompt", "a glass of milk", "--clip", "tiny.safetensors"])
    graph = template_graph(args, "photo.png", json.loads(json.dumps(shipped)))
    (phrase, text), (prompt, key), (rank, rank_key) = (form[k] for k in ("What to find", "Prompt",
                                                                           "Prompt to rank by"))
    assert graph[phrase]["inputs"][text] == "the red mug"
    assert graph[prompt]["inputs"][key] == graph[rank]["inputs"][rank_key] == "a glass of milk"
    (detect,) = [n for n in graph.values() if n["class_type"] == "SAM3_Detect"]
    assert detect["inputs"]["conditioning"][0] == phrase
    sampler = next(n for n in graph.values() if n["class_type"] == "BlendedLatentSampler")["inputs"]
    assert sampler["positive"][0] == prompt
    photo_node, clip = (next(k for k, n in graph.items() if n["class_type"] == t)
                        for t in ("LoadImage", "BlendedCLIPLoader"))
    assert graph[photo_node]["inputs"]["image"] == "photo.png"
    assert graph[clip]["inputs"]["clip_name"] == "tiny.safetensors"
    assert {k for k in graph if graph[k] != shipped[k]} == {phrase, prompt, rank, photo_node, clip}


def test_the_templates_that_take_find_are_those_whose_app_asks_what_to_find():
    """The main job decides from the graph (an encoder feeding a SAM3_Detect upstream of the crop's
    mask); the app shows the same input as "What to find". A painted-mask template has neither."""
    from scripts.cli.edit_graphs import image_template_graphs, phrase_input

    for name, graph in image_template_graphs().items():
        found = phrase_input(graph)
        asked = declared_inputs(name).get("What to find")
        assert (found is not None) == (asked is not None), name
        if found is not None:
            assert found[0] is graph[asked[0]] and found[1] == asked[1], name
    assert DESCRIPTION in image_template_graphs() and phrase_input(image_template_graphs()[DESCRIPTION])


def test_a_phrase_template_needs_no_mask_and_does_not_read_the_photos_alpha(tmp_path):
    """The photo without alpha and without --mask, refused for a painted-mask template, is what the
    phrase template gets; an RGBA photo reaches it as its RGB (the phrase, not the alpha, says where)."""
    from scripts.cli.edit_graphs import job_photo
    from scripts.cli.run_edit import create_argparser

    rgb, edit = write_photo_and_mask(tmp_path)
    parse = create_argparser().parse_args
    sam3 = json.loads((API_WORKFLOWS / f"{DESCRIPTION}.api.json").read_text())
    flux = json.loads((API_WORKFLOWS / f"{FLUX}.api.json").read_text())
    photo_args = parse(["--image", str(tmp_path / "photo.png"), "--find", "cup"])
    assert np.array_equal(np.asarray(job_photo(photo_args, sam3)), rgb)
    with pytest.raises(SystemExit, match="has no alpha channel and no --mask was given"):
        job_photo(parse(["--image", str(tmp_path / "photo.png")]), flux)
    rgba = np.dstack([rgb, np.where(edit, 0, 255).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "erased.png")
    taken = job_photo(parse(["--image", str(tmp_path / "erased.png"), "--find", "cup"]), sam3)
    assert taken.mode == "RGB" and np.array_equal(np.asarray(taken), rgb)


FIND_ERRORS = {  # the arguments after --image; "mask.png" is the test's mask file
    "no --find": (("--template", DESCRIPTION),
                  [f"--template {DESCRIPTION!r} finds the area to edit from a phrase", "pass --find",
                   'e.g. --find "cup"', "describes its example photo"]),
    "blank --find": (("--template", DESCRIPTION, "--find", "  "), ["pass --find", 'e.g. --find "cup"']),
    "--mask": (("--template", DESCRIPTION, "--find", "cup", "--mask", "mask.png"),
               [f"--mask: --template {DESCRIPTION!r} finds its own mask from a phrase", "drop --mask",
                'name what to edit with --find, e.g. --find "cup"']),
    "--find on a painted-mask template": (("--template", FLUX, "--find", "cup"),
                                          [f"--find: --template {FLUX!r} edits a painted mask",
                                           f"--template {DESCRIPTION!r}"]),
    "--find without a template": (("--find", "cup"), ["--find: the workflow without --template edits a painted mask",
                                                      f"--template {DESCRIPTION!r}"]),
}


@pytest.mark.parametrize("case", FIND_ERRORS)
def test_find_and_mask_mistakes_stop_the_main_job_before_the_engine_is_touched(tmp_path, case):
    """Each names the option and the fix; the engine is not even copied into --comfy-dir."""
    write_photo_and_mask(tmp_path)
    given, wanted = FIND_ERRORS[case]
    done = run_edit("--image", tmp_path / "photo.png", *(tmp_path / a if a == "mask.png" else a for a in given),
                    "--comfy-dir", tmp_path / "ComfyUI", timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    for text in wanted:
        assert text in message, message
    assert not (tmp_path / "ComfyUI").exists() and "Starting ComfyUI" not in done.stdout


def needs_later_engine(name: str) -> bool:
    return engine_version(engine_source()) < declared_need(name).release


later_engine_only = pytest.mark.skipif(
    needs_later_engine(DESCRIPTION), reason=f"{DESCRIPTION!r} needs ComfyUI 0.33 (core SAM3); on this engine the "
    "main job refuses it (test_a_template_for_a_later_comfyui_...)")


@pytest.fixture(scope="module")
def phrase_engine(sd15_checkpoint, tmp_path_factory):
    """An engine copy for the main job with the template's files: tests/test_sam3_templates.py's small
    SAM 3.1 file (its depth hook in the engine's custom_nodes; each test sets what it finds), and for
    the edit the session's random SD1.5 file under the template's SDXL file name (core picks the family
    from the keys; the SDXL run is test_sam3_templates', and at a third of the memory this one fits
    beside other work on a CPU box); a tiny ranking CLIP. Returns (engine, models, SAM3 file)."""
    from tests.support.tiny_clip import save_tiny_clip
    from tests.support.tiny_sam3 import DEPTH_HOOK, SAM31_FILE, write_tiny_sam31

    root = tmp_path_factory.mktemp("phrase")
    shipped = json.loads((API_WORKFLOWS / f"{DESCRIPTION}.api.json").read_text())
    (detect,) = [n for n in shipped.values() if n["class_type"] == "SAM3_Detect"]
    sam3 = root / "models" / "checkpoints" / shipped[detect["inputs"]["model"][0]]["inputs"]["ckpt_name"]
    sampler = next(n for n in shipped.values() if n["class_type"] == "BlendedLatentSampler")
    edit = sam3.with_name(shipped[sampler["inputs"]["model"][0]]["inputs"]["ckpt_name"])
    assert sam3.name == SAM31_FILE
    engine = prepare_engine(root / "ComfyUI")
    (engine / "custom_nodes").mkdir(exist_ok=True)
    (engine / "custom_nodes" / "blended_test_sam3_depth.py").write_text(DEPTH_HOOK)
    sam3.parent.mkdir(parents=True)
    write_tiny_sam31(sam3)
    edit.symlink_to(sd15_checkpoint)
    save_tiny_clip(root / "models" / "blended_clip" / "tiny_clip.safetensors", seed=0)
    return engine, root / "models", sam3


def run_phrase_edit(phrase_engine, folder, phrase: str) -> subprocess.CompletedProcess:
    """The main job on the phrase template: the example photo's RGB (its alpha would be a painted mask),
    no --mask, 64 px, 2 steps, 2 samples."""
    engine, models, _ = phrase_engine
    Image.open(EXAMPLE_IMAGE).convert("RGB").save(folder / "photo.png")
    return run_edit("--image", folder / "photo.png", "--template", DESCRIPTION, "--find", phrase,
                    "--prompt", "a glass of milk", "--out", folder / "results", "--comfy-dir", engine,
                    "--models-dir", models, "--clip", "tiny_clip.safetensors", "--resolution", "64",
                    "--steps", "2", "--batch-size", "2", "--top-k", "1", "--cpu", timeout=1500)


@later_engine_only
def test_edit_by_description_runs_from_the_main_job_with_a_phrase_and_no_mask(phrase_engine, tmp_path):
    """SAM3 made to keep a detection (every query scores above the shipped threshold; the random SAM
    decoder draws its mask on the example photo, as in test_sam3_templates at threshold 0): ranked
    results the photo's size, and the prompt the engine ran (SaveImage stores it in each result) has
    --find in the encoder SAM3_Detect reads and --prompt in the sampler's positive encoder and the
    ranking. Where the mask lands and the exact background are test_sam3_templates' checks."""
    from scripts.cli.edit_graphs import phrase_input
    from tests.support.tiny_sam3 import set_detection_scores

    set_detection_scores(phrase_engine[2], found=True)
    done = run_phrase_edit(phrase_engine, tmp_path, "the blue square")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'where it finds "the blue square"' in done.stdout
    (result,) = sorted((tmp_path / "results").glob("rank_*.png"))
    with Image.open(result) as image:
        assert image.size == Image.open(tmp_path / "photo.png").size
        ran = json.loads(image.info["prompt"])
    node, key = phrase_input(ran)
    assert node["inputs"][key] == "the blue square"
    texts = [n["inputs"][k] for n in ran.values() for k in ("text", "prompt") if isinstance(n["inputs"].get(k), str)]
    assert sorted(texts) == ["a glass of milk", "a glass of milk", "the blue square"]


@later_engine_only
def test_when_sam3_finds_nothing_the_main_job_says_so_not_paint_a_mask(phrase_engine, tmp_path):
    """SAM3 made to find nothing: the crop's empty-mask error (which tells a ComfyUI user to paint a
    mask) becomes what happened to the phrase, with the fix."""
    from tests.support.tiny_sam3 import set_detection_scores

    set_detection_scores(phrase_engine[2], found=False)
    done = run_phrase_edit(phrase_engine, tmp_path, "the blue square")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert f'SAM3 found nothing in {tmp_path / "photo.png"} that --find "the blue square" names' in message, message
    assert "SAM3_Detect's threshold: 0.5" in message and "in other words" in message
    assert "MaskEditor" not in message and not list((tmp_path / "results").glob("rank_*.png"))


def test_find_help_names_the_templates_that_take_it():
    from scripts.cli.run_edit import create_argparser

    text = " ".join(create_argparser().format_help().split())
    assert f"Templates that take it: {DESCRIPTION!r}" in text and "Required there" in text
