"""Each template also opens as an app: ComfyUI's APP mode shows exactly the inputs and outputs its
``workflows/api/<name>.app.toml`` declares, with their labels, and runs as a person uses it.

In the real frontends that have APP mode (1.58.1, served with ``--front-end-root``; 1.48.7, which
ComfyUI 0.33 pins, when the tests run on that engine) each template is opened from the template
browser, as a user does, and the "App" button pressed: the form must list the declared labels in
order and nothing else (an input the frontend cannot resolve is left out of the form, so a count or
label mismatch shows it), the app's outputs must be the declared nodes, and the graph must still
queue its API twin. A screenshot of each app lands in ``test-artifacts/app_mode/<version>/``.

Each template is also run as a person uses its app (``APP_RUNS``): the photo (a PNG whose
transparent region is the mask) or the video and its mask uploaded through the app's own upload
button, the prompt typed, the numbers set, the files picked from the app's lists, Run pressed. The
prompt the app sends must be the template's API twin with exactly those changes; the server runs it
and the result must appear in the app's output area. The models are the engine tests' tiny or small
files under the names the template ships with (tests/test_family_templates.py and its siblings);
where a template's text encoder cannot be made tiny (4-24 B parameters from fixed configs), the test
hands the server the sent prompt with that encoder replaced by the engine test's own test-only node
(for the SAM3 templates also with the engine tests' detection threshold 0: a random detector scores
everything near the shipped 0.5) and the engine tests' cost cuts (2 latent steps, a 64 px crop, 4
pixel steps): what the person set is checked on what the app sent, before those changes. The test-only
node modules are written into the app server's custom_nodes (``TEST_ONLY_NODES``). A template whose
model class this engine lacks (Anima, Krea 2 on 0.3.75) or whose core nodes it lacks (SAM3) skips,
naming what is missing, before any model file is written.

A frontend without APP mode (1.32.9, the CI engine's own) must still open the same files as graphs,
without a warning.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import pytest

import tests.test_confined_templates as ct
import tests.test_family_templates as ft
import tests.test_sam3_templates as sam3
import tests.test_template_anima as anima
import tests.test_template_krea2 as krea2
import tests.test_template_wan22_5b as wan5b
from scripts.engine.comfy_engine import API_WORKFLOWS, WORKFLOWS, execution_error
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
from tests.support.tiny_sam3 import DEPTH_HOOK
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
EXAMPLES = REPO / "workflows" / "examples"
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
PROMPT = "a bowl of cherries, app mode"

STORE_JS = """() => {
  const s = document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia._s.get('appMode');
  return {inputs: s.selectedInputs.map((i) => [...i]), outputs: s.selectedOutputs.map(String), mode: s.viewMode};
}"""
WIDGET_ENDS_WITH_JS = """([n, w, f]) =>
  String(app.graph.getNodeById(n).widgets.find((x) => x.name === w).value).endsWith(f)"""
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


# The engine tests' test-only modules the app runs need in the server's custom_nodes, as (file name,
# source): the stand-ins for text encoders that cannot be made tiny (AppRun.stand_ins) and the hook
# that lets core's SAM3 loader build the small SAM 3.1 file's trunk depth.
TEST_ONLY_NODES = (
    ("blended_test_family_nodes.py", ft.TEST_NODE),
    ("blended_test_anima_conditioning.py", anima.TEST_NODE),
    ("blended_test_krea2_conditioning.py", krea2.TEST_NODE),
    ("blended_test_sam3_depth.py", DEPTH_HOOK),
)


@pytest.fixture(scope="module", params=sorted(FRONTENDS))
def frontend(request, tmp_path_factory):
    """A server with the example photos, the tiny ADM under the shipped file name, a tiny CLIP
    file and the engine tests' test-only nodes, and a page on the frontend under test (one at a
    time: one playwright session)."""
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
    (tmp / "base" / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for file_name, source in TEST_ONLY_NODES:
        (tmp / "base" / "custom_nodes" / file_name).write_text(source)
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


def app_field(page, label: str):
    return page.locator("[data-testid=app-mode-widget-item]").filter(
        has=page.locator("[data-testid=builder-widget-label]", has_text=re.compile(f"^{re.escape(label)}$")))


def upload(page, label: str, path: Path) -> None:
    """Through the input's own upload button (the icon beside its file list), as a person picks a file."""
    with page.expect_file_chooser() as chooser:
        app_field(page, label).locator("label:has(input[type=file])").first.click()
    chooser.value.set_files(str(path))


