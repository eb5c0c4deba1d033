"""What each template shows in ComfyUI's APP mode: the few inputs a person changes and the outputs
they look at, with labels they understand, declared in ``workflows/api/<name>.app.toml``.

APP mode (frontend 1.41.13 and later; 1.48.7 with ComfyUI 0.33, 1.58.1) hides the graph and shows a
form built from the workflow's ``extra.linearData``, read by the frontend's ``appModeStore``
(``src/stores/appModeStore.ts``; the schema is ``zExtra`` in ``workflowSchema.ts``)::

    "linearData": {"inputs": [[node id, widget name], ...], "outputs": [node id, ...]}

Each input is a widget of a node (the frontend draws that widget: an image upload with its mask
editor, a text box, a number), each output a node whose results fill the output area (images, a
video, text). Both frontends turn ``[node id, widget name]`` into their own widget id when the file
loads (``upgradeAndValidateInput``), so the file does not depend on the graph's id. The label the
form shows is the widget's own label (``widget.label || widget.name``); the frontend stores it on the
node's input slot (``inputs[i].label``) and restores it on load, so the graph shows it as well.
The outputs carry no label in ``linearData``: an output's label becomes its node's title, which the
graph and the app builder's output list show.

A declaration names each widget as ``"<class type>.<input>"`` (the type must occur once in the
graph) or ``"<node id>.<input>"`` (for a type that occurs twice, such as the two text encoders), and
each output as ``"<class type>"`` or ``"<node id>"``. The order is the form's order. Every name is
checked against the API workflow: an input must be a literal widget value (not a link), so the app
never offers a control the graph does not read.
"""

from __future__ import annotations

import tomllib

from scripts.engine.comfy_engine import API_WORKFLOWS, REPO, is_link

# Told to a person in each template's "Read me first" note (build_ui_workflows.note_text).
APP_NOTE = ("As an app: switch the view from Graph to App (top left; ComfyUI frontend 1.41 or later) to see "
            "only the photo, prompt and results.")


def declaration_path(name: str):
    return API_WORKFLOWS / f"{name}.app.toml"


def _node_id(api: dict, ref: str, where: str) -> str:
    """The API node id a declaration's ``ref`` (a class type or a node id) names."""
    if ref in api:
        return ref
    ids = [k for k, v in api.items() if v["class_type"] == ref]
    if len(ids) != 1:
        found = "no node" if not ids else f"{len(ids)} nodes ({', '.join(sorted(ids, key=int))})"
        raise SystemExit(f"{where}: '{ref}' names {found} of the graph; use a class type that occurs once "
                         "or a node id")
    return ids[0]


def read_declaration(name: str, api: dict) -> dict:
    """The checked declaration of template ``name`` (``parse_declaration``)."""
    path = declaration_path(name)
    where = str(path.relative_to(REPO))
    if not path.is_file():
        raise SystemExit(f"{where} is missing: each template declares what its app shows "
                         "([inputs] \"<class type>.<input>\" = \"label\", [outputs] \"<class type>\" = \"label\"; "
                         "see scripts/templates/app_form.py)")
    with path.open("rb") as f:
        return parse_declaration(tomllib.load(f), api, where)


def parse_declaration(declared: dict, api: dict, where: str) -> dict:
    """``{"inputs": [[id, widget, label], ...], "outputs": [[id, label], ...]}`` from a parsed
    declaration, each name checked against the API workflow ``api``."""
    if set(declared) != {"inputs", "outputs"} or not declared["inputs"] or not declared["outputs"]:
        raise SystemExit(f"{where}: needs exactly an [inputs] and an [outputs] table, neither empty "
                         f"(it has {sorted(declared)})")
    inputs = []
    for key, label in declared["inputs"].items():
        ref, _, widget = key.rpartition(".")
        node = _node_id(api, ref, where)
        value = api[node]["inputs"].get(widget)
        if value is None or is_link(value):
            widgets = sorted(k for k, v in api[node]["inputs"].items() if not is_link(v))
            raise SystemExit(f"{where}: '{key}' is not a widget of node {node} ({api[node]['class_type']}): "
                             f"its widgets are {widgets}")
        inputs.append([node, widget, label])
    outputs = [[_node_id(api, ref, where), label] for ref, label in declared["outputs"].items()]
    return {"inputs": inputs, "outputs": outputs}


def linear_data(form: dict) -> dict:
    """``extra.linearData`` as the frontends read it (numeric node ids, as the graph's nodes have)."""
    return {"inputs": [[int(node), widget] for node, widget, _ in form["inputs"]],
            "outputs": [int(node) for node, _ in form["outputs"]]}


# Labels the declared widgets (on the widget and on its input slot, where the frontend saves and
# restores a label), titles the output nodes, and stores the form in the graph's extra.linearData.
# Returns what it could not find (nothing, when the frontend's graph has every declared widget).
APP_JS = """([form, linear]) => {
  const missing = [];
  for (const [id, name, label] of form.inputs) {
    const node = app.graph.getNodeById(+id);
    const widget = node?.widgets?.find((w) => w.name === name);
    const slot = node?.inputs?.find((i) => i.widget?.name === name);
    if (!widget || !slot) { missing.push(`${id}.${name}`); continue; }
    widget.label = label;
    slot.label = label;
  }
  for (const [id, label] of form.outputs) {
    const node = app.graph.getNodeById(+id);
    if (!node) { missing.push(String(id)); continue; }
    node.title = label;
  }
  app.graph.extra.linearData = linear;
  app.graph.setDirtyCanvas(true, true);
  return missing;
}"""
