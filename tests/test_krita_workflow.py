"""The custom graphs for Krita AI Diffusion in workflows/krita/ (the pixel path,
blended_selection_edit.json, and the latent path on the user's own checkpoint,
blended_latent_selection_edit.json) are valid against the node definitions they name: ours and
ComfyUI's from the running engine, Acly's comfyui-tooling-nodes (Krita Canvas, Selection, Output,
Parameter) from a recorded /object_info (tests/data/comfyui_tooling_nodes_3.1.3.json: the tooling
nodes are not installed in CI), and against the plugin's own import rules (tests/support/krita_plugin_rules.py,
re-stated from its source with file/line references): typed parameter defaults, unique names, what
expand_custom substitutes, progress. The latent graph, as the plugin expands it, also runs in the
engine on the random SD1.5 checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_comfy_engine import loaded_rgb, read_rgb

from scripts.engine.comfy_engine import WORKFLOWS, execution_error, is_link, output_images, output_texts
from tests.support.krita_plugin_rules import default_params, expand_custom, guess_sample_count, parameter_problems

KRITA = WORKFLOWS / "krita" / "blended_selection_edit.json"
LATENT = WORKFLOWS / "krita" / "blended_latent_selection_edit.json"
GRAPHS = pytest.mark.parametrize("path", [KRITA, LATENT], ids=["pixel", "latent"])
TOOLING = Path(__file__).resolve().parent / "data" / "comfyui_tooling_nodes_3.1.3.json"
SAMPLERS = ("BlendedSampler", "BlendedLatentSampler")


def graph(path: Path = KRITA) -> dict:
    return json.loads(path.read_text())


def node_of(g: dict, class_type: str) -> tuple[str, dict]:
    """(id, inputs) of the graph's only node of ``class_type``."""
    (found,) = [(k, n["inputs"]) for k, n in g.items() if n["class_type"] == class_type]
    return found


def sampler_of(g: dict) -> dict:
    (inputs,) = [n["inputs"] for n in g.values() if n["class_type"] in SAMPLERS]
    return inputs


def parameter_name(g: dict, value) -> str:
    """The Krita parameter a link comes from (AssertionError if it is not one)."""
    assert is_link(value) and g[value[0]]["class_type"] == "ETN_Parameter", value
    return g[value[0]]["inputs"]["name"]


def check_literal(name: str, spec: list, value) -> str | None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        return None if value in choices else f"{name}={value!r} not in {choices}"
    # STRING takes numbers too: ComfyUI's validate_inputs converts them with str() (execution.py)
    expected = {"INT": int, "FLOAT": (int, float), "STRING": (str, int, float), "BOOLEAN": bool}.get(kind)
    if expected is None:
        return f"{name} of type {kind} needs a link, not {value!r}"
    if not isinstance(value, expected) or (kind in ("INT", "FLOAT") and isinstance(value, bool)):
        return f"{name}={value!r} is not {kind}"
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
            return f"{name}={value!r} outside {options.get('min')}..{options.get('max')}"
    return None


def problems(workflow: dict, defs: dict) -> list[str]:
    found = []
    for node_id, node in workflow.items():
        cls = node["class_type"]
        if cls not in defs:
            found.append(f"{node_id}: unknown node type {cls}")
            continue
        spec = defs[cls]["input"]
        required, optional = spec.get("required", {}), spec.get("optional", {})
        for name in required:
            if name not in node["inputs"]:
                found.append(f"{node_id} {cls}: required input {name} missing")
        for name, value in node["inputs"].items():
            if name not in required and name not in optional:
                found.append(f"{node_id} {cls}: unknown input {name}")
                continue
            input_spec = required.get(name) or optional[name]
            if is_link(value):
                source = workflow.get(value[0])
                if source is None or source["class_type"] not in defs:
                    found.append(f"{node_id} {cls}.{name}: link to missing node {value[0]}")
                    continue
                outputs = defs[source["class_type"]]["output"]
                if value[1] >= len(outputs):
                    found.append(f"{node_id} {cls}.{name}: {source['class_type']} has no output {value[1]}")
                    continue
                got, want = outputs[value[1]], input_spec[0]
                want = "COMBO" if isinstance(want, list) else want
                if "*" not in (got, want) and got != want:
                    found.append(f"{node_id} {cls}.{name}: {got} connected to {want}")
            else:
                error = check_literal(name, input_spec, value)
                if error:
                    found.append(f"{node_id} {cls}: {error}")
    return found


@pytest.fixture(scope="module")
def definitions(comfy) -> dict:
    defs = comfy.server.object_info()
    tooling = json.loads(TOOLING.read_text())["nodes"]
    assert not set(tooling) & set(defs), "the recorded tooling nodes are installed here: validate against those"
    return {**defs, **tooling}