def type_number(page, label: str, value: int) -> None:
    box = app_field(page, label).locator("input[type=text], input[type=number], input:not([type])").first
    box.fill(str(value))
    box.press("Enter")


def pick(page, label: str, option: str) -> None:
    """A combo: its button opens the list, a click on the option picks it."""
    app_field(page, label).locator("button:not([data-testid=widget-actions-menu])").first.click()
    page.get_by_text(option, exact=True).last.click()


@dataclass(frozen=True)
class AppRun:
    """What a person does in one template's app, and what the test server needs for it.

    Keys are declared widgets ("<widget>", or "<node id>.<widget>" where the name occurs twice).
    ``uploads``: widget -> a tests/support/comfy_harness.write_inputs file, one ``inputs`` writes (it is
    given the same folder) or a workflows/examples one (or a path: that file), uploaded under a new
    name; ``texts`` typed, ``numbers`` entered, ``picks`` chosen in a list.
    ``models`` writes the template's model files, tiny or small, under the names it ships with, as its
    engine test does (where this engine has no class for the template's model, it skips as that test
    does, naming the class, before writing any file); ``stand_ins`` replaces, in the prompt the app
    sends, the text encoders that cannot be made tiny by the engine test's test-only nodes (and, for
    SAM3, sets the engine test's detection threshold 0: a random detector's scores sit at the shipped
    0.5). Neither touches what the person set."""
    uploads: dict
    texts: dict
    numbers: dict = field(default_factory=dict)
    picks: dict = field(default_factory=dict)
    models: Callable | None = None
    stand_ins: Callable | None = None
    inputs: Callable | None = None


def pixel_run(photo: str, prompt: str, extra: dict | None = None) -> AppRun:
    """The pixel templates: tiny ADM under the shipped name, the CLIP file picked in the app."""
    numbers = {"batch_size": 2, "top_k": 1, **(extra or {})}
    return AppRun(uploads={"image": photo}, texts={"prompt": prompt}, numbers=numbers, picks={"clip_name": TINY_CLIP})


def sd15_models(models: Path) -> None:
    from tests.support.sd15_fixture import write_random_sd15

    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_random_sd15(models / "checkpoints" / MY_SD15)


def latent_run(models, stand_ins=None, prompt_widget="text", **kw) -> AppRun:
    return AppRun(uploads={"image": "blended_object.png"}, texts={prompt_widget: PROMPT}, numbers={"batch_size": 1},
                  models=models, stand_ins=stand_ins, **kw)


