"""The library's shape (docs/DESIGN.md "Layers"): two wings over a shared core, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from scripts.dev.import_structure import cross_wing_imports, cycles, import_graph, upward_imports

ROOT = Path(__file__).resolve().parents[1]


def test_library_has_no_import_cycle():
    assert cycles(import_graph("blended", ROOT)) == []


def test_wings_never_import_each_other_and_the_core_imports_neither():
    graph = import_graph("blended", ROOT)
    assert {"blended.pixel.sampler", "blended.latent.blend"} <= set(graph)  # the wings are where we think
    assert cross_wing_imports(graph) == []
    assert upward_imports(graph) == []


def test_the_checker_sees_a_cycle_and_a_wing_crossing(tmp_path):
    """The rules above can fail: a planted cycle and a pixel -> latent import are reported."""
    lib = tmp_path / "blended"
    for folder in (lib, lib / "pixel", lib / "latent"):
        folder.mkdir()
        (folder / "__init__.py").write_text("")
    (lib / "a.py").write_text("from . import b\n")
    (lib / "b.py").write_text("from .a import x\n")
    (lib / "pixel" / "loop.py").write_text("from ..latent import blend\nfrom .. import a\n")
    (lib / "latent" / "blend.py").write_text("")
    (lib / "masks.py").write_text("from .pixel.loop import y\n")
    graph = import_graph("blended", tmp_path)
    assert cycles(graph) == [["blended.a", "blended.b"]]
    assert cross_wing_imports(graph) == [("blended.pixel.loop", "blended.latent.blend")]
    assert upward_imports(graph) == [("blended.masks", "blended.pixel.loop")]


def execute_lengths() -> dict[str, int]:
    """Lines of each node class's ``execute`` (signature to last line, docstring included)."""
    found = {}
    for path in sorted((ROOT / "nodes").glob("*.py")):
        for cls in ast.parse(path.read_text()).body:
            if isinstance(cls, ast.ClassDef):
                for fn in cls.body:
                    if isinstance(fn, ast.FunctionDef) and fn.name == "execute":
                        found[f"{path.name}:{cls.name}"] = fn.end_lineno - fn.lineno + 1
    return found


def registered_nodes() -> set[str]:
    """The class names in ``nodes/extension.py``'s ``NODES``: the nodes ComfyUI gets (read, not imported)."""
    for statement in ast.parse((ROOT / "nodes" / "extension.py").read_text()).body:
        if isinstance(statement, ast.Assign) and [t.id for t in statement.targets] == ["NODES"]:
            return {element.id for element in statement.value.elts}
    raise AssertionError("no NODES list in nodes/extension.py")


def test_every_node_execute_is_at_most_20_lines():
    lengths = execute_lengths()
    assert len(registered_nodes()) >= 16 and registered_nodes() <= {name.split(":")[1] for name in lengths}
    assert {name: n for name, n in lengths.items() if n > 20} == {}


def test_the_main_job_script_is_at_most_200_lines():
    assert len((ROOT / "scripts" / "cli" / "run_edit.py").read_text().splitlines()) <= 200


def long_functions(package: str, limit: int) -> dict[str, int]:
    """Functions and methods under ``package`` longer than ``limit`` lines (signature to last line)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.end_lineno - fn.lineno + 1 > limit:
                found[f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}"] = fn.end_lineno - fn.lineno + 1
    return found


def test_no_library_function_is_over_60_lines():
    """One idea per function: checks, planning and the loop of a phase each get their own."""
    assert long_functions("blended", 60) == {}
    assert len(long_functions("blended", 0)) > 100  # the walk sees the functions at all
