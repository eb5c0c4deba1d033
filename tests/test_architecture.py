"""The library's shape (docs/DESIGN.md "Layers"): two wings over a shared core, no import cycle."""

from __future__ import annotations

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