@GRAPHS
def test_krita_graph_is_valid_against_every_node_it_names(definitions, path):
    assert problems(graph(path), definitions) == []


def test_the_check_catches_what_would_break_in_krita(definitions):
    """Each kind of mistake the check exists for, made on purpose."""
    broken = graph()
    broken["9"]["inputs"]["batch_mode"] = "stack"  # not a Krita Output batch mode
    broken["7"]["inputs"]["mask"] = ["1", 0]  # the canvas IMAGE where a MASK belongs
    broken["2"]["inputs"].pop("context")
    broken["20"] = {"class_type": "ETN_KritaLayerStack", "inputs": {}}
    found = "\n".join(problems(broken, definitions))
    for words in ("batch_mode='stack'", "IMAGE connected to MASK", "required input context", "unknown node type"):
        assert words in found, found
    broken = graph(LATENT)
    broken["8"]["inputs"]["latent"] = ["6", 0]  # the crop's pixels where VAEEncode's latent belongs
    broken["10"]["inputs"]["crop"] = ["6", 1]  # the crop's mask where its crop record belongs
    broken["3"]["inputs"].pop("ckpt_name")
    found = "\n".join(problems(broken, definitions))
    for words in ("IMAGE connected to LATENT", "MASK connected to BLENDED_LATENT_CROP", "required input ckpt_name"):
        assert words in found, found


def test_artist_controls_reach_the_edit(definitions):
    """Canvas -> image, selection -> mask, prompt/steps/batch/top-k as Krita parameters, ranked
    results back as layers at the selection's offset."""
    g = graph()
    sampler = next(n for n in g.values() if n["class_type"] == "BlendedSampler")["inputs"]
    guidance = next(n for n in g.values() if n["class_type"] == "BlendedCLIPGuidance")["inputs"]
    rank_id, rank = next((k, n) for k, n in g.items() if n["class_type"] == "BlendedRankResults")
    output = next(n for n in g.values() if n["class_type"] == "ETN_KritaOutput")["inputs"]
    kinds = {nid: n["class_type"] for nid, n in g.items()}
    assert kinds[sampler["image"][0]] == "ETN_KritaCanvas" and kinds[sampler["mask"][0]] == "ETN_KritaSelection"
    assert sampler["seed"] == [sampler["image"][0], 3]  # Krita's seed
    parameters = {n["inputs"]["name"]: n["inputs"] for n in g.values() if n["class_type"] == "ETN_Parameter"}
    for target, name in ((guidance["prompt"], "Prompt"), (guidance["negative_prompt"], "Negative prompt"),
                         (sampler["steps"], "Steps"), (sampler["batch_size"], "Batch size"),
                         (rank["inputs"]["top_k"], "Keep best")):
        assert g[target[0]]["inputs"]["name"] == name
    assert parameters["Prompt"]["type"] == "prompt (positive)"
    for name in ("Steps", "Skip steps", "Batch size", "Keep best"):
        assert parameters[name]["type"] == "number (integer)"
    assert g[sampler["method"][0]]["inputs"] == {"name": "Method", "type": "choice", "default": "ddpm"}
    assert output["images"] == [rank_id, 0] and output["batch_mode"] == "layers"
    assert output["x"] == [sampler["mask"][0], 2] and output["y"] == [sampler["mask"][0], 3]


@GRAPHS
def test_best_result_lands_on_top_at_the_selection(path):
    """Both graphs: ranked results as layers (the plugin stacks each above the last, so best last),
    at the selection context's offset; the seed is Krita's."""
    g = graph(path)
    rank_id, rank = node_of(g, "BlendedRankResults")
    _, output = node_of(g, "ETN_KritaOutput")
    selection_id, _ = node_of(g, "ETN_KritaSelection")
    canvas_id, _ = node_of(g, "ETN_KritaCanvas")
    assert rank["order"] == "best_last" and parameter_name(g, rank["top_k"]) == "Keep best"
    assert output["images"] == [rank_id, 0] and output["batch_mode"] == "layers"
    assert (output["x"], output["y"]) == ([selection_id, 2], [selection_id, 3])
    assert sampler_of(g)["seed"] == [canvas_id, 3]


