"""The fast background reconstruction on the random SD1.5 VAE (core's loader): the window decodes
what the whole image decodes, only the decoder's tail is trained, the frozen part runs once, and the
stopping rule ends the steps. Structure is checked by counts, never by timing."""

from __future__ import annotations

import math

import pytest
import torch
from test_latent_engine import example_photo

from blended import masks
from blended.latent.blend import cover_mask
from blended.latent.decoder_tail import receptive_margin, tail_layout
from blended.latent.reconstruct import ReconstructSettings, tunable_for, tune

SIZE = 64


def scene(size=SIZE, box=(24, 40, 20, 44), seed=0, vae=None):
    source = example_photo(size)
    mask = torch.zeros(1, 1, size, size)
    y0, y1, x0, x1 = box
    mask[..., y0:y1, x0:x1] = 1
    latent = vae.encode(source).detach()
    cells = cover_mask(mask, 8).expand_as(latent) > 0
    edited = torch.where(cells, torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)), latent)
    return source.movedim(-1, 1) * 2 - 1, mask, edited


def perturb(params, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.05 * (p.abs().mean() + 1e-3))


@pytest.mark.parametrize("blocks", [1, 3])
def test_window_decodes_what_the_whole_image_decodes(sd15, blocks):
    """Frozen GroupNorm statistics + a receptive-field margin: the window is exact, at the start
    (the plain decode, = the shared VAE's own decode) and for any tuned weights."""
    vae = sd15[2]
    x, mask, z = scene(vae=vae)
    hard = masks.binarize(mask)
    small = tunable_for(vae.first_stage_model, z, hard, ReconstructSettings(tuned_blocks=blocks, band_px=4), "cpu")
    whole = tunable_for(vae.first_stage_model, z, hard, ReconstructSettings(tuned_blocks=blocks, band_px=SIZE), "cpu")
    y0, y1, x0, x1 = small.window
    assert (y0, y1, x0, x1) == (20, 44, 16, 48) and whole.window == (0, SIZE, 0, SIZE)
    with torch.no_grad():
        shared = vae.first_stage_model.decode(z).float()
        torch.testing.assert_close(small.plain, shared, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(small.decode(), shared[..., y0:y1, x0:x1], atol=1e-4, rtol=1e-4)
        perturb(small.params, 1)
        perturb(whole.params, 1)
        changed = small.decode()
        assert not torch.allclose(changed, shared[..., y0:y1, x0:x1], atol=1e-3)
        torch.testing.assert_close(changed, whole.decode()[..., y0:y1, x0:x1], atol=1e-4, rtol=1e-4)


def test_only_the_tail_is_trained_and_the_frozen_part_runs_once(sd15):
    vae = sd15[2]
    first_stage = vae.first_stage_model
    dec, n_blocks = tail_layout(first_stage)
    x, mask, z = scene(vae=vae)
    calls = {"frozen": 0, "tuned": 0}
    shared = {"frozen": dec.up[1].block[0], "tuned": dec.conv_out}

    def counter(name):
        def count(module, _args):
            calls[name] += module is shared[name]  # hooks travel with a deep copy: count the shared one only
        return count

    handles = [m.register_forward_pre_hook(counter(n)) for n, m in shared.items()]
    before = {k: v.detach().clone() for k, v in first_stage.state_dict().items()}
    try:
        settings = ReconstructSettings(iterations=6, learning_rate=1e-3, tuned_blocks=1, target_reduction=math.inf)
        t = tunable_for(first_stage, z, masks.binarize(mask), settings, "cpu")
        start = [p.detach().clone() for p in t.params]
        _, stats = tune(t, x, mask, settings)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"frozen": 1, "tuned": 0}  # the shared decoder: its frozen part once, its tail never
    assert stats["iterations"] == 6 and stats["stopped"] == "cap" and stats["tuned_blocks"] == 1
    tail = [dec.up[0].block[n_blocks - 1], dec.norm_out, dec.conv_out]
    assert sum(p.numel() for p in t.params) == sum(p.numel() for m in tail for p in m.parameters())
    assert sum(p.numel() for p in t.params) < 0.02 * sum(p.numel() for p in dec.parameters())
    assert all(p.grad is not None and not torch.equal(p, s) for p, s in zip(t.params, start))
    assert all(torch.equal(before[k], v) for k, v in first_stage.state_dict().items())
    assert receptive_margin(torch.nn.ModuleList(tail)) == 3  # two 3x3 convs in the block, one out


def test_stopping_rule_ends_at_the_target_or_a_plateau(sd15):
    vae = sd15[2]
    x, mask, z = scene(vae=vae)
    hard = masks.binarize(mask)
    fast = ReconstructSettings(iterations=200, learning_rate=1e-3, target_reduction=4.0)
    _, hit = tune(tunable_for(vae.first_stage_model, z, hard, fast, "cpu"), x, mask, fast)
    assert hit["stopped"] == "target" and 0 < hit["iterations"] < 200
    assert (hit["plain_outside"] / hit["tuned_outside"]) ** 2 >= 4
    stuck = ReconstructSettings(iterations=200, learning_rate=1e-12, patience=5)
    _, flat = tune(tunable_for(vae.first_stage_model, z, hard, stuck, "cpu"), x, mask, stuck)
    assert flat["stopped"] == "plateau" and flat["iterations"] == 5


def test_defaults_keep_the_inside_at_least_as_close_as_the_whole_decoder(sd15):
    """The paper's whole-decoder tuning (every outside pixel, 75 steps at 1e-4, no rule) against the
    defaults, same image: >= 10x lower squared error in the band, the inside no further from the
    plain decode, far fewer trained weights."""
    vae = sd15[2]
    x, mask, z = scene(32, (8, 24, 8, 20), vae=vae)
    hard = masks.binarize(mask)
    paper = ReconstructSettings(iterations=75, learning_rate=1e-4, tuned_blocks=None, band_px=64,
                                target_reduction=math.inf, patience=10**6)
    t_paper = tunable_for(vae.first_stage_model, z, hard, paper, "cpu")
    _, before = tune(t_paper, x, mask, paper)
    ours = ReconstructSettings()
    t_ours = tunable_for(vae.first_stage_model, z, hard, ours, "cpu")
    _, after = tune(t_ours, x, mask, ours)
    assert before["tuned_blocks"] is None and after["tuned_blocks"] == 1
    assert (after["plain_outside"] / after["tuned_outside"]) ** 2 >= 10, after
    assert after["inside_mse_plain"] <= before["inside_mse_plain"], (after, before)
    assert after["iterations"] <= paper.iterations
    assert 20 * sum(p.numel() for p in t_ours.params) < sum(p.numel() for p in t_paper.params)


def test_a_decoder_of_unknown_layout_is_tuned_whole():
    torch.manual_seed(0)
    shared = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.SiLU(),
                                 torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(16, 3, 3, padding=1))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    t = tunable_for(shared, torch.randn(1, 4, 8, 8), mask, ReconstructSettings(), "cpu")
    assert t.tuned_blocks is None and t.window == (0, 16, 0, 16)
    assert sum(p.numel() for p in t.params) == sum(p.numel() for p in shared.parameters())
    assert all(p is not q for p, q in zip(t.params, shared.parameters()))
