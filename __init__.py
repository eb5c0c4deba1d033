"""ComfyUI entry point of the Blended Diffusion node pack (V3 node API).

ComfyUI imports this file as the package of ``custom_nodes/<this folder>`` and calls
``comfy_entrypoint``. There is deliberately no NODE_CLASS_MAPPINGS: a module that has one is
loaded the V1 way and its entry point is ignored. Everything ComfyUI-specific is imported inside
``comfy_entrypoint``, so importing this file elsewhere (pytest collecting the repository root,
packaging tools) does not need ComfyUI.

Nothing is added to ``sys.path``: the nodes reach the library as ``..blended``, a submodule of
this package, so another top-level ``blended`` (or ComfyUI's own ``nodes`` module) can neither
shadow it nor be shadowed by it.
"""


# Served by ComfyUI at /extensions/<this folder>/: docs/<node id>.md are the node help pages the
# frontend's help panel fetches for custom nodes.
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import BlendedDiffusionExtension

    return BlendedDiffusionExtension()