MY_SD15 = "my_sd15_model.safetensors"
APP_RUNS = {
    "Blended - Object editing": pixel_run("blended_object.png", PROMPT),
    "Blended - New background": pixel_run("blended_subject.png", "a sandy beach, app mode"),
    "Blended - Scribble editing": pixel_run("blended_scribble.png", "a striped candy, app mode"),
    "Blended - Outpainting": pixel_run("blended_landscape.png", "a wooden table, app mode", {"right": 32}),
    "Blended - SD1.5 or SDXL edit": AppRun(
        uploads={"image": "blended_object.png"}, texts={"3.text": PROMPT, "prompt": "cherries"},
        numbers={"batch_size": 1, "top_k": 1}, picks={"ckpt_name": MY_SD15, "clip_name": TINY_CLIP},
        models=sd15_models),
    "Blended - SDXL edit": latent_run(ft.sdxl_models, prompt_widget="3.text"),
    "Blended - Flux.1 dev edit": latent_run(ft.flux_models, ft.flux_stand_ins, "4.text"),
    "Blended - Z-Image edit": latent_run(ft.z_image_models, ft.z_image_stand_ins, "5.text"),
    "Blended - Flux.2 dev edit": latent_run(ft.flux2_models, ft.flux2_stand_ins, "4.text"),
    "Blended - Qwen-Image-Edit": latent_run(ft.qwen_edit_models, ft.qwen_edit_stand_ins, "6.prompt"),
    "Blended - Qwen-Image-Edit, confined": AppRun(
        uploads={"image": "blended_object.png"}, texts={"8.prompt": "make the cup red, app mode"},
        models=partial(ft.qwen_edit_models, name=ft.QWEN_CONFINED), stand_ins=ft.qwen_edit_stand_ins),
    "Blended - Flux Kontext, confined": AppRun(
        uploads={"image": "blended_object.png"}, texts={"7.text": "make the cup red, app mode"},
        models=ct.kontext_models, stand_ins=ft.flux_stand_ins),
    "Blended - Wan 2.2 video edit": AppRun(
        uploads={"file": "blended_video.mp4", "3.image": "blended_video_mask.png"},
        texts={"7.text": "a red balloon, app mode"}, models=ft.wan_video_models, stand_ins=ft.wan_video_stand_ins),
    "Blended - Wan 2.2 5B video edit": AppRun(
        uploads={"file": "blended_video.mp4", "3.image": "blended_video_mask.png"},
        texts={"7.text": "a red balloon, app mode"}, models=wan5b.wan5b_models, stand_ins=ft.wan_video_stand_ins),
    "Blended - Anima edit": latent_run(anima.anima_models, anima.anima_stand_ins, "4.text"),
    "Blended - Krea 2 edit": latent_run(krea2.krea2_models, krea2.krea2_stand_ins, "4.text"),
    # SAM3's photo and video as its engine tests give them (what the random detector finds there)
    "Blended - Edit by description": AppRun(
        uploads={"image": EXAMPLES / "blended_object.png"},
        texts={"3.text": "the cup", "6.text": PROMPT, "14.prompt": "a bowl of cherries"},
        numbers={"batch_size": 2, "top_k": 1}, models=sam3.edit_by_description_models,
        stand_ins=sam3.edit_by_description_stand_ins),
    "Blended - Video edit by description": AppRun(
        uploads={"file": sam3.SHORT_CLIP}, texts={"4.text": "the cup", "10.text": "a red balloon, app mode"},
        models=sam3.video_by_description_models, stand_ins=sam3.video_by_description_stand_ins,
        inputs=sam3.write_short_clip),
}


def test_app_mode_every_template_has_its_run():
    """A template added without its app run would ship an app no test has used."""
    assert sorted(APP_RUNS) == TEMPLATES


def declared_widget(form: dict, key: str) -> tuple[str, str, str]:
    """(node, widget, label) of the declared input ``key``: a widget name, or "<node>.<widget>"."""
    node, _, widget = key.rpartition(".")
    (found,) = [i for i in form["inputs"] if i[1] == widget and (not node or i[0] == node)]
    return found


def saved_files(entry: dict, node: str) -> list[dict]:
    return [f for key, files in entry["outputs"].get(node, {}).items() if key != "text" for f in files]


@contextmanager
def sent_prompts(page, run: AppRun):
    """Records each prompt the app sends and hands the server the run's test version of it (stand-ins,
    cost cuts), as the engine tests change their graphs; yields the list of what the app sent."""
    sent = []

    def handle(route):
        body = json.loads(route.request.post_data)
        sent.append(copy.deepcopy(body["prompt"]))
        if run.stand_ins:
            run.stand_ins(body["prompt"])
        ft.cheapen(body["prompt"])
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/prompt", handle)
    try:
        yield sent
    finally:
        page.unroute("**/api/prompt", handle)


