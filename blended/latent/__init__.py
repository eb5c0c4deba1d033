"""Blended Latent Diffusion (Avrahami et al., SIGGRAPH 2023) on any ComfyUI model: the per-step blend in
latent space, crop/stitch of the mask's region, the decoder reconstruction and the seam modes, and the
report of what a stitch corrected. Pure torch: ComfyUI's own sampling calls into ``blend``.

Imports only the shared modules of ``blended`` (never ``blended.pixel``).
"""
