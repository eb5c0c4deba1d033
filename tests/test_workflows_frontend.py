"""The shipped UI workflows, loaded in the real ComfyUI frontend, queue exactly their API twins.

Users open ``workflows/<name>.json`` from the template browser or drag it onto the canvas; the engine
tests run ``workflows/api/<name>.api.json``.
Here the bundled frontend (comfyui-frontend-package, in headless Chromium) loads each UI file the
way a drop does (``app.loadGraphData``) and converts it the way Queue does (``app.graphToPrompt``);
the result must equal the API twin: same node ids, class types, widget values and links. A UI file
that drifts from its twin, or uses a node the server does not register, fails. Fix by editing the
API workflow and rerunning ``scripts/templates/build_ui_workflows.py``. Needs /usr/bin/chromium and playwright
(``scripts/setup/install_deps.sh --tests``).
"""

from __future__ import annotations

import copy
import json

import pytest

from scripts.engine.comfy_engine import API_WORKFLOWS, PACK_DIR_NAME, WORKFLOWS
from scripts.templates.build_ui_workflows import PROMPT_JS, api_names, as_api, comfy_frontend, without_engine_defaults
from scripts.templates.layout import FIND_TITLE, TEXT_ENCODERS
from tests.support.later_core_nodes import missing_later_core_nodes, skip_without_later_core_nodes

API_NAMES = api_names()
UI_NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))

# Records what the frontend reports while loading: uncaught exceptions, console errors (except
# requests refused because the page is offline), missing-node and missing-model dialogs.
WATCH_JS = """() => {
  window.__problems = [];
  for (const f of ["showMissingNodesError", "showMissingModelsError"]) {
    if (typeof app[f] !== "function") continue;  // newer frontends show these as dialogs (SHOWN_JS)
    const orig = app[f].bind(app);
    app[f] = (...args) => { window.__problems.push(`${f}: ${JSON.stringify(args[0])}`); return orig(...args); };
  }
}"""
# Warning and error toasts (workflow validation, link fixes) and open dialogs after a load.
SHOWN_JS = """() => [...document.querySelectorAll('.p-toast-message-warn, .p-toast-message-error, .p-dialog')]
  .map((e) => e.innerText.trim().slice(0, 300))"""


@pytest.fixture(scope="module")
def frontend_root(tmp_path_factory):
    return tmp_path_factory.mktemp("frontend")


@pytest.fixture(scope="module")
def frontend(frontend_root):
    """The frontend of a server whose input/ starts empty: the workflows find the example photos
    only if the pack copied them there, as it does for a user."""
    with comfy_frontend(frontend_root, test_inputs=False) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and errors.append(f"console: {m.text}"))
        page.evaluate(WATCH_JS)

        def load(workflow: dict, name: str) -> tuple[dict, list[str]]:
            """Load a UI workflow as a drop does; the prompt Queue would send, without _meta."""
            errors.clear()
            page.evaluate("() => { window.__problems.length = 0; }")
            page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, name])
            prompt = as_api(page.evaluate(PROMPT_JS))
            page.wait_for_timeout(200)  # let toasts and dialogs render
            problems = errors + page.evaluate("() => window.__problems") + page.evaluate(SHOWN_JS)
            page.evaluate("() => app.extensionManager.toast.removeAll?.()")  # a clean slate for the next load
            for _ in range(5):
                if not page.locator(".p-dialog").count():
                    break
                page.keyboard.press("Escape")
                page.wait_for_timeout(100)
            return prompt, problems

        yield page, load


def api_workflow(name: str) -> dict:
    return json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())


def ui_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def test_every_api_workflow_has_a_ui_twin():
    assert API_NAMES, "no workflows/api/*.api.json"
    assert UI_NAMES == API_NAMES, (
        "each workflows/api/<name>.api.json needs a workflows/<name>.json (scripts/templates/build_ui_workflows.py)"
    )


@pytest.mark.parametrize("name", UI_NAMES)
def test_a_templates_prompt_boxes_say_which_is_which(name):
    """Two text encoders both titled "CLIP Text Encode (Prompt)" leave the user to follow wires to
    find the negative: the one the sampler's positive reads is "Prompt", a separate negative one
    "Negative prompt"."""
    api, ui = api_workflow(name), ui_workflow(name)
    encoders = {str(n["id"]): n.get("title") for n in ui["nodes"] if n["type"] in TEXT_ENCODERS}
    if not encoders:
        pytest.skip("no text encoder (a pixel-path template)")
    sampler = next(n for n in api.values() if "positive" in n["inputs"])
    positive = sampler["inputs"]["positive"][0]
    while api[positive]["class_type"] not in TEXT_ENCODERS:  # through FluxGuidance
        positive = api[positive]["inputs"]["conditioning"][0]
    assert encoders.pop(positive) == "Prompt"
    finds = [k for k, n in api.items() if "conditioning" in n["inputs"] and n["class_type"].startswith("SAM3_")]
    for key in finds:  # the phrase a SAM3 node looks for
        assert encoders.pop(api[key]["inputs"]["conditioning"][0]) == FIND_TITLE
    assert list(encoders.values()) in ([], ["Negative prompt"])


