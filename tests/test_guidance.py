"""Guidance terms in isolation: distances, range loss, background loss, per-sample independence."""

import math

import pytest
import torch

from blended.errors import InputError
from blended.guidance import BackgroundLoss, ClipGuidance, Guidance, GuidanceContext, RangeLoss, clip_distance


def test_distances_on_known_angles():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 2.0]])  # same direction, orthogonal
    torch.testing.assert_close(clip_distance(a, b, "cosine"), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(clip_distance(a, b, "spherical"), torch.tensor([0.0, math.pi**2 / 8]))
    with pytest.raises(InputError, match="distance 'l1'"):
        clip_distance(a, b, "l1")


def test_range_loss_only_outside_minus_one_one():
    ctx = GuidanceContext(torch.ones(2, 1, 4, 4), torch.zeros(2, 3, 4, 4))
    x = torch.zeros(2, 3, 4, 4)
    x[1, 0, 0, 0] = 3.0
    torch.testing.assert_close(RangeLoss(50).loss(x, ctx), torch.tensor([0.0, 50 * 4 / 48]))


def test_background_loss_ignores_the_masked_area(random_lpips):
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    source = torch.rand(2, 3, 32, 32) * 2 - 1
    ctx = GuidanceContext(mask, source)
    term = BackgroundLoss(random_lpips, weight_lpips=1.0, weight_l2=1.0)
    inside = torch.where(mask > 0, torch.rand(2, 3, 32, 32), source)
    assert term.loss(inside, ctx).abs().max() < 1e-6
    outside = source.clone()
    outside[1, :, :4] += 0.5
    loss = term.loss(outside, ctx)
    assert loss[0].abs() < 1e-6 and loss[1] > 0


def test_losses_are_per_sample(tiny_clip):
    mask = torch.ones(2, 1, 32, 32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ctx = GuidanceContext(mask, x.clone())
    g = Guidance((ClipGuidance(tiny_clip, "a red ball"), RangeLoss()))
    both = g.loss(x, ctx)
    alone = g.loss(x[1:], GuidanceContext(mask[1:], x[1:]))
    torch.testing.assert_close(both[1:], alone, rtol=1e-5, atol=1e-6)
    assert g.clip is g.terms[0] and Guidance().clip is None
