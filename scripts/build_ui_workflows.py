"""Build the UI-format workflows and their screenshots from the API-format ones.

    HF_HUB_OFFLINE=1 BLENDED_OFFLINE=1 .venv/bin/python scripts/build_ui_workflows.py

``workflows/api/<name>.api.json`` are the source of truth (the tests and ``run_edit.py`` execute them),
but a user drags the UI format onto the canvas. Writing that by hand means guessing the frontend's
widget order, link table and layout, so this tool lets the real frontend do it: it starts ComfyUI
(test images in a temp base dir, so the LoadImage combos hold the workflows' file names; the model
combos always list the names the workflows use), opens the bundled frontend in headless Chromium
(Debian's ``chromium``, driven by playwright), loads each API graph with ``app.loadApiJson``, lays the
nodes out left to right, checks that ``app.graphToPrompt()`` gives back the API graph, and writes
``app.graph.serialize()`` to ``workflows/<name>.json``, a screenshot to ``docs/images/<name>.png`` and
the template browser's thumbnail to ``workflows/<name>.jpg``.
Rerun it after editing an API workflow; ``tests/test_workflows_frontend.py`` fails until you do.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from scripts.comfy_engine import API_WORKFLOWS, WORKFLOWS, ComfyServer, prepare_base, prepare_engine  # noqa: E402

IMAGES = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# No first-run templates dialog; nothing drawn over the graph in the screenshots.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False,
            "Comfy.Graph.CanvasMenu": False}
VIEWPORT = {"width": 1600, "height": 900}

# Columns by longest path from a source, but a source sits just left of its nearest consumer; each
# column is ordered by (position of that consumer in its column, input slot), right to left, so links
# rarely cross or pass behind nodes. Sizes are the frontend's own.
LAYOUT_JS = """([gapX, gapY]) => {
  const nodes = [...app.graph.nodes].sort((a, b) => a.id - b.id), col = new Map(), targets = new Map();
  nodes.forEach((n) => targets.set(n.id, []));
  for (const t of nodes) (t.inputs ?? []).forEach((_, i) => { const s = t.getInputNode(i); if (s) targets.get(s.id).push([t, i]); });
  const depth = (n) => {
    if (!col.has(n.id)) {
      let d = 0;
      (n.inputs ?? []).forEach((_, i) => { const s = n.getInputNode(i); if (s) d = Math.max(d, depth(s) + 1); });
      col.set(n.id, d);
    }
    return col.get(n.id);
  };
  nodes.forEach(depth);
  for (const n of nodes) if (!(n.inputs ?? []).some((inp) => inp.link != null) && targets.get(n.id).length)
    col.set(n.id, Math.min(...targets.get(n.id).map(([t]) => col.get(t.id))) - 1);
  const last = Math.max(...col.values()), rank = new Map(), columns = [];
  for (let c = last; c >= 0; c--) {
    const key = (n) => {
      const near = targets.get(n.id).sort((a, b) => col.get(a[0].id) - col.get(b[0].id) || rank.get(a[0].id) - rank.get(b[0].id) || a[1] - b[1])[0];
      return near ? [rank.get(near[0].id), near[1]] : [0, 0];
    };
    const column = nodes.filter((n) => col.get(n.id) === c)
      .map((n) => [key(n), n]).sort(([a], [b]) => a[0] - b[0] || a[1] - b[1]).map(([, n]) => n);
    column.forEach((n, i) => rank.set(n.id, i));
    columns[c] = column;
  }
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  let x = 0;
  for (const column of columns.filter((c) => c.length)) {
    let y = title;
    for (const n of column) { n.pos = [x, y]; y += n.size[1] + title + gapY; }
    x += Math.round(Math.max(...column.map((n) => n.size[0]))) + gapX;
  }
  app.graph.setDirtyCanvas(true, true);
}"""  # noqa: E501

# Fit the whole graph into the canvas (also stored as the workflow's initial view, extra.ds).
FIT_JS = """() => {
  const c = app.canvas, el = c.canvas, r = window.devicePixelRatio || 1;
  const w = el.width / r, h = el.height / r, pad = 40, title = 2 * LiteGraph.NODE_TITLE_HEIGHT;  // + badge
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const { pos: [x, y], size: [bw, bh] } of app.graph.nodes) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y - title); x1 = Math.max(x1, x + bw); y1 = Math.max(y1, y + bh);
  }
  const s = Math.min((w - 2 * pad) / (x1 - x0), (h - 2 * pad) / (y1 - y0), 1);
  c.ds.scale = s;
  c.ds.offset = [(w / s - (x1 - x0)) / 2 - x0, (h / s - (y1 - y0)) / 2 - y0];
  c.setDirty(true, true);
}"""

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
PREVIEW_WIDGETS = {"video-preview"}


def as_api(output: dict) -> dict:
    """graphToPrompt's output without the _meta titles and preview widgets, comparable to an .api.json."""
    def inputs(v):
        return {n: x for n, x in v["inputs"].items() if n not in PREVIEW_WIDGETS}

    return {k: {"class_type": v["class_type"], "inputs": inputs(v)} for k, v in output.items()}


