"""Rules the code must keep, checked by the test command like any behaviour: ruff clean under
pyproject.toml's [tool.ruff] (pyflakes, pycodestyle, isort), and the library below the node layer
(docs/DESIGN.md, "Layers")."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_library_never_imports_comfyui():
    """Every blended.* module imported in a fresh interpreter: nothing of ComfyUI gets loaded."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        sys.path.insert(0, {str(ROOT)!r})
        import blended
        names = [m.name for m in pkgutil.walk_packages(blended.__path__, "blended.")]
        for name in names:
            importlib.import_module(name)
        comfy = sorted(m for m in sys.modules if m.split(".")[0] in
                       ("comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "latent_preview"))
        assert not comfy, comfy
        print(len(names))
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert int(run.stdout.strip()) >= 20  # every module was imported, not an empty package


def test_latent_node_executes_are_a_few_lines_over_one_call():
    """Every node ``execute`` in nodes/latent_nodes.py, signature to last line with its docstring, fits in
    20 lines: the work is in the library and in nodes/latent_sampling.py (docs/DESIGN.md, "Layers")."""
    import ast

    tree = ast.parse((ROOT / "nodes" / "latent_nodes.py").read_text(encoding="utf-8"))
    lengths = {node.name: item.end_lineno - item.lineno + 1 for node in tree.body if isinstance(node, ast.ClassDef)
               for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "execute"}
    assert {"BlendedLatentSampler", "BlendedLatentSamplerObject", "BlendedLatentStitch"} <= set(lengths)
    assert all(n <= 20 for n in lengths.values()), lengths