@pytest.mark.parametrize("name", sorted(APP_RUNS))
def test_app_mode_runs_as_a_person_uses_it(app_frontend, tmp_path, name):
    """Upload the photo (its transparent region is the mask), type the prompt, set the numbers and
    pick the files the app offers, press Run: the app sends the template's graph with exactly those
    changes, the server runs it on tiny models, and the result appears in the app's output area."""
    version, page, server = app_frontend
    run = APP_RUNS[name]
    api = api_workflow(name)
    skip_without_later_core_nodes(api, server.object_info(), name)
    form = read_declaration(name, api)
    with run_left_clean(server):
        write_inputs(tmp_path)
        if run.inputs:
            run.inputs(tmp_path)
        if run.models:
            run.models(server.base / "models")
        open_from_template_browser(page, name)
        if run.picks:  # files written for this run: the lists a person picks from are the server's now
            page.evaluate("() => app.refreshComboInNodes()")
        enter_app_mode(page)
        slug = re.sub(r"\W+", "_", name.lower())
        changes = {}  # (node, widget) -> the value the app must send
        try:
            for key, source in run.uploads.items():
                node, widget, label = declared_widget(form, key)
                source = tmp_path / source if (tmp_path / source).exists() else EXAMPLES / source
                path = Path(shutil.copy(source, tmp_path / f"app_{slug}_{widget}{source.suffix}"))
                upload(page, label, path)
                page.wait_for_function(WIDGET_ENDS_WITH_JS, arg=[int(node), widget, path.name], timeout=20_000)
                changes[node, widget] = path.name
            for key, text in run.texts.items():
                node, widget, label = declared_widget(form, key)
                app_field(page, label).locator("textarea").fill(text)
                changes[node, widget] = text
            for key, value in run.numbers.items():
                node, widget, label = declared_widget(form, key)
                type_number(page, label, value)
                changes[node, widget] = value
            for key, option in run.picks.items():
                node, widget, label = declared_widget(form, key)
                pick(page, label, option)
                changes[node, widget] = option
            before = set(server.get("/history"))
            with sent_prompts(page, run) as sent:
                page.locator("[data-testid=linear-run-button]").get_by_role("button", name="Run").click()
                for _ in range(40):  # the route handler runs while playwright waits
                    if sent:
                        break
                    page.wait_for_timeout(250)
            assert sent, f"{name}: Run sent no prompt"
            # the app sent the template's graph with exactly the person's changes
            expected = copy.deepcopy(api)
            for (node, widget), value in changes.items():
                expected[node]["inputs"][widget] = value
            assert without_engine_defaults(as_api(sent[0]), api, server.object_info()) == expected
            entry = finished_entry(server, before)
            error = execution_error(entry)
            assert error is None, f"{name}: {error['node_type']}: {error['exception_message']}"
            (out_node,) = [n for n, _ in form["outputs"] if api[n]["class_type"].startswith("Save")]
            files = saved_files(entry, out_node)
            assert files, f"{name}: the output node saved nothing: {entry['outputs']}"
            shown = page.locator(f"[data-testid=linear-center-panel] :is(img, video)[src*='{files[0]['filename']}']")
            try:
                shown.first.wait_for(timeout=60_000)
            finally:
                page.screenshot(path=str(ARTIFACTS / version / f"{name} run.png"))
            for node, _ in form["outputs"]:
                if node != out_node:
                    check_text_report(page, entry, node, ARTIFACTS / version / f"{name} report.png")
        finally:
            leave_app_mode(page)


def check_text_report(page, entry: dict, node: str, screenshot: Path) -> None:
    """A declared text output (the ranking's scores, the confined edit's "where it changed") is listed
    as a .txt result: a text item of the output strip; picked, as a person picks it, its text (fetched
    through /view) fills the output area, the file's name under it."""
    (report,) = [f for f in entry["outputs"][node].get("files", []) if f["filename"].endswith(".txt")]
    text = entry["outputs"][node]["text"][0]
    panel = page.locator("[data-testid=linear-center-panel]")
    panel.locator("[data-testid=linear-history-item], [data-testid=linear-in-progress-item]").filter(
        has=page.locator("i[class*='lucide--text']")).first.click()
    shown = panel.locator("article:not([data-testid])")
    page.wait_for_function("(el) => el.innerText.length > 0", arg=shown.element_handle(timeout=20_000))
    page.screenshot(path=str(screenshot))
    assert shown.inner_text() == text
    assert panel.get_by_text(report["filename"], exact=True).is_visible()


@contextmanager
def run_left_clean(server):
    """After each run: a prompt still on the server (a run that failed after Run was pressed) is
    cancelled, so the next test's history holds only its own; the models are unloaded; and the model
    files the run wrote are removed (each family's are 0.1-5 GB: the runs' files together would fill
    a CI disk)."""
    models = server.base / "models"
    kept = set(models.rglob("*"))
    try:
        yield
    finally:
        server.post("/queue", {"clear": True})
        server.post("/interrupt", {})
        for _ in range(120):
            if not server.get("/queue")["queue_running"]:
                break
            time.sleep(1)
        server.post("/free", {"unload_models": True, "free_memory": True})
        for path in set(models.rglob("*")) - kept:
            if path.is_file():
                path.unlink()


def finished_entry(server, before: set, timeout: float = 900) -> dict:
    """The history entry of the one prompt queued after ``before`` (/history lists finished ones)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        new = set(server.get("/history")) - before
        if new:
            (prompt_id,) = new
            return server.get("/history")[prompt_id]
        time.sleep(1)
    raise AssertionError(f"no run finished within {timeout:.0f} s")


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
