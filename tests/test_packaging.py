"""The Comfy Registry archive, built by comfy-cli's own `comfy node pack`, holds only what ComfyUI
runs, and the pack imports from it with nothing of its own on sys.path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMFY_CLI = Path(sys.executable).parent / "comfy"
RUNTIME_DIRS = {"blended", "locales", "nodes", "web", "workflows"}
RUNTIME_FILES = {"__init__.py", "README.md", "pyproject.toml", "requirements.txt", "LICENSE"}
DEVELOPMENT = ("tests/", "benchmarks/", "scripts/", ".ci/", "docs/")


def repository_files() -> list[str]:
    """Tracked plus untracked-but-not-ignored files: what a commit of this working tree holds."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e}): the archive is built from git-tracked files")
    return sorted(p for p in out.decode().split("\0") if p and (ROOT / p).is_file())


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """`comfy node pack` run in a fresh git repository holding this working tree's files."""
    assert COMFY_CLI.is_file(), "comfy-cli is a test dependency: pip install -r requirements-test.txt"
    files = repository_files()
    work = tmp_path_factory.mktemp("pack") / "comfyui-blended-diffusion"
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, work / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    run = subprocess.run([str(COMFY_CLI), "--skip-prompt", "--no-enable-telemetry", "node", "pack"],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(work / "node.zip") as z:
        names = sorted(z.namelist())
    return work, files, names


def test_archive_holds_exactly_the_runtime_files(archive):
    _, files, names = archive
    expected = sorted(p for p in files if p.split("/")[0] in RUNTIME_DIRS or p in RUNTIME_FILES)
    assert names == expected
    assert not [n for n in names if n.startswith(DEVELOPMENT)]
    needed_files = ("__init__.py", "pyproject.toml", "requirements.txt", "nodes/extension.py",
                    "blended/pixel/sampler.py")
    for needed in needed_files:
        assert needed in names


def test_pack_imports_from_the_archive_without_touching_sys_path(archive, tmp_path):
    """Loaded the way ComfyUI loads a custom node folder (a package named after the folder, which
    has a hyphen), from outside the repository: the node layer finds the library relatively, and
    neither a top-level ``blended`` nor a new sys.path entry appears."""
    work, _, _ = archive
    folder = tmp_path / "custom_nodes" / "comfyui-blended-diffusion"
    with zipfile.ZipFile(work / "node.zip") as z:
        z.extractall(folder)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        before = list(sys.path)
        folder = {str(folder)!r}
        spec = importlib.util.spec_from_file_location("comfyui-blended-diffusion", folder + "/__init__.py",
                                                      submodule_search_locations=[folder])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        import importlib
        images = importlib.import_module("comfyui-blended-diffusion.nodes.images")
        assert images.InputError.__module__ == "comfyui-blended-diffusion.blended.errors", images.InputError.__module__
        assert sys.path == before, set(sys.path) ^ set(before)
        assert "blended" not in sys.modules and "nodes" not in sys.modules
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