@contextmanager
def comfy_frontend(root: Path, port: int | None = None, examples: bool = False, test_inputs: bool = True):
    """A ComfyUI server with input images (the shipped examples, the tests' small ones, or with
    ``test_inputs=False`` only what the pack itself copies into ``root/base/input``), and a
    Chromium page on its frontend with the app ready."""
    from comfy_harness import write_inputs
    from playwright.sync_api import sync_playwright

    engine = prepare_engine(root / "ComfyUI")
    base = prepare_base(root / "base")
    if examples:  # the screenshots preview the photos a user gets
        shutil.copytree(WORKFLOWS / "examples", base / "input", dirs_exist_ok=True)
    elif test_inputs:
        write_inputs(base / "input")
    (base / "user" / "default").mkdir(parents=True, exist_ok=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(SETTINGS))
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1")
    # BLENDED_FRONTEND_ROOT: another comfyui-frontend-package's static/ folder, to try a frontend
    # release against this engine without installing it (docs/DESIGN.md, "ComfyUI versions").
    extra = ["--front-end-root", os.environ["BLENDED_FRONTEND_ROOT"]] if os.environ.get("BLENDED_FRONTEND_ROOT") else []
    with ComfyServer(engine, base, port=port, env=env, log_path=root / "comfyui.log", cpu=True,
                     extra_args=extra) as server:
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


def api_names() -> list[str]:
    return sorted(p.name[: -len(".api.json")] for p in API_WORKFLOWS.glob("*.api.json"))


def write_thumbnail(screenshot: Path, dest: Path) -> None:
    """The template browser shows ``<name>.jpg`` beside ``<name>.json``: the graph, at half size."""
    from PIL import Image

    with Image.open(screenshot) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2), Image.LANCZOS).save(dest, quality=85, optimize=True)


def build(page, name: str) -> None:
    api = json.loads((API_WORKFLOWS / f"{name}.api.json").read_text())
    page.evaluate("([api, name]) => app.loadApiJson(api, name)", [api, name])
    page.evaluate(RESTORE_JS, api)
    page.wait_for_timeout(500)  # the LoadImage preview sizes its node
    page.evaluate(LAYOUT_JS, [80, 30])
    page.evaluate(FIT_JS)
    got = as_api(page.evaluate(PROMPT_JS))
    if got != api:
        raise SystemExit(f"{name}: the frontend's graph does not reproduce the API workflow:\n"
                         f"{json.dumps(got, indent=1)}")
    # Through JSON.stringify, as the frontend saves it: undefined fields vanish instead of becoming null.
    ui = json.loads(page.evaluate("() => JSON.stringify(app.graph.serialize())"))
    ui["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-blended-diffusion/{name}"))  # stable diffs
    (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
    page.wait_for_timeout(300)
    page.screenshot(path=str(IMAGES / f"{name}.png"))
    write_thumbnail(IMAGES / f"{name}.png", WORKFLOWS / f"{name}.jpg")
    print(f"wrote workflows/{name}.json, workflows/{name}.jpg and docs/images/{name}.png")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    names = api_names()
    with tempfile.TemporaryDirectory(prefix="blended-ui-") as tmp, comfy_frontend(Path(tmp), examples=True) as page:
        page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleFocusMode')")  # canvas only
        for name in names:
            build(page, name)


if __name__ == "__main__":
    main()
