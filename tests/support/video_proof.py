"""The per-call proof of a video family, family by family (tests/test_latent_video.py; other video test
files reuse it): what the diffusion model is given at every call, recorded through ComfyUI's public
UNet wrapper, against expectations made here by hand, not by the pack's own mask code.

- ``expected_latent_mask``: per latent frame the union of the pixel frames it encodes (frame 0 alone,
  then ``k`` frames each), dilated by the step's radius, covered by the family's cells;
- ``check_calls``: outside the step's mask the input is the source (``process_latent_in``) noised by
  the model's own ``model_sampling.noise_scaling`` at that call's sigma, bit for bit; one model call
  per euler step, cond and uncond batched; the family's conditioning unchanged (``check_conditioning``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_frames(fam) -> int:
    """Frames of the clip a family's VAE encodes into the test's latent frames: 1 + k(T-1)."""
    return 1 + fam.temporal * (fam.latent_frames - 1)


def moving_mask(fam, cells=(8, 8)) -> torch.Tensor:
    """[F,H,W] at the family's pixels per cell: a 2x2-cell blob that moves right a little every frame, a
    one-cell square in frame k only (the last frame of latent frame 1: a mapping off by one frame moves it
    to latent frame 2), and a 1-px stroke in the second-to-last frame only (it must still edit its latent
    frame's cells)."""
    f, (h, w) = fam.factor, cells
    frames = clip_frames(fam)
    m = torch.zeros(frames, h * f, w * f)
    for i in range(frames):
        left = f + (3 * f * i) // max(frames - 1, 1)
        m[i, 2 * f : 4 * f, left : left + 2 * f] = 1
    m[fam.temporal, 5 * f : 6 * f, 6 * f : 7 * f] = 1
    m[frames - 2, 6 * f + 1, f : 4 * f] = 1
    return m


def expected_latent_mask(mask: torch.Tensor, fam, radius: int = 0) -> torch.Tensor:
    """By hand: per latent frame the union of its pixel frames, dilated by ``radius`` px, max-pooled by the
    family's cell -> [1,1,T,h,w]."""
    k, T = fam.temporal, fam.latent_frames
    groups = [[0]] + [list(range(k * (t - 1) + 1, k * t + 1)) for t in range(1, T)]
    out = []
    for group in groups:
        u = mask[group].amax(0)[None, None]
        if radius:
            u = F.max_pool2d(u, 2 * radius + 1, stride=1, padding=radius)
        out.append(F.max_pool2d(u, fam.factor, fam.factor))
    return torch.stack(out, dim=2)


def recording(model):
    """A clone of ``model`` whose diffusion-model calls are recorded: (input, timestep, cond_or_uncond, the
    model's arguments ``c``)."""
    calls = []
    patched = model.clone()

    def wrapper(apply_model, args):
        c = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in args["c"].items()}
        calls.append((args["input"].detach().clone(), args["timestep"].detach().clone(),
                      list(args["cond_or_uncond"]), c))
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    return patched, calls


def check_calls(built, calls, source, noise, sigmas, per_step) -> None:
    """Every call: one per step, cond + uncond in one batch, the background the noised source bit for bit,
    the inside edited after the first call, the family's conditioning unchanged."""
    model = built.model
    ms = model.get_model_object("model_sampling")
    src = model.model.process_latent_in(source.float())
    assert len(calls) == len(sigmas) - 1, f"{len(calls)} model calls for {len(sigmas) - 1} euler steps"
    for i, (x, timestep, cond_or_uncond, c) in enumerate(calls):
        assert sorted(cond_or_uncond) == [0, 1] and x.dim() == 5, f"call {i}: {cond_or_uncond}, {tuple(x.shape)}"
        for chunk, rows in enumerate(x.chunk(2)):
            sigma = timestep.chunk(2)[chunk]
            torch.testing.assert_close(sigma.float(), torch.full_like(sigma.float(), float(sigmas[i])), rtol=1e-6,
                                       atol=0)
            expected = ms.noise_scaling(sigma, noise, src.expand_as(rows))
            outside = (per_step[i] == 0).expand_as(rows)
            assert torch.equal(rows[outside], expected[outside]), f"call {i}: background is not the noised source"
            if i > 0:
                assert not torch.equal(rows[~outside], expected[~outside]), f"call {i}: nothing edited"
        check_conditioning(built, c, cond_or_uncond, x.shape[0] // 2, tuple(source.shape))


def check_conditioning(built, c, cond_or_uncond, rows, latent_shape) -> None:
    """The positive's conditioning as the diffusion model receives it: the text tokens unchanged, each key of
    ``Family.passes`` as its argument, and every argument ``Family.seen`` expects (worked out by hand from
    the family's ``extra_conds`` / ``concat_cond``)."""
    fam, (ctx, extra) = built.family, built.positive[0]
    k, n = cond_or_uncond.index(0), len(cond_or_uncond)
    got_ctx = c["c_crossattn"].chunk(n)[k]
    assert torch.equal(got_ctx[:, : ctx.shape[1]], ctx.expand(rows, -1, -1).to(got_ctx.dtype)), "text context"
    wanted = {arg: extra[key] for key, arg in fam.passes.items()}
    wanted.update(fam.seen(built.model.model, extra, latent_shape) if fam.seen else {})
    for arg, want in wanted.items():
        assert arg in c, f"{built.name}: the model got no {arg!r} (has {sorted(c)})"
        got = c[arg]
        if isinstance(want, torch.Tensor):
            got = got.chunk(n)[k]
            assert torch.equal(got, want.expand(rows, *want.shape[1:]).to(got.dtype)), f"{built.name}: {arg}"
        else:
            assert got == want, f"{built.name}: {arg} is {got!r}, not {want!r}"
