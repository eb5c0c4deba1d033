"""The straightforward implementation of Blended Diffusion, as the reference code structures it.

A ``cond_fn`` runs the UNet with grad to get the guidance gradient, then ``p_sample`` runs the
UNet again, without grad, for the step's mean: two forwards per step. It exists as the baseline
our sampler is benchmarked against and as an oracle in tests (same noise, same numbers).
"""

from __future__ import annotations

import torch

from blended.guidance import Guidance, GuidanceContext
from blended.paste import paste
from blended.pixel.sampler import SamplerSettings, SeedNoise, ddim_step, ddpm_step


def two_forward_sample(
    model, image: torch.Tensor, mask: torch.Tensor, guidance: Guidance, settings: SamplerSettings, seeds: list[int]
) -> torch.Tensor:
    sched = settings.schedule
    batch = len(seeds)
    source = image.expand(batch, -1, -1, -1).float()
    mask = mask.expand(batch, -1, -1, -1).to(source)
    noise = SeedNoise(seeds, tuple(source.shape[1:]), source.device, source.dtype)
    gens = [torch.Generator().manual_seed((int(s) + 0x5EED) % 2**63) for s in seeds]
    ctx = GuidanceContext(mask=mask, source=source, generators=gens)

    def cond_grad(x, t):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            p = sched.p_mean_variance(model(x, sched.model_timesteps(t)), x, t, settings.clip_denoised)
            return torch.autograd.grad(guidance.loss(p["pred_xstart"], ctx).sum(), x)[0]

    indices = list(range(sched.num_timesteps - settings.skip_timesteps))[::-1]
    x = sched.q_sample(source, torch.full((batch,), indices[0], dtype=torch.long, device=source.device), noise())
    for i in indices:
        t = torch.full((batch,), i, dtype=torch.long, device=source.device)
        ctx.step = i
        grad = cond_grad(x, t) if guidance.terms else torch.zeros_like(x)
        with torch.no_grad():
            p = sched.p_mean_variance(model(x, sched.model_timesteps(t)), x, t, settings.clip_denoised)
        if settings.method == "ddpm":
            x = ddpm_step(p, t, grad, noise())
        else:
            x = ddim_step(sched, p, x, t, grad, noise(), settings.eta)
        if settings.mode == "blended":
            background = sched.q_sample(source, t - 1, noise()) if i > 0 else source
            x = paste(x, background, mask)
    if settings.enforce_background:
        x = paste(x, source, mask)
    return x
