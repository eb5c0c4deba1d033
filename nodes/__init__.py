"""ComfyUI nodes over the ``blended`` library.

Modules that import ComfyUI (``comfy``, ``comfy_api``, ``folder_paths``) are the node modules and
``comfy_glue``; ``images`` and ``edit`` are plain torch so they can be tested without the engine.
This file imports nothing, so ``import nodes.images`` works outside ComfyUI.
"""
