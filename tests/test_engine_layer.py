"""The engine layer's planning (scripts/setup/engine_layer.py): what of another ComfyUI checkout's
requirements goes over the test venv, what their own dependencies still need, and that torch and
numpy are never replaced (docs/DESIGN.md, "ComfyUI versions"). No network: pip is not called."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from scripts.setup.engine_layer import missing_dependencies, parse_requirements, unmet_requirements

ROOT = Path(__file__).resolve().parent.parent


def requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def fake_distribution(layer: Path, name: str, *requires: str) -> None:
    """A dist-info as pip --target leaves it, enough for importlib.metadata."""
    info = layer / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_only_unmet_required_lines_go_into_the_layer(tmp_path):
    packaging_version = metadata.version("packaging")
    path = requirements(tmp_path, f"""comfyui-frontend-package-not-here==9.9.9
packaging=={packaging_version}
packaging>{packaging_version}
old-python-only==1.0 ; python_version < "3"

#non essential dependencies:
kornia>=0.7.1
pyopengl-not-here>=3
""")
    assert unmet_requirements(path) == ["comfyui-frontend-package-not-here==9.9.9", f"packaging>{packaging_version}"]
    required, optional = parse_requirements(path)
    assert [r.name for r in required] == ["comfyui-frontend-package-not-here", "packaging", "packaging",
                                          "old-python-only"]
    assert optional == ["kornia", "pyopengl-not-here"]


@pytest.mark.parametrize("line", ["torch==0.0.1", "numpy<1"])
def test_a_pin_on_the_venvs_torch_or_numpy_stops_instead_of_installing(tmp_path, line):
    with pytest.raises(SystemExit) as stop:
        unmet_requirements(requirements(tmp_path, f"{line}\n"))
    message = str(stop.value)
    assert line in message and "never replaces" in message and "install_deps.sh" in message


def test_dependencies_of_the_layer_are_resolved_against_layer_and_venv(tmp_path):
    fake_distribution(tmp_path, "templates-meta", "templates-core==0.3", "packaging", 'pytest-xyz ; extra == "dev"')
    assert missing_dependencies(tmp_path) == ["templates-core==0.3"]
    fake_distribution(tmp_path, "kernels", "torch>=999")
    with pytest.raises(SystemExit, match="torch"):
        missing_dependencies(tmp_path)


def test_a_layer_that_would_shadow_numpy_is_refused(tmp_path):
    fake_distribution(tmp_path, "numpy")
    with pytest.raises(SystemExit, match="shadow"):
        missing_dependencies(tmp_path)


def test_the_installer_names_the_variable_when_the_folder_is_no_checkout(tmp_path):
    run = subprocess.run(["bash", "scripts/setup/install_engine_layer.sh", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "BLENDED_COMFY_ENGINE" in run.stderr and "main.py" in run.stderr
    assert run.stdout == ""
