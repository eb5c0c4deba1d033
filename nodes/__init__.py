"""ComfyUI nodes over the ``blended`` library.

Modules that import ComfyUI (``comfy``, ``comfy_api``, ``folder_paths``) are the node modules and
``comfy_glue``; ``images`` and ``edit`` are plain torch so they can be tested without the engine.
They reach the library as ``..blended`` (nothing on ``sys.path``), so they are always imported as
part of the pack's package: ComfyUI's own top-level ``nodes`` module is a different thing. Tests
import them as ``blended_diffusion_pack.nodes.*`` (tests/pack_import.py).
"""
