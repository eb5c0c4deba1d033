"""Build the UI-format templates, their cards and screenshots from the API-format workflows.

    HF_HUB_OFFLINE=1 BLENDED_OFFLINE=1 .venv/bin/python -m scripts.templates.build_ui_workflows [NAME ...]

``workflows/api/<name>.api.json`` are the source of truth (the tests and ``run_edit.py`` execute them),
but a user opens the UI format from the template browser or drags it onto the canvas. Writing that by
hand means guessing the frontend's widget order, link table and sizes, so this tool lets the real
frontend do it: it starts ComfyUI (the example photos in a temp base dir), opens the bundled frontend
in headless Chromium (Debian's ``chromium``, driven by playwright) at 1600x1000, loads each API
graph with ``app.loadApiJson``, lays it out in titled stages with a "Read me first" note from
``workflows/api/<name>.note.md`` (``scripts/templates/layout.py``), gives it its app for ComfyUI's APP
mode from ``workflows/api/<name>.app.toml`` (``extra.linearData``, the inputs' labels and the outputs'
titles; ``scripts/templates/app_form.py``), checks that
``app.graphToPrompt()`` gives back the API graph, and writes ``app.graph.serialize()`` to
``workflows/<name>.json``, the template browser's card to ``workflows/<name>.jpg``
(``scripts/templates/cards.py``) and a screenshot to ``docs/images/<slug>.png``.

``<name>`` is the card's title: both frontends title a custom node pack's template by its file name.
Rerun this after editing an API workflow; ``tests/test_workflows_frontend.py`` fails until you do.
With names, only those templates are built (the others' files stay as they are).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from scripts.engine.comfy_engine import API_WORKFLOWS, WORKFLOWS, ComfyServer, prepare_base, prepare_engine
from scripts.templates.app_form import APP_JS, APP_NOTE, linear_data, read_declaration
from scripts.templates.cards import write_card
from scripts.templates.layout import FIT_JS, LAYOUT_JS, VISIBLE_JS, plan

REPO = Path(__file__).resolve().parents[2]

IMAGES = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A user's settings, but for the first-run templates dialog: the views are fitted around the panels
# and floating bars a user has (minimap, zoom controls), and the screenshots show them.
SETTINGS = {"Comfy.TutorialCompleted": True}
# The window the readability test opens the templates in (a laptop-sized screen).
VIEWPORT = {"width": 1600, "height": 1000}

# Put the API graph's literal inputs back into the widgets, by name (the frontend may have replaced a
# combo value it did not list), and make the seed reproducible: "fixed" instead of "randomize".
RESTORE_JS = """(api) => {
  for (const [id, node] of Object.entries(api)) {
    const n = app.graph.getNodeById(+id);
    for (const [name, value] of Object.entries(node.inputs))
      if (!Array.isArray(value)) { const w = n.widgets?.find((w) => w.name === name); if (w) w.value = value; }
    for (const w of n.widgets ?? []) if (w.name === "control_after_generate") w.value = "fixed";
  }
}"""

PROMPT_JS = "async () => (await app.graphToPrompt()).output"


# Widgets the frontend adds for its own previews and sends along (the server ignores them); whether
# LoadVideo's appears depends on when its preview loaded, so they are not part of a workflow.
# PreviewAny ("Preview as Text") gets a "preview" text box for what it shows.
PREVIEW_WIDGETS = {"video-preview"}
PREVIEW_WIDGETS_OF = {"PreviewAny": {"preview"}}


def as_api(output: dict) -> dict:
    """graphToPrompt's output without the _meta titles and preview widgets, comparable to an .api.json."""
    def inputs(v):
        skip = PREVIEW_WIDGETS | PREVIEW_WIDGETS_OF.get(v["class_type"], set())
        return {n: x for n, x in v["inputs"].items() if n not in skip}

    return {k: {"class_type": v["class_type"], "inputs": inputs(v)} for k, v in output.items()}


def without_engine_defaults(prompt: dict, api: dict, object_info: dict) -> dict:
    """``prompt`` less the inputs the API twin leaves out that the engine's node declares optional and
    that hold exactly their declared default. A core node may gain a widget in a newer ComfyUI (0.33's
    CreateVideo ``bit_depth``); the frontend queues it at its default, which is what the engine gives
    the twin that omits it, so the UI file still queues what the twin says. Any other difference (a
    shifted widget value, a changed link, a non-default value) is kept and shows as drift."""
    out = {}
    for node_id, node in prompt.items():
        twin = api.get(node_id, {}).get("inputs", {})
        spec = object_info.get(node["class_type"], {}).get("input", {}).get("optional", {})
        added = {name for name, value in node["inputs"].items()
                 if name not in twin and name in spec and len(spec[name]) > 1
                 and "default" in spec[name][1] and value == spec[name][1]["default"]}
        out[node_id] = {**node, "inputs": {k: v for k, v in node["inputs"].items() if k not in added}}
    return out