@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_queues_its_api_twin(frontend, name):
    page, load = frontend
    api = api_workflow(name)
    skip_without_later_core_nodes(api, page.evaluate(REGISTERED_JS), name)
    unknown = page.evaluate("(types) => types.filter((t) => !(t in LiteGraph.registered_node_types))",
                            sorted({n["class_type"] for n in api.values()}))
    assert unknown == [], f"node types the frontend does not know: {unknown}"
    prompt, problems = load(ui_workflow(name), name)
    assert problems == [], f"the frontend complained while loading {name}.json"
    # widgets a newer engine's core nodes gained, queued at their declared default, are the twin's too
    engine_nodes = page.evaluate("async () => (await fetch(app.api.apiURL('/object_info'))).json()")
    prompt = without_engine_defaults(prompt, api, engine_nodes)
    assert prompt == api, f"{name}.json has drifted from {name}.api.json: rerun scripts/templates/build_ui_workflows.py"


def test_an_added_widget_off_its_default_is_drift():
    """The allowance above covers only an optional input the twin omits, at the engine's default."""
    info = {"CreateVideo": {"input": {"optional": {"bit_depth": ["INT", {"default": 8}]}}}}
    api = {"15": {"class_type": "CreateVideo", "inputs": {"fps": 30}}}
    queued = {"15": {"class_type": "CreateVideo", "inputs": {"fps": 30, "bit_depth": 8}}}
    assert without_engine_defaults(queued, api, info) == api
    queued["15"]["inputs"]["bit_depth"] = 10
    assert without_engine_defaults(queued, api, info) == queued
    required = {"CreateVideo": {"input": {"required": {"bit_depth": ["INT", {"default": 8}]}}}}
    assert without_engine_defaults({"15": {**api["15"], "inputs": {"fps": 30, "bit_depth": 8}}}, api, required) != api


def test_a_changed_widget_value_is_caught(frontend):
    """The comparison reads the UI file's own values (not node defaults): change one, it shows."""
    _, load = frontend
    name = "Blended - Object editing"
    ui = copy.deepcopy(ui_workflow(name))
    sampler = next(n for n in ui["nodes"] if n["type"] == "BlendedSampler")
    sampler["widgets_values"][1] += 1  # skip_timesteps
    prompt, problems = load(ui, name)
    assert problems == []
    assert prompt != api_workflow(name)
    assert prompt[str(sampler["id"])]["inputs"]["skip_timesteps"] == sampler["widgets_values"][1]


# --- the template browser ---------------------------------------------------------------------------

FETCH_JS = """async (path) => { const r = await fetch(app.api.apiURL(path));
  return {status: r.status, type: r.headers.get('content-type'), json: r.ok && !path.endsWith('.jpg') ? await r.json() : null}; }"""  # noqa: E501
REGISTERED_JS = "() => Object.keys(LiteGraph.registered_node_types)"
GRAPH_JS = """() => ({nodes: app.graph.nodes.length,
  missing: app.graph.nodes.map((n) => n.type).filter((t) => !(t in LiteGraph.registered_node_types))})"""


def test_template_browser_lists_exactly_the_ui_workflows(frontend):
    page, _ = frontend
    listed = page.evaluate(FETCH_JS, "/workflow_templates")["json"]
    assert sorted(listed.get(PACK_DIR_NAME, [])) == UI_NAMES, listed


@pytest.mark.parametrize("name", UI_NAMES)
def test_template_opens_as_the_template_browser_opens_it(frontend, name):
    """The browser fetches /api/workflow_templates/<pack>/<name>.json and hands it to loadGraphData;
    its card shows <name>.jpg from the same place."""
    page, load = frontend
    template = page.evaluate(FETCH_JS, f"/workflow_templates/{PACK_DIR_NAME}/{name}.json")
    assert template["status"] == 200
    _, problems = load(template["json"], name)
    graph = page.evaluate(GRAPH_JS)
    assert graph["nodes"] == len(ui_workflow(name)["nodes"]) > 0
    lacking = missing_later_core_nodes(api_workflow(name), page.evaluate(REGISTERED_JS))
    if lacking:  # a 0.33 template on an older engine: it opens, and the frontend names just those as missing
        assert sorted(set(graph["missing"])) == lacking
        assert problems and all(any(t in p for t in lacking) for p in problems), problems
    else:
        assert problems == [], f"the frontend complained while opening the template {name}"
        assert graph["missing"] == []
    thumbnail = page.evaluate(FETCH_JS, f"/workflow_templates/{PACK_DIR_NAME}/{name}.jpg")
    assert (thumbnail["status"], thumbnail["type"]) == (200, "image/jpeg")


def test_example_inputs_were_copied_into_comfyui_input(frontend, frontend_root):
    examples = sorted((WORKFLOWS / "examples").glob("*.png"))
    assert examples
    for src in examples:
        dest = frontend_root / "base" / "input" / src.name
        assert dest.is_file() and dest.read_bytes() == src.read_bytes(), src.name


