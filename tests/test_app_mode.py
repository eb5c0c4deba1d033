"""Each template also opens as an app: ComfyUI's APP mode shows exactly the inputs and outputs its
``workflows/api/<name>.app.toml`` declares, with their labels, and runs as a person uses it.

In the real frontends that have APP mode (1.58.1, served with ``--front-end-root``; 1.48.7, which
ComfyUI 0.33 pins, when the tests run on that engine) each template is opened from the template
browser, as a user does, and the "App" button pressed: the form must list the declared labels in
order and nothing else (an input the frontend cannot resolve is left out of the form, so a count or
label mismatch shows it), the app's outputs must be the declared nodes, and the graph must still
queue its API twin. A screenshot of each app lands in ``test-artifacts/app_mode/<version>/``.

The full run is done for a representative template, "Blended - Object editing" (the pixel path:
photo with its mask, prompt, samples, keep best, seed, CLIP model; ranked results and the scores
text), on tiny random models under the names the template ships with (the ADM file) or picked in the
app (the CLIP file, as a person picks theirs): a photo with a transparent region is uploaded in the
app, the prompt typed, Run pressed, and the result must appear in the app's output area. The other
templates' graphs need text encoders of 4-8 B parameters that cannot be made tiny
(tests/test_family_templates.py replaces them by test nodes, which an app run cannot do), so for them
the form is checked, not run.

A frontend without APP mode (1.32.9, the CI engine's own) must still open the same files as graphs,
without a warning.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from scripts.engine.comfy_engine import API_WORKFLOWS, WORKFLOWS
from scripts.templates.app_form import APP_NOTE, linear_data, parse_declaration, read_declaration
from scripts.templates.build_ui_workflows import (
    PROMPT_JS,
    as_api,
    browser_page,
    comfy_server,
    without_engine_defaults,
)
from tests.support.comfy_harness import write_inputs
from tests.support.later_core_nodes import skip_without_later_core_nodes
from tests.test_frontend_views import (
    BUNDLED,
    CLOSE_JS,
    ISSUES_JS,
    NEWEST,
    NEWEST_ROOT,
    SHOWN_JS,
    USER_SETTINGS,
    close_everything,
    open_from_template_browser,
    template_model_files,
)

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "app_mode"
TEMPLATES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
# APP mode arrived in frontend 1.41.13.
APP_MODE_SINCE = (1, 41, 13)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


BUNDLED_HAS_APP_MODE = version_tuple(BUNDLED) >= APP_MODE_SINCE
FRONTENDS = {BUNDLED: None, NEWEST: NEWEST_ROOT}
RUN_TEMPLATE = "Blended - Object editing"
TINY_ADM = "256x256_diffusion_uncond.pt"  # the file name the pixel templates ship with
TINY_CLIP = "tiny_clip.safetensors"
UPLOAD = "app_mode_photo.png"
PROMPT = "a bowl of cherries, app mode"

STORE_JS = """() => {
  const s = document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia._s.get('appMode');
  return {inputs: s.selectedInputs.map((i) => [...i]), outputs: s.selectedOutputs.map(String), mode: s.viewMode};
}"""
FORM_JS = """() => [...document.querySelectorAll('[data-testid=app-mode-widget-item]')]
  .map((e) => e.querySelector('[data-testid=builder-widget-label]')?.innerText.trim())"""


def api_workflow(name: str) -> dict:
    return json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())


def ui_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


# --- the files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_app_mode_form_is_saved_in_the_template(name):
    """The UI file carries the declared app: extra.linearData, each input's label on its widget's
    input slot (where the frontend restores it from), each output's label as its node's title, and
    the note tells a person that it opens as an app. No app opens straight away (no linearMode):
    the template still opens as its graph."""
    form = read_declaration(name, api_workflow(name))
    ui = ui_workflow(name)
    assert ui["extra"]["linearData"] == linear_data(form)
    assert "linearMode" not in ui["extra"]
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    for node, widget, label in form["inputs"]:
        (slot,) = [i for i in nodes[node]["inputs"] if i.get("widget", {}).get("name") == widget]
        assert slot.get("label") == label and slot["link"] is None, (node, widget, slot)
    for node, label in form["outputs"]:
        assert nodes[node].get("title") == label
    note = next(n for n in ui["nodes"] if n["type"] == "Note")
    assert note["widgets_values"][0].endswith(APP_NOTE)


def test_app_mode_declaration_errors_name_the_input_and_the_fix():
    api = api_workflow(RUN_TEMPLATE)
    ok = {"inputs": {"LoadImage.image": "Photo"}, "outputs": {"SaveImage": "Results"}}
    assert parse_declaration(ok, api, "x.app.toml") == {"inputs": [["1", "image", "Photo"]],
                                                        "outputs": [["8", "Results"]]}
    bad = [
        ({"inputs": {"BlendedSampler.guidance": "G"}, "outputs": ok["outputs"]}, "not a widget of node 6"),
        ({"inputs": {"BlendedSampler.stepz": "S"}, "outputs": ok["outputs"]}, "its widgets are"),
        ({"inputs": {"BlendedRewardCriterion.weight": "W"}, "outputs": ok["outputs"]}, "2 nodes (11, 12)"),
        ({"inputs": ok["inputs"], "outputs": {"SaveVideo": "V"}}, "'SaveVideo' names no node"),
        ({"inputs": ok["inputs"]}, "needs exactly an [inputs] and an [outputs] table"),
    ]
    for declared, message in bad:
        with pytest.raises(SystemExit, match=re.escape(message)):
            parse_declaration(declared, api, "x.app.toml")


# --- the app in the real frontends ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(FRONTENDS))
def frontend(request, tmp_path_factory):
    """A server with the example photos, the tiny ADM under the shipped file name and a tiny CLIP
    file, and a page on the frontend under test (one at a time: one playwright session)."""
    from tests.support.tiny_clip import save_tiny_clip
    from tests.support.tiny_unet import save_tiny_unet

    version = request.param
    root = FRONTENDS[version]
    if root is not None and not (root / "index.html").is_file():
        pytest.fail(f"comfyui-frontend-package {version} is not installed in .venv/frontends: "
                    "run `bash scripts/setup/install_deps.sh --tests .venv`")
    tmp = tmp_path_factory.mktemp(f"app-{version}")
    models = tmp / "base" / "models"
    save_tiny_unet(models / "blended_diffusion" / TINY_ADM, seed=0)
    save_tiny_clip(models / "blended_clip" / TINY_CLIP, seed=0)
    (ARTIFACTS / version).mkdir(parents=True, exist_ok=True)
    with comfy_server(tmp, examples=True, frontend_root=str(root) if root else None,
                      settings=USER_SETTINGS) as server, browser_page(server) as page:
        yield version, page, server


@pytest.fixture
def app_frontend(frontend):
    version = frontend[0]
    if version == BUNDLED and not BUNDLED_HAS_APP_MODE:
        pytest.skip(f"frontend {version} has no APP mode (it arrived in {'.'.join(map(str, APP_MODE_SINCE))})")
    return frontend


@pytest.fixture
def graph_only_frontend(frontend):
    version = frontend[0]
    if version != BUNDLED or BUNDLED_HAS_APP_MODE:
        pytest.skip(f"frontend {version} has APP mode (tested above)")
    return frontend


def enter_app_mode(page) -> None:
    """As a person does: the "App" button at the top left; the first-visit tour is skipped."""
    close_everything(page)
    page.get_by_role("button", name="Enter app mode").click()
    page.wait_for_function("() => document.querySelector('[data-testid=linear-widgets]')", timeout=20_000)
    skip = page.get_by_role("dialog").get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(timeout=3_000)
        skip.click()
    except Exception:  # noqa: BLE001 - a frontend without the tour, or one already skipped
        pass
    page.wait_for_function("() => !document.querySelector('[role=dialog]')", timeout=10_000)
    page.mouse.move(600, 600)  # off the button: its tooltip would cover the screenshot
    page.wait_for_timeout(500)  # the photo preview loads


def leave_app_mode(page) -> None:
    page.evaluate("() => app.extensionManager.command.execute('Comfy.ToggleLinear')")
    page.wait_for_function("() => !document.querySelector('[data-testid=linear-widgets]')", timeout=10_000)


@pytest.mark.parametrize("name", TEMPLATES)
def test_app_mode_shows_exactly_the_declared_inputs_and_outputs(app_frontend, name):
    version, page, server = app_frontend
    skip_without_later_core_nodes(api_workflow(name), server.object_info(), name)
    form = read_declaration(name, api_workflow(name))
    open_from_template_browser(page, name)
    enter_app_mode(page)
    page.screenshot(path=str(ARTIFACTS / version / f"{name}.png"))
    try:
        shown = page.evaluate(FORM_JS)
        store = page.evaluate(STORE_JS)
        assert store["mode"] == "app"
        assert shown == [label for _, _, label in form["inputs"]], f"{name} in {version}: the app shows {shown}"
        # each declared widget resolved to the frontend's own widget id (<graph>:<node>:<widget>)
        assert [i[0].split(":")[1:] for i in store["inputs"]] == [[n, w] for n, w, _ in form["inputs"]]
        assert store["outputs"] == [n for n, _ in form["outputs"]]
        # the graph under the app still queues exactly the API twin
        api = api_workflow(name)
        queued = without_engine_defaults(as_api(page.evaluate(PROMPT_JS)), api, server.object_info())
        assert queued == api
    finally:
        leave_app_mode(page)


def upload_photo(page, path: Path) -> None:
    """Through the image input's own "browse" drop zone, as a person picks a file."""
    item = page.locator("[data-testid=app-mode-widget-item]").first
    with page.expect_file_chooser() as chooser:
        item.get_by_role("button", name=re.compile("browse", re.I)).first.click()
    chooser.value.set_files(str(path))