@contextmanager
def comfy_server(root: Path, port: int | None = None, examples: bool = False, test_inputs: bool = True,
                 frontend_root: str | None = None, settings: dict | None = None):
    """A ComfyUI server with input images (the shipped examples, the tests' small ones, or with
    ``test_inputs=False`` only what the pack itself copies into ``root/base/input``); the user's
    frontend settings are ``settings`` (default: ``SETTINGS``)."""
    from tests.support.comfy_harness import write_inputs

    engine = prepare_engine(root / "ComfyUI")
    base = prepare_base(root / "base")
    if examples:  # the screenshots preview the photos a user gets
        shutil.copytree(WORKFLOWS / "examples", base / "input", dirs_exist_ok=True)
    elif test_inputs:
        write_inputs(base / "input")
    (base / "user" / "default").mkdir(parents=True, exist_ok=True)
    user_settings = SETTINGS if settings is None else settings
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(user_settings))
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1")
    # Another comfyui-frontend-package's static/ folder (or BLENDED_FRONTEND_ROOT), to run a frontend
    # release against this engine without installing it (docs/DESIGN.md, "ComfyUI versions").
    frontend_root = frontend_root or os.environ.get("BLENDED_FRONTEND_ROOT")
    extra = ["--front-end-root", str(frontend_root)] if frontend_root else []
    with ComfyServer(engine, base, port=port, env=env, log_path=root / "comfyui.log", cpu=True,
                     extra_args=extra) as server:
        yield server


@contextmanager
def browser_page(server: ComfyServer):
    """A headless Chromium page on the server's frontend, the app ready."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            # Offline: the frontend's calls to api.comfy.org etc. are refused at once.
            page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
            page.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
            page.goto(server.url)
            page.wait_for_function("window.app?.graph && window.app.vueAppReady", timeout=120_000)
            yield page
        finally:
            browser.close()


@contextmanager
def comfy_frontend(root: Path, port: int | None = None, examples: bool = False, test_inputs: bool = True,
                   frontend_root: str | None = None, settings: dict | None = None):
    """``comfy_server`` and a ``browser_page`` on it."""
    with comfy_server(root, port, examples, test_inputs, frontend_root, settings) as server, \
            browser_page(server) as page:
        yield page


def api_names() -> list[str]:
    return sorted(p.name[: -len(".api.json")] for p in API_WORKFLOWS.glob("*.api.json"))


def screenshot_slug(name: str) -> str:
    """The README links the screenshots: names without spaces."""
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_")


def note_text(name: str) -> str:
    path = API_WORKFLOWS / f"{name}.note.md"
    if not path.is_file():
        raise SystemExit(f"{path.relative_to(REPO)} is missing: each template needs its two or three lines "
                         "for the 'Read me first' note (what to do first, where the model files go, what comes out)")
    return f"{path.read_text().strip()}\n{APP_NOTE}"


def visible_area(page) -> list[int]:
    """The uncovered canvas, measured on an empty graph (a graph's own DOM widgets would count)."""
    page.evaluate("() => app.graph.clear()")
    page.wait_for_timeout(300)
    return page.evaluate(VISIBLE_JS)


def check_app_saved(ui: dict, form: dict, name: str) -> None:
    """The saved file carries the app: ``extra.linearData`` and each declared widget's label on its input slot."""
    if ui.get("extra", {}).get("linearData") != linear_data(form):
        raise SystemExit(f"{name}: the frontend did not save extra.linearData: {ui.get('extra')}")
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    for node, widget, label in form["inputs"]:
        saved = [i.get("label") for i in nodes[node].get("inputs", []) if i.get("widget", {}).get("name") == widget]
        if saved != [label]:
            raise SystemExit(f"{name}: the frontend saved {saved} as the label of {node}.{widget}, not {label!r}")


def build(page, server: ComfyServer, base: Path, name: str, visible: list[int]) -> None:
    api = json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())
    page.evaluate("([api, name]) => app.loadApiJson(api, name)", [api, name])
    page.evaluate(RESTORE_JS, api)
    form = read_declaration(name, api)
    missing = page.evaluate(APP_JS, [form, linear_data(form)])
    if missing:
        raise SystemExit(f"{name}: the frontend's graph has no widget or node {missing} that the app declares")
    page.wait_for_timeout(500)  # the LoadImage preview sizes its node
    x0, y0, x1, y1 = visible
    # The newest frontends fit the nodes into 75% of a canvas about 1583x981 at this window size.
    fitted = page.evaluate(LAYOUT_JS, [plan(api), note_text(name), [min(x1 - x0, 1583), min(y1 - y0, 981)]])
    runs = "row" if fitted["across"] else "column"
    print(f"{name}: visible {x1 - x0}x{y1 - y0} px, {fitted['lines']} {runs}(s), fit {fitted['scale']:.3f}")
    page.evaluate(FIT_JS, [x0, y0, x1, y1])
    got = without_engine_defaults(as_api(page.evaluate(PROMPT_JS)), api, server.object_info())
    if got != api:
        raise SystemExit(f"{name}: the frontend's graph does not reproduce the API workflow:\n"
                         f"{json.dumps(got, indent=1)}")
    # Through JSON.stringify, as the frontend saves it: undefined fields vanish instead of becoming null.
    ui = json.loads(page.evaluate("() => JSON.stringify(app.graph.serialize())"))
    ui["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-blended-diffusion/{name}"))  # stable diffs
    check_app_saved(ui, form, name)
    (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
    page.wait_for_timeout(300)
    page.screenshot(path=str(IMAGES / f"{screenshot_slug(name)}.png"))
    write_card(server, base, api, WORKFLOWS / f"{name}.jpg")
    print(f"wrote workflows/{name}.json, workflows/{name}.jpg and docs/images/{screenshot_slug(name)}.png")


def main(names: list[str] | None = None) -> None:
    unknown = sorted(set(names or ()) - set(api_names()))
    if unknown:
        raise SystemExit(f"no workflows/api/<name>.api.json for {unknown}; the templates are {api_names()}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="blended-ui-") as tmp:
        with comfy_server(Path(tmp), examples=True) as server, browser_page(server) as page:
            visible = visible_area(page)
            for name in names or api_names():
                build(page, server, Path(tmp) / "base", name, visible)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