# --- node help pages --------------------------------------------------------------------------------

# Opens the node's help page as the help panel does and returns what it shows. Frontends up to 1.3x
# keep the page in the ``nodeHelp`` store (openHelp fetches /extensions/<pack>/docs/<node>/<locale>.md,
# then <node>.md, and falls back to the node's description, setting ``error``, when there is none).
# Newer ones (1.48: what ComfyUI 0.33 pins, and 1.58) keep only the open node there and fetch and render
# the page in the panel (NodeHelpContent, in the classic node library), so it is read from the panel
# itself: its markdown, the docs URL that answered 200, and the description fallback as the error.
HELP_JS = """async (name) => {
  const pinia = document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia;
  const defs = pinia._s.get('nodeDef'), settings = app.extensionManager.setting;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let help = pinia._s.get('nodeHelp');
  if (help && 'renderedHelpHtml' in help) {
    help.openHelp(defs.nodeDefsByName[name]);
    await sleep(0);
    for (let i = 0; i < 200 && (help.isLoading || !(help.renderedHelpHtml || help.error)); i++) await sleep(50);
    const out = {error: help.error, html: help.renderedHelpHtml, base: help.baseUrl};
    help.closeHelp();
    return out;
  }
  const design = settings.get('Comfy.NodeLibrary.NewDesign');
  if (design) await settings.set('Comfy.NodeLibrary.NewDesign', false);  // the panel lives in the classic library
  const toggle = () => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library');
  await toggle();
  for (let i = 0; i < 100 && !(help = pinia._s.get('nodeHelp')); i++) await sleep(50);
  performance.clearResourceTimings();
  help.openHelp(defs.nodeDefsByName[name]);
  const markdown = '.node-help-content [class*=markdown-content]';  // 1.48: markdown-content, 1.58: comfy-markdown-content
  const shown = () => document.querySelector(`${markdown}, .node-help-content .fallback-content`);
  for (let i = 0; i < 200 && !shown(); i++) await sleep(50);
  const page = performance.getEntriesByType('resource').map((e) => [new URL(e.name).pathname, e.responseStatus])
    .find(([path, status]) => status === 200 && path.includes(`/docs/${name}`));
  const content = document.querySelector(markdown);
  const out = {error: content && page ? null : `no help page for ${name}: ${shown()?.innerText.slice(0, 200)}`,
               html: content?.innerHTML ?? '', base: page ? page[0].slice(0, page[0].indexOf('/docs/') + 6) : null};
  help.closeHelp();
  await toggle();
  if (design) await settings.set('Comfy.NodeLibrary.NewDesign', design);
  return out;
}"""  # noqa: E501
NODE_INFO_JS = """(name) => { const pinia = document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia;
  const d = pinia._s.get('nodeDef').nodeDefsByName[name];
  return {display: d.display_name, inputs: Object.keys(d.inputs ?? {})}; }"""  # noqa: E501
OUR_NODES = sorted([
    "BlendedBackgroundLoss", "BlendedCLIPGuidance", "BlendedCLIPLoader", "BlendedDiffusionModelLoader",
    "BlendedEvaluate", "BlendedExtendingAugmentation", "BlendedLPIPSLoader", "BlendedRankResults", "BlendedSampler",
    "BlendedLatentCrop", "BlendedLatentSampler", "BlendedLatentSamplerObject", "BlendedLatentStitch",
    "BlendedBackgroundReconstruction", "BlendedRewardModelLoader", "BlendedRewardCriterion", "BlendedAutoMask",
    "BlendedConfineEdit",
])


def test_every_node_the_pack_registers_has_a_help_page(frontend):
    page, _ = frontend
    registered = page.evaluate("""() => Object.values(document.getElementById('vue-app').__vue_app__.config
      .globalProperties.$pinia._s.get('nodeDef').nodeDefsByName)
      .filter((d) => d.python_module?.startsWith('custom_nodes.')).map((d) => d.name).sort()""")
    assert registered == OUR_NODES
    assert sorted(p.stem for p in (WORKFLOWS.parent / "web" / "docs").glob("*.md")) == OUR_NODES


@pytest.mark.parametrize("name", OUR_NODES)
def test_help_panel_shows_the_nodes_page(frontend, name):
    page, _ = frontend
    node = page.evaluate(NODE_INFO_JS, name)
    shown = page.evaluate(HELP_JS, name)
    assert shown["error"] is None, f"the help panel found no page for {name}: {shown['error']}"
    assert shown["base"] == f"/extensions/{PACK_DIR_NAME}/docs/"
    html = shown["html"]
    assert f"<h1>{node['display']}</h1>" in html
    missing = [i for i in node["inputs"] if f"<strong>{i}</strong>" not in html]
    assert node["inputs"] and missing == [], f"{name}'s help page does not describe {missing}"
    assert "default" in html.lower() or "paper" in html.lower()
