"""Blended Diffusion (Avrahami et al., CVPR 2022) as a pure-torch library.

Nothing here imports ComfyUI: the nodes in ``nodes/`` are thin wrappers, and the library can be
tested, benchmarked and scripted on its own.
"""
