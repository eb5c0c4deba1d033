"""Ideogram 4 as ComfyUI 0.33's own template runs it: SamplerCustomAdvanced with Ideogram4Scheduler's
sigmas and DualModelGuider, which runs the positive on the model and the unconditional pass on a second
model (Ideogram 4's "unconditional" file) with a null negative (no text at all: the model runs on the
image alone). The Blended Latent SAMPLER sits in the sampler slot, so it must blend whatever guider
calls it: here both models' calls, each with its own conditioning.

On tiny random Ideogram 4 models (tests/support/latent_families.py, the engine's own detection of the
real layout); ComfyUI 0.3.75 has neither Ideogram 4 nor DualModelGuider, so there the test is skipped
naming the class.
"""

from __future__ import annotations

import torch

from blended.latent.blend import step_masks
from tests.support.latent_families import build

STEPS = 3


def _mask(factor, hw):
    m = torch.zeros(1, 1, hw[0] * factor, hw[1] * factor)
    m[..., 2 * factor : 5 * factor, 3 * factor : 6 * factor] = 1
    return m


def _recording(model):
    """A clone whose model calls are recorded: (input, sigma, cond_or_uncond, whether text came along)."""
    calls = []
    patched = model.clone()

    def wrapper(apply_model, args):
        calls.append((args["input"].detach().clone(), args["timestep"].detach().clone(),
                      list(args["cond_or_uncond"]), args["c"].get("c_crossattn") is not None))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    return patched, calls


def test_ideogram4_with_its_templates_dual_model_guider_keeps_the_background_at_every_call():
    built = build("ideogram4")  # skips on an engine without Ideogram 4 (ComfyUI 0.3.75)
    unconditional = build("ideogram4", seed=1)  # the second file: same class, other weights
    import comfy.sample
    from comfy_extras.nodes_custom_sampler import DualModelGuider
    from comfy_extras.nodes_ideogram4 import ideogram4_sigmas

    from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler

    h, w = built.latent_hw
    factor = built.family.factor
    source = torch.randn(built.latent_shape, generator=torch.Generator().manual_seed(4))
    mask = _mask(factor, built.latent_hw)
    patched, calls = _recording(built.model)
    # the template's wiring: no negative connected -> core's null negative, the text-free pass
    guider = DualModelGuider.execute(patched, built.positive, 3.0, model_negative=unconditional.model).result[0]
    assert type(guider).__name__ == "Guider_DualModel"
    sigmas = ideogram4_sigmas(STEPS, w * factor, h * factor, 0.5, 1.75)  # the template's mu and std
    noise = comfy.sample.prepare_noise(source, 11)
    sampler = BlendingSampler("euler", pixel_mask=mask, shrink_px=8, shrink_fraction=0.5)
    out = guider.sample(noise, source, sampler, sigmas, seed=11).cpu()

    per_step = step_masks(mask, factor, STEPS, 8, 0.5)
    assert len(calls) == 2 * STEPS, "one positive call on the model and one text-free call on the other per step"
    assert [c[3] for c in calls] == [True, False] * STEPS  # the unconditional pass has no text
    ms = built.model.get_model_object("model_sampling")
    src = built.model.model.process_latent_in(source.float())
    for i, (x, timestep, _, _) in enumerate(calls):
        sigma = sigmas[i // 2]
        assert torch.allclose(timestep.float(), sigma.expand_as(timestep), rtol=1e-6)
        expected = ms.noise_scaling(sigma.reshape(1).expand(x.shape[0]), noise, src.expand_as(x))
        outside = (per_step[i // 2] == 0).expand_as(x)
        assert torch.equal(x[outside], expected[outside]), f"call {i}: background is not the source at σ"
        if i > 1:  # the first step's input is the noised source everywhere; later ones differ inside
            assert not torch.equal(x[~outside], expected[~outside])
    final = (per_step[-1] == 0).expand_as(out)
    torch.testing.assert_close(out[final], source.expand_as(out)[final], rtol=1e-6, atol=1e-6)
    assert not torch.equal(out[~final], source.expand_as(out)[~final])