def app_field(page, label: str):
    return page.locator("[data-testid=app-mode-widget-item]").filter(
        has=page.locator("[data-testid=builder-widget-label]", has_text=re.compile(f"^{re.escape(label)}$")))


def type_number(page, label: str, value: int) -> None:
    box = app_field(page, label).locator("input[type=text], input[type=number], input:not([type])").first
    box.fill(str(value))
    box.press("Enter")


def pick(page, label: str, option: str) -> None:
    """A combo: its button opens the list, a click on the option picks it."""
    app_field(page, label).locator("button:not([data-testid=widget-actions-menu])").first.click()
    page.get_by_text(option, exact=True).last.click()


def test_app_mode_runs_as_a_person_uses_it(app_frontend, tmp_path):
    """Upload a photo with a transparent region (its mask), type the prompt, fewer samples, pick the
    CLIP file, Run: the ranked result and its scores come back into the app's output area."""
    version, page, server = app_frontend
    write_inputs(tmp_path)
    photo = shutil.copy(tmp_path / "blended_object.png", tmp_path / UPLOAD)
    form = read_declaration(RUN_TEMPLATE, api_workflow(RUN_TEMPLATE))
    labels = {widget: label for _, widget, label in form["inputs"]}
    open_from_template_browser(page, RUN_TEMPLATE)
    enter_app_mode(page)
    try:
        upload_photo(page, Path(photo))
        page.wait_for_function("(n) => app.graph.getNodeById(1).widgets[0].value.endsWith(n)", arg=UPLOAD,
                               timeout=20_000)
        app_field(page, labels["prompt"]).locator("textarea").fill(PROMPT)
        type_number(page, labels["batch_size"], 2)
        type_number(page, labels["top_k"], 1)
        pick(page, labels["clip_name"], TINY_CLIP)
        before = set(server.get("/history"))
        page.locator("[data-testid=linear-run-button]").get_by_role("button", name="Run").click()
        # the result fills the app's output area
        result = page.locator("[data-testid=linear-center-panel] img[src*='object_editing_']").first
        try:
            result.wait_for(timeout=300_000)
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=result.element_handle())
        finally:
            page.screenshot(path=str(ARTIFACTS / version / f"{RUN_TEMPLATE} run.png"))
        page.screenshot(path=str(ARTIFACTS / version / f"{RUN_TEMPLATE} run.png"))
        (prompt_id,) = set(server.get("/history")) - before
        entry = server.get("/history")[prompt_id]
        queued = entry["prompt"][2]
        assert queued["1"]["inputs"]["image"].endswith(UPLOAD)
        assert queued["5"]["inputs"]["prompt"] == PROMPT
        assert (queued["6"]["inputs"]["batch_size"], queued["7"]["inputs"]["top_k"]) == (2, 1)
        assert queued["3"]["inputs"]["clip_name"] == TINY_CLIP
        assert entry["status"]["status_str"] == "success", entry["status"]
        saved = entry["outputs"]["8"]["images"]
        assert len(saved) == 1 and saved[0]["filename"] in result.get_attribute("src")
        assert "ranked 2 samples" in entry["outputs"]["7"]["text"][0]
        # the scores: the rank node's .txt result is a text item of the output strip; picked, as a person
        # picks it, the text (fetched through /view) fills the output area, its file name under it
        scores, (report,) = entry["outputs"]["7"]["text"][0], entry["outputs"]["7"]["files"]
        panel = page.locator("[data-testid=linear-center-panel]")
        panel.locator("[data-testid=linear-history-item], [data-testid=linear-in-progress-item]").filter(
            has=page.locator("i[class*='lucide--text']")).first.click()
        shown = panel.locator("article:not([data-testid])")
        page.wait_for_function("(el) => el.innerText.length > 0", arg=shown.element_handle(timeout=20_000))
        page.screenshot(path=str(ARTIFACTS / version / f"{RUN_TEMPLATE} scores.png"))
        assert shown.inner_text() == scores
        assert panel.get_by_text(report["filename"], exact=True).is_visible()
    finally:
        leave_app_mode(page)


# --- a frontend without APP mode ---------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_app_mode_template_opens_as_its_graph_without_app_mode(graph_only_frontend, name):
    """The engine's own older frontend (1.32.9) opens the file as its graph: every node, and no
    notice but the missing model files the template names (the models are not on this machine)."""
    _, page, server = graph_only_frontend
    skip_without_later_core_nodes(api_workflow(name), server.object_info(), name)
    open_from_template_browser(page, name)
    files = template_model_files(name)
    issues = page.evaluate(ISSUES_JS)
    shown = page.evaluate(SHOWN_JS)
    if issues is not None:
        assert (issues["nodes"], issues["media"], issues["run"]) == (0, [], False), issues
        shown = [t for t in shown if t != issues["overlay"]]
    assert [t for t in shown if not any(f in t for f in files)] == []
    assert page.get_by_role("button", name="Enter app mode").count() == 0
    assert page.evaluate("() => app.graph.nodes.length") == len(ui_workflow(name)["nodes"])
    page.evaluate(CLOSE_JS)
