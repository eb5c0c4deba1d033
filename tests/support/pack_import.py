"""This repository as the package ComfyUI makes of it, for tests of the node layer.

ComfyUI imports ``custom_nodes/<folder>/__init__.py`` as a package, and the nodes reach the library
as ``..blended``, so nothing generic goes on ``sys.path`` in a user's ComfyUI. Outside ComfyUI the
same relative imports need a parent package: ``register()`` makes one of the repository root under
``PACK``. Its ``blended`` and every ``blended.*`` submodule are the very modules that ``import
blended`` gives from the repository root, so a test that builds a tiny model with ``blended.pixel.unet``
and hands it to a node sees one set of classes (one ``InputError``, one ``DiffusionModel``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK = "blended_diffusion_pack"


def register():
    """Import the repository root as the package ``PACK`` (idempotent) and return it."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = package
    spec.loader.exec_module(package)
    import blended

    sys.modules[f"{PACK}.blended"] = package.blended = blended
    for info in pkgutil.walk_packages(blended.__path__, "blended."):
        sys.modules[f"{PACK}.{info.name}"] = importlib.import_module(info.name)
    return package