def test_latent_graph_edits_with_the_users_checkpoint(definitions):
    """Canvas and selection -> Blended Latent Crop; one CheckpointLoaderSimple, whose file is a Krita
    'choice' (the plugin lists the options of the input it feeds: the server's checkpoints), gives
    the sampler's MODEL, both prompts' CLIP and the VAE that encodes and reconstructs; the prompt
    conditions the sampler and the ranking's CLIP; the stitch pastes into the crop's own record."""
    g = graph(LATENT)
    kinds = {nid: n["class_type"] for nid, n in g.items()}
    loader_id, loader = node_of(g, "CheckpointLoaderSimple")
    crop_id, crop = node_of(g, "BlendedLatentCrop")
    _, encode = node_of(g, "VAEEncode")
    _, recon = node_of(g, "BlendedBackgroundReconstruction")
    stitch_id, stitch = node_of(g, "BlendedLatentStitch")
    _, guidance = node_of(g, "BlendedCLIPGuidance")
    _, rank = node_of(g, "BlendedRankResults")
    sampler = sampler_of(g)
    checkpoint = g[loader["ckpt_name"][0]]["inputs"]
    assert checkpoint["name"] == "Checkpoint" and checkpoint["type"] == "choice"
    assert isinstance(definitions["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0], list)
    assert kinds[crop["image"][0]] == "ETN_KritaCanvas" and kinds[crop["mask"][0]] == "ETN_KritaSelection"
    assert parameter_name(g, crop["resolution"]) == "Resolution"
    assert encode == {"pixels": [crop_id, 0], "vae": [loader_id, 2]}
    assert (sampler["model"], sampler["latent"][0], sampler["mask"]) == ([loader_id, 0], next(
        k for k, v in kinds.items() if v == "VAEEncode"), [crop_id, 1])
    texts = {role: g[sampler[role][0]]["inputs"] for role in ("positive", "negative")}
    assert all(t["clip"] == [loader_id, 1] for t in texts.values())
    assert parameter_name(g, texts["positive"]["text"]) == "Prompt"
    assert parameter_name(g, texts["negative"]["text"]) == "Negative prompt"
    assert guidance["prompt"] == texts["positive"]["text"]
    assert parameter_name(g, sampler["steps"]) == "Steps" and parameter_name(g, sampler["batch_size"]) == "Batch size"
    assert (recon["vae"], recon["source"], recon["mask"]) == ([loader_id, 2], [crop_id, 0], [crop_id, 1])
    assert stitch["crop"] == [crop_id, 2] and (rank["images"], rank["mask"]) == ([stitch_id, 0], [stitch_id, 1])
    params = {n["inputs"]["name"]: n["inputs"]["type"] for n in g.values() if n["class_type"] == "ETN_Parameter"}
    assert params == {"Checkpoint": "choice", "Prompt": "prompt (positive)", "Negative prompt": "prompt (negative)",
                      "Steps": "number (integer)", "Resolution": "number (integer)",
                      "Batch size": "number (integer)", "Keep best": "number (integer)"}


@GRAPHS
def test_graph_imports_under_the_plugins_rules(path):
    assert parameter_problems(graph(path)) == []


def test_the_plugin_rules_catch_what_made_the_import_fail():
    """The shipped bug: integer defaults stored as strings; and the other rules, each on purpose."""
    broken = graph()
    broken["14"]["inputs"]["default"] = "8"  # what the graph had: AssertionError in ComfyNode.input
    broken["13"]["inputs"]["min"] = "0"
    broken["15"]["inputs"]["name"] = "Batch size"
    broken["11"]["inputs"]["default"] = 0
    broken["12"]["inputs"]["default"] = 2000
    found = "\n".join(parameter_problems(broken))
    for words in ("default='8' must be a int", "min='0' must be a int", "'Batch size' used twice",
                  "default=0 must be a str", "default 2000 outside 1..1000"):
        assert words in found, found


def test_expanded_graph_is_what_comfyui_accepts(definitions):
    """The graph as the plugin queues it: parameters substituted by their (default) values, the
    canvas, selection and seed by Krita's; every remaining node valid against its definition."""
    g = graph()
    expanded = expand_custom(g, default_params(g), seed=7, bounds=(16, 8), canvas=(64, 48),
                             image_node=["99", 0], mask_node=["99", 1])
    expanded["99"] = {"class_type": "LoadImage", "inputs": {"image": "blended_object.png"}}
    sampler = next(n for n in expanded.values() if n["class_type"] == "BlendedSampler")["inputs"]
    assert (sampler["steps"], sampler["skip_timesteps"], sampler["batch_size"], sampler["seed"]) == (100, 25, 8, 7)
    assert sampler["method"] == "ddpm"
    output = next(n for n in expanded.values() if n["class_type"] == "ETN_KritaOutput")["inputs"]
    assert (output["x"], output["y"]) == (16, 8)
    found = [p for p in problems(expanded, {**definitions, "LoadImage": definitions["LoadImage"]})
             if "LoadImage" not in p]
    assert found == []


def test_expanded_latent_graph_is_what_comfyui_accepts(definitions):
    g = graph(LATENT)
    expanded = expand_custom(g, default_params(g), seed=7, bounds=(16, 8), canvas=(64, 48),
                             image_node=["99", 0], mask_node=["99", 1])
    expanded["99"] = {"class_type": "LoadImage", "inputs": {"image": "blended_object.png"}}
    sampler = sampler_of(expanded)
    assert (sampler["steps"], sampler["batch_size"], sampler["seed"]) == (30, 4, 7)
    assert node_of(expanded, "BlendedLatentCrop")[1]["resolution"] == 512
    assert node_of(expanded, "BlendedRankResults")[1]["top_k"] == 2
    loader_id, loader = node_of(expanded, "CheckpointLoaderSimple")
    assert loader["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    prompts = sorted(n["inputs"]["text"] for n in expanded.values() if n["class_type"] == "CLIPTextEncode")
    assert prompts == ["a bowl of cherries", "blurry, low quality, watermark"]
    # the user's checkpoint file is not among the test server's checkpoints (as in the lint test)
    found = [p for p in problems(expanded, definitions)
             if "LoadImage" not in p and not p.startswith(f"{loader_id} CheckpointLoaderSimple: ckpt_name=")]
    assert found == []


def test_latent_graph_runs_in_the_engine_as_the_plugin_queues_it(comfy_sd15):
    """The expanded latent graph on the random SD1.5 checkpoint, with LoadImage where the plugin
    uploads the canvas and selection and SaveImage where Krita receives the layers (the tooling
    nodes are not installed here). Small: 64 px crop, 3 steps, 2 samples, 2 reconstruction steps.
    Every kept image is the whole canvas with the pixels outside the selection untouched."""
    comfy = comfy_sd15
    g = graph(LATENT)
    params = dict(default_params(g), **{"Checkpoint": comfy.names["sd15"], "Steps": 3, "Resolution": 64,
                                        "Batch size": 2, "Keep best": 2})
    expanded = expand_custom(g, params, seed=5, bounds=(0, 0), canvas=(64, 48), image_node=["99", 0],
                             mask_node=["99", 1])
    expanded["99"] = {"class_type": "LoadImage", "inputs": {"image": "blended_object.png"}}
    output_id, output = node_of(expanded, "ETN_KritaOutput")
    expanded[output_id] = {"class_type": "SaveImage",
                           "inputs": {"images": output["images"], "filename_prefix": "blended/krita_latent"}}
    del expanded[node_of(expanded, "ETN_KritaSendText")[0]]
    expanded[node_of(expanded, "BlendedBackgroundReconstruction")[0]]["inputs"]["iterations"] = 2
    node_of(expanded, "BlendedCLIPLoader")[1]["clip_name"] = comfy.names["clip"]
    entry = comfy.server.run(expanded, timeout=600)
    error = execution_error(entry)
    assert error is None, f"{error['node_type']}: {error['exception_message']}"
    images = output_images(entry)
    assert len(images) == 2
    source = loaded_rgb(comfy, "blended_object.png")
    edit = comfy.masks["blended_object.png"]
    for img in images:
        out = read_rgb(comfy.output_path(img))
        assert out.shape == source.shape
        assert np.array_equal(out[~edit], source[~edit]), "a pixel outside the selection changed"
        assert not np.array_equal(out[edit], source[edit])
    scores = next(t for t in output_texts(entry) if "\nranked " in t or t.startswith("ranked "))
    assert "ranked 2 samples" in scores, scores


@GRAPHS
def test_progress_counts_the_samplers_steps(path):
    """Krita's bar: sampling share = progress messages / numeric 'steps' inputs. The sampler sends
    one message per guided step (steps - skip per chunk), so the bar moves step by step instead of
    filling at the first one as with the old text Steps (count 0 -> divided by 1)."""
    g = graph(path)
    params = default_params(g)
    expanded = expand_custom(g, params, seed=0, bounds=(0, 0), canvas=(64, 48), image_node=["99", 0],
                             mask_node=["99", 1])
    assert guess_sample_count(expanded) == params["Steps"] == {KRITA: 100, LATENT: 30}[path]
    old = graph(path)
    old[sampler_of(old)["steps"][0]]["inputs"].update(type="text", default=str(params["Steps"]))
    old_expanded = expand_custom(old, default_params(old), 0, (0, 0), (64, 48), ["99", 0], ["99", 1])
    assert guess_sample_count(old_expanded) == 0


def test_method_choice_lists_the_samplers_methods(definitions):
    """A 'choice' parameter takes its options from the input it feeds (_get_choices, line 375)."""
    spec = definitions["BlendedSampler"]["input"]["required"]["method"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    assert options == ["ddpm", "ddim"]


@GRAPHS
def test_scores_reach_krita_as_text(path):
    g = graph(path)
    send = next(n for n in g.values() if n["class_type"] == "ETN_KritaSendText")["inputs"]
    rank_id = next(k for k, n in g.items() if n["class_type"] == "BlendedRankResults")
    assert send["value"] == [rank_id, 2] and send["type"] == "text"
