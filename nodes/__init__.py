"""ComfyUI nodes over the ``blended`` library.

Only what ComfyUI needs lives here: tensor layouts (``images``, plain torch), ComfyUI's devices,
folders, progress and Cancel (``comfy_glue``), schema checks (``validation``), socket types and the
node classes; the method itself is in ``blended`` (docs/DESIGN.md, "Layers").
They reach the library as ``..blended`` (nothing on ``sys.path``), so they are always imported as
part of the pack's package: ComfyUI's own top-level ``nodes`` module is a different thing. Tests
import them as ``blended_diffusion_pack.nodes.*`` (tests/support/pack_import.py).
"""
