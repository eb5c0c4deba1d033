"""Krita AI Diffusion's rules for a custom graph, re-stated from the plugin's source (v1.53.0).

The plugin's parsing modules cannot be imported here: ``ai_diffusion/util.py`` imports PyQt5 and
``krita`` at module level (``user_data_dir`` is computed on import), and ``backend/comfy_workflow.py``
and ``model/custom_workflow.py`` import ``util``; the plugin is GPL-3.0 and not on PyPI, so it is
neither vendored nor installed. Each rule below names the plugin file and line it comes from.
"""

from __future__ import annotations

import math

# model/custom_workflow.py:323 workflow_parameters: the default each ETN_Parameter type is read with.
# ComfyNode.input(key, default) (backend/comfy_workflow.py:50) asserts base_type_match(value, default),
# so a present value must have the default's base type, or the import fails with an AssertionError.
PARAMETER_DEFAULTS = {
    "number (integer)": {"default": 0, "min": -(2**31), "max": 2**31},
    "number": {"default": 0.0, "min": 0.0, "max": 1.0},
    "toggle": {"default": False},
    "text": {"default": ""},
    "prompt (positive)": {"default": ""},
    "prompt (negative)": {"default": ""},
    "choice": {"default": ""},
}
TEXT_KINDS = ("text", "prompt (positive)", "prompt (negative)", "choice")


def isnumber(x) -> bool:
    """util.py:136 (bool counts, as isinstance(True, int))."""
    return isinstance(x, (int, float))


def base_type_match(a, b) -> bool:
    """util.py:140."""
    return type(a) is type(b) or (isnumber(a) and isnumber(b))


def parameter_problems(graph: dict) -> list[str]:
    """What makes workflow_parameters assert, plus the duplicate names _validate_workflow (line 474)
    refuses, plus a default outside its own min..max (the plugin's widget would clamp it)."""
    found, names = [], []
    for node_id, node in graph.items():
        if node["class_type"] != "ETN_Parameter":
            continue
        inputs = node["inputs"]
        kind = inputs.get("type", "")
        if not base_type_match(kind, ""):
            found.append(f"{node_id}: type={kind!r} is not a string")
            continue
        names.append(inputs.get("name", "Parameter"))
        rules = PARAMETER_DEFAULTS.get(kind)
        if rules is None:
            found.append(f"{node_id}: parameter type {kind!r} is not one the plugin reads")
            continue
        for key, default in rules.items():
            if key in inputs and not base_type_match(inputs[key], default):
                found.append(f"{node_id} {inputs.get('name')}: {key}={inputs[key]!r} must be a "
                             f"{type(default).__name__} for type {kind!r}")
        if kind == "number (integer)" and isinstance(inputs.get("default"), float):
            found.append(f"{node_id} {inputs.get('name')}: default {inputs['default']!r} is not a whole number")
        if kind in ("number", "number (integer)") and all(isnumber(inputs.get(k)) for k in ("default", "min", "max")):
            if not inputs["min"] <= inputs["default"] <= inputs["max"]:
                found.append(f"{node_id} {inputs.get('name')}: default {inputs['default']} outside "
                             f"{inputs['min']}..{inputs['max']}")
    found += [f"parameter name {n!r} used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return found


def expand_custom(graph: dict, params: dict, seed: int, bounds: tuple[int, int], canvas: tuple[int, int],
                  image_node: list, mask_node: list) -> dict:
    """What backend/workflow.py:1406 expand_custom does to the graph before queueing it: every
    ETN_Parameter output becomes the parameter's value (get_param, line 1432; missing -> error),
    Krita Canvas outputs become the uploaded image/mask and its width, height and the seed, Krita
    Selection outputs the mask, 'active' and the context's offset; every other node is copied with
    those values in place of its links (ETN_KritaOutput and ETN_KritaSendText included).
    ``image_node`` / ``mask_node`` stand in for the plugin's ETN_LoadImageCache: [node_id, output]."""
    values: dict[tuple[str, int], object] = {}
    for node_id, node in graph.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "ETN_Parameter":
            name = inputs.get("name", "")
            if params.get(name) is None:
                raise RuntimeError(f"Missing required parameter '{name}' for custom workflow")
            values[(node_id, 0)] = params[name]
        elif kind == "ETN_KritaCanvas":
            for i, v in enumerate([image_node, canvas[0], canvas[1], seed, mask_node]):
                values[(node_id, i)] = v
        elif kind == "ETN_KritaSelection":
            for i, v in enumerate([mask_node, True, bounds[0], bounds[1]]):
                values[(node_id, i)] = v
    out = {}
    for node_id, node in graph.items():
        if node["class_type"] in ("ETN_Parameter", "ETN_KritaCanvas", "ETN_KritaSelection"):
            continue
        inputs = {k: values.get((v[0], v[1]), v) if isinstance(v, list) else v for k, v in node["inputs"].items()}
        out[node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return out


def guess_sample_count(graph: dict) -> int:
    """backend/comfy_workflow.py:249, run at the end of expand_custom: the progress bar's sampling
    share (comfy_client.py:112 Progress, 0.8 of the bar) is progress messages / the sum of every
    numeric input named 'steps' (max 1). A text 'steps' counts 0, so one message fills the bar."""
    return sum(int(v) for n in graph.values() for k, v in n["inputs"].items()
               if k == "steps" and isinstance(v, (int, float)) and not math.isnan(v))


def default_params(graph: dict) -> dict:
    """The values the docker starts with: each parameter's default (_coerce_with_fallback, line 726)."""
    return {n["inputs"]["name"]: n["inputs"].get("default") for n in graph.values()
            if n["class_type"] == "ETN_Parameter"}
