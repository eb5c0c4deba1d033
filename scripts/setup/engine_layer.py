"""Which of a ComfyUI checkout's requirements the test venv does not satisfy, and which of their own
dependencies are still missing once those sit in a layer over it (scripts/setup/install_engine_layer.sh).

The layer is a ``pip install --target`` folder put in front of the venv with PYTHONPATH, so one test
venv runs the suite on the CI engine (0.3.75, nothing on PYTHONPATH) and on another release (its own
frontend, templates, comfy-kitchen, ...). pip cannot resolve a ``--target`` install against the venv
(it would install torch again into the layer), so the shell script installs with ``--no-deps`` and asks
this helper, run with the layer first on sys.path, what is still missing until nothing is.

    python scripts/setup/engine_layer.py requirements <checkout>/requirements.txt
    python scripts/setup/engine_layer.py missing <layer>
    python scripts/setup/engine_layer.py optional <checkout>/requirements.txt   (optional ones not installed)
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# The venv's own heavy packages: a layer that shadowed them would run the engine on another torch or
# numpy than the pack's tests (and pip would download gigabytes). A requirement on one of them the
# venv does not meet is an error, never an install.
VENV_OWNED = {canonicalize_name(n) for n in ("torch", "torchvision", "numpy", "triton")}
# requirements.txt of ComfyUI lists optional packages after this comment (PyOpenGL, comfy-angle, ...)
OPTIONAL_MARK = "#non essential"


def parse_requirements(path: Path) -> tuple[list[Requirement], list[str]]:
    """The checkout's required lines as Requirements, and the optional ones' names (skipped: the
    engine starts without them and the tests use none)."""
    required, optional, in_optional = [], [], False
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if line.lower().replace(" ", "").startswith(OPTIONAL_MARK.replace(" ", "")):
            in_optional = True
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            raise SystemExit(f"{path}: cannot read the requirement {line!r} ({e}); fix that line or "
                             "install the engine's packages by hand") from None
        if in_optional:
            optional.append(req.name)
        else:
            required.append(req)
    return required, optional


def installed_version(name: str) -> str | None:
    """The version the first sys.path entry that has ``name`` provides (the layer before the venv)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def applies(req: Requirement, extra: str = "") -> bool:
    return req.marker is None or req.marker.evaluate({"extra": extra})


def unmet(req: Requirement) -> bool:
    version = installed_version(req.name)
    return version is None or (bool(req.specifier) and not req.specifier.contains(version, prereleases=True))


def refuse_venv_owned(req: Requirement, who: str) -> None:
    found = installed_version(req.name)
    raise SystemExit(
        f"{who} needs {req} but the test venv has {req.name} {found or 'not installed'}; the engine layer never "
        f"replaces {req.name} (the suite runs on the venv's). Install a matching {req.name} into the venv "
        "(scripts/setup/install_deps.sh) or pick an engine release that accepts this one."
    )


def unmet_requirements(path: Path) -> list[str]:
    """What to install into the layer for the checkout's ``requirements.txt``: each required line the
    environment does not satisfy, as written there (pins stay the checkout's own)."""
    required, _ = parse_requirements(path)
    todo = []
    for req in required:
        if not applies(req) or not unmet(req):
            continue
        if canonicalize_name(req.name) in VENV_OWNED:
            refuse_venv_owned(req, f"{path}")
        todo.append(str(req))
    return todo


def layer_distributions(layer: Path) -> list[metadata.Distribution]:
    return list(metadata.distributions(path=[str(layer)]))


def missing_dependencies(layer: Path) -> list[str]:
    """Dependencies of the packages in ``layer`` that neither the layer nor the venv satisfies
    (the next round of ``pip install --no-deps``)."""
    todo: dict[str, str] = {}
    for dist in layer_distributions(layer):
        who = f"{dist.metadata['Name']} {dist.version} (in {layer})"
        if canonicalize_name(dist.metadata["Name"]) in VENV_OWNED:
            raise SystemExit(f"{who} would shadow the venv's own; delete {layer} and report the requirement "
                             "that pulled it in")
        for line in dist.requires or []:
            req = Requirement(line)
            if not applies(req) or not unmet(req):
                continue
            if canonicalize_name(req.name) in VENV_OWNED:
                refuse_venv_owned(req, who)
            todo.setdefault(canonicalize_name(req.name), str(req))
    return sorted(todo.values())


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("requirements", "missing", "optional"):
        raise SystemExit("usage: engine_layer.py requirements <requirements.txt> | missing <layer> | "
                         "optional <requirements.txt>")
    command, target = argv
    if command == "requirements":
        lines = unmet_requirements(Path(target))
    elif command == "optional":
        lines = [name for name in parse_requirements(Path(target))[1] if installed_version(name) is None]
    else:
        lines = missing_dependencies(Path(target))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
