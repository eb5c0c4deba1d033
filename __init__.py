"""ComfyUI entry point of the Blended Diffusion node pack (V3 node API).

ComfyUI imports this file as the package of ``custom_nodes/<this folder>`` and calls
``comfy_entrypoint``. There is deliberately no NODE_CLASS_MAPPINGS: a module that has one is
loaded the V1 way and its entry point is ignored. Everything ComfyUI-specific is imported inside
``comfy_entrypoint``, so importing this file elsewhere (pytest collecting the repository root,
packaging tools) does not need ComfyUI.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _make_library_importable() -> None:
    """The nodes import the ``blended`` library from this folder. Appended, not prepended, so this
    folder's other top-level names (tests, scripts) never shadow anything ComfyUI imports."""
    if _HERE not in sys.path:
        sys.path.append(_HERE)


async def comfy_entrypoint():
    _make_library_importable()
    from .nodes.extension import BlendedDiffusionExtension

    return BlendedDiffusionExtension()
