"""workflows/krita/blended_selection_edit.json, the custom graph for Krita AI Diffusion, is valid
against the node definitions it names: ours and ComfyUI's from the running engine, Acly's
comfyui-tooling-nodes (Krita Canvas, Selection, Output, Parameter) from a recorded /object_info
(tests/data/comfyui_tooling_nodes_3.1.3.json: the tooling nodes are not installed in CI), and against
the plugin's own import rules (tests/krita_plugin_rules.py, re-stated from its source with file/line
references): typed parameter defaults, unique names, what expand_custom substitutes, progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from krita_plugin_rules import default_params, expand_custom, guess_sample_count, parameter_problems

from scripts.comfy_engine import WORKFLOWS

KRITA = WORKFLOWS / "krita" / "blended_selection_edit.json"
TOOLING = Path(__file__).resolve().parent / "data" / "comfyui_tooling_nodes_3.1.3.json"


def graph() -> dict:
    return json.loads(KRITA.read_text())


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


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


def test_krita_graph_is_valid_against_every_node_it_names(definitions):
    assert problems(graph(), definitions) == []


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


def test_graph_imports_under_the_plugins_rules():
    assert parameter_problems(graph()) == []


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


def test_progress_counts_the_samplers_steps():
    """Krita's bar: sampling share = progress messages / numeric 'steps' inputs. The sampler sends
    one message per guided step (steps - skip per chunk), so the bar moves step by step instead of
    filling at the first one as with the old text Steps (count 0 -> divided by 1)."""
    g = graph()
    params = default_params(g)
    expanded = expand_custom(g, params, seed=0, bounds=(0, 0), canvas=(64, 48), image_node=["99", 0],
                             mask_node=["99", 1])
    assert guess_sample_count(expanded) == params["Steps"] == 100
    old = graph()
    old["12"]["inputs"].update(type="text", default="100")
    old_expanded = expand_custom(old, default_params(old), 0, (0, 0), (64, 48), ["99", 0], ["99", 1])
    assert guess_sample_count(old_expanded) == 0


def test_method_choice_lists_the_samplers_methods(definitions):
    """A 'choice' parameter takes its options from the input it feeds (_get_choices, line 375)."""
    spec = definitions["BlendedSampler"]["input"]["required"]["method"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    assert options == ["ddpm", "ddim"]


def test_scores_reach_krita_as_text():
    g = graph()
    send = next(n for n in g.values() if n["class_type"] == "ETN_KritaSendText")["inputs"]
    rank_id = next(k for k, n in g.items() if n["class_type"] == "BlendedRankResults")
    assert send["value"] == [rank_id, 2] and send["type"] == "text"
