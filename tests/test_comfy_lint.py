"""comfy-lint (PyPI) over every shipped API-format workflow, against the schema of the engine the
tests run: its own /object_info dumped by the test server, plus the recorded schemas of third-party
nodes that are not installed in CI (tests/data: Acly's tooling nodes for the Krita graphs).

Workflows are found by walking workflows/, so a new API graph anywhere below it is linted without
touching this file; UI-format files (ComfyUI's templates, with "nodes" and "links") are skipped
because comfy-lint reads the API format only.

A template whose note says "Needs ComfyUI X or newer" (or "or later", read by the main job's
``template_needs.declared_need``; Krea 2's: CLIPLoader type ``krea2``, which 0.3.75 does not offer) is
linted as everything else on an engine of that release or newer; on an older one, and only there, a
combo value that engine does not list is the documented requirement, not an error. Every other rule
still applies to it there (links, node types, fields, types)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.engine.comfy_engine import REPO, WORKFLOWS, engine_source, engine_version
from scripts.engine.template_needs import declared_need
from tests.support.later_core_nodes import LATER_CORE_NODES

DATA = Path(__file__).resolve().parent / "data"
# Graphs name the user's model files (an SD checkpoint, the OpenAI ADM); the test server has tiny
# models under other names, so a combo value that names a model file is not a lint error here.
MODEL_FILES = (".safetensors", ".pt", ".ckpt", ".pth", ".bin", ".sft")


def is_api_format(graph) -> bool:
    return isinstance(graph, dict) and bool(graph) and all(
        isinstance(n, dict) and "class_type" in n for n in graph.values())


def api_workflows() -> list[Path]:
    return sorted(p for p in WORKFLOWS.rglob("*.json") if is_api_format(json.loads(p.read_text())))


def needed_comfyui(path: Path) -> tuple[int, ...] | None:
    """The ComfyUI release a template's note (``<name>.note.md`` beside ``<name>.api.json``) says on
    its first line that the template needs, or None; read as the main job reads it."""
    if not path.name.endswith(".api.json"):
        return None
    need = declared_need(path.name.removesuffix(".api.json"), path.parent)
    return need.release if need else None


def newer_than_engine(path: Path) -> bool:
    """Whether ``path`` is a template for a newer ComfyUI than the one the tests run."""
    needed = needed_comfyui(path)
    return needed is not None and engine_version(engine_source()) < needed


def recorded_schemas() -> dict:
    nodes = {}
    for path in sorted(DATA.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("nodes"), dict):
            nodes.update(data["nodes"])
    return nodes


def comfy_lint() -> str:
    found = Path(sys.executable).with_name("comfy-lint")
    return str(found) if found.exists() else shutil.which("comfy-lint")


@pytest.fixture(scope="module")
def schema_file(comfy, tmp_path_factory) -> Path:
    engine = comfy.server.object_info()
    extra = recorded_schemas()
    assert not set(extra) & set(engine), "recorded nodes are installed here: lint against those instead"
    path = tmp_path_factory.mktemp("lint") / "object_info.json"
    path.write_text(json.dumps({**engine, **extra}))
    return path


def lint(paths: list[Path], schema: Path) -> tuple[int, dict]:
    done = subprocess.run([comfy_lint(), *map(str, paths), "--schema-cache", str(schema), "--strict", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    return done.returncode, json.loads(done.stdout)


def test_the_walk_finds_every_kind_of_shipped_graph():
    names = {p.relative_to(WORKFLOWS).as_posix() for p in api_workflows()}
    assert "api/Blended - Object editing.api.json" in names
    assert "api/Blended - SD1.5 or SDXL edit.api.json" in names
    assert {"krita/blended_selection_edit.json", "krita/blended_latent_selection_edit.json"} <= names
    assert {"distributed/blended_distributed_best_of_n.api.json",
            "distributed/blended_latent_distributed_best_of_n.api.json"} <= names
    assert not any("/" not in n for n in names), "UI-format templates are not API graphs"


def test_every_shipped_api_workflow_is_lint_clean(schema_file):
    paths = api_workflows()
    code, report = lint(paths, schema_file)
    graphs = {f["path"]: json.loads((REPO / f["path"]).read_text()) for f in report["files"]}
    engine = set(json.loads(schema_file.read_text()))
    problems = [f"{f['path']}:{d['node_id']}:{d['field']} {d['rule']} {d['message']}"
                for f in report["files"] for d in f["diagnostics"]
                if not (d["rule"] == "invalid-enum" and
                        (str(graphs[f["path"]][d["node_id"]]["inputs"][d["field"]]).endswith(MODEL_FILES)
                         or newer_than_engine(REPO / f["path"])))
                and not is_a_later_core_node(d, engine)]
    assert (problems, report["unreadable"]) == ([], []), "\n".join(problems)
    assert code in (0, 1)
    assert report["summary"]["files"] == len(paths)


def is_a_later_core_node(diagnostic: dict, engine: set[str]) -> bool:
    """A core node of a later ComfyUI (SAM3, 0.33) that this engine lacks: the templates that use it say
    so in their note (tests/support/later_core_nodes.py); any other unknown node is still a problem."""
    return (diagnostic["rule"] == "unknown-node" and diagnostic.get("class_type") in LATER_CORE_NODES
            and diagnostic["class_type"] not in engine)


def test_only_a_later_core_node_the_engine_lacks_is_excused():
    unknown = {"rule": "unknown-node", "class_type": "SAM3_Detect"}
    assert is_a_later_core_node(unknown, {"LoadImage"})
    assert not is_a_later_core_node(unknown, {"LoadImage", "SAM3_Detect"})  # 0.33 lints its inputs instead
    assert not is_a_later_core_node({"rule": "unknown-node", "class_type": "SAM4_Detect"}, {"LoadImage"})
    assert not is_a_later_core_node({"rule": "dangling-link", "class_type": "SAM3_Detect"}, {"LoadImage"})


def test_a_planted_broken_link_fails_the_lint(schema_file, tmp_path):
    for source in api_workflows():
        graph = json.loads(source.read_text())
        node_id, name = next((k, i) for k, n in graph.items() for i, v in n["inputs"].items()
                             if isinstance(v, list))
        graph[node_id]["inputs"][name] = ["404", 0]
        broken = tmp_path / source.name
        broken.write_text(json.dumps(graph))
        code, report = lint([broken], schema_file)
        rules = [(d["node_id"], d["field"], d["rule"]) for d in report["files"][0]["diagnostics"]]
        assert code == 1 and (node_id, name, "dangling-link") in rules, (source, rules)


def test_only_a_template_whose_note_names_a_newer_comfyui_is_allowed_its_combo_values():
    api = WORKFLOWS / "api"
    assert needed_comfyui(api / "Blended - Krea 2 edit.api.json") == (0, 33)
    assert needed_comfyui(api / "Blended - Object editing.api.json") is None
    assert needed_comfyui(WORKFLOWS / "krita" / "blended_selection_edit.json") is None
    assert newer_than_engine(api / "Blended - Krea 2 edit.api.json") == (engine_version(engine_source()) < (0, 33))
