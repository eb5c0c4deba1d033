"""The paper's own method in pixel space (Avrahami et al., CVPR 2022): OpenAI's ADM UNet and its loading,
the Gaussian schedule, the guided sampling loop with the per-step blend, and the any-size edit around it.

Imports only the shared modules of ``blended`` (never ``blended.latent``).
"""
