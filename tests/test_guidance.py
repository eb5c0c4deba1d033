"""Guidance terms in isolation: distances, range loss, background loss, per-sample independence."""

import math

import pytest
import torch

from blended.clip_distance import clip_distance
from blended.errors import InputError
from blended.guidance import BackgroundLoss, ClipGuidance, Guidance, GuidanceContext, RangeLoss


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


# --- weighted and negative prompts -------------------------------------------------------------------


class FrozenClipGuidance:
    """ClipGuidance exactly as it was before weighted prompts (commit 3347adb), kept as the reference."""

    def __init__(self, clip, prompt, weight=1000.0, distance="spherical", augmentation=None):
        self.clip, self.prompt, self.weight = clip, prompt, weight
        self.distance, self.augmentation = distance, augmentation

    @staticmethod
    def _distance(image_embeds, text_embeds, kind):
        import torch.nn.functional as F

        a, b = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
        if kind == "spherical":
            return 2 * torch.arcsin((a - b).norm(dim=-1).div(2).clamp(max=1)) ** 2
        return 1 - (a * b).sum(-1)

    def distances(self, images, mask, generators=None):
        from blended.augment import resize_for_clip

        masked = (images * mask).add(1).div(2)
        size = self.clip.image_size
        if self.augmentation is not None and generators:
            views = self.augmentation(masked, size, generators)
        else:
            views = resize_for_clip(masked, size)
        with torch.no_grad():
            text = self.clip.encode_text([self.prompt])
        dists = self._distance(self.clip.encode_image(views), text, self.distance)
        return dists.view(-1, images.shape[0]).mean(0)

    def loss(self, x0, ctx):
        return self.weight * self.distances(x0, ctx.mask, ctx.generators)

    def to(self, device):
        return self


def _loss_and_grad(term, x, ctx):
    x = x.clone().requires_grad_(True)
    loss = term.loss(x, ctx)
    return loss.detach(), torch.autograd.grad(loss.sum(), x)[0]


@pytest.mark.parametrize("distance", ["spherical", "cosine"])
@pytest.mark.parametrize("count", [0, 3])
def test_one_prompt_of_weight_one_is_the_paper_bit_for_bit(tiny_clip, distance, count):
    from blended.augment import ExtendingAugmentation

    aug = ExtendingAugmentation(count) if count else None
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(3, 1, 40, 40)
    mask[..., 8:30, 5:33] = 1

    def ctx():
        return GuidanceContext(mask, x, 0, [torch.Generator().manual_seed(i) for i in range(3)])

    old = FrozenClipGuidance(tiny_clip, "a red ball", 1000.0, distance, aug)
    for prompt in ("a red ball", "a red ball:1", "  a red ball \n", "a red ball:4"):
        new = ClipGuidance(tiny_clip, prompt, 1000.0, distance, aug, negative_prompt=" \n ")
        (l_old, g_old), (l_new, g_new) = _loss_and_grad(old, x, ctx()), _loss_and_grad(new, x, ctx())
        assert torch.equal(l_old, l_new) and torch.equal(g_old, g_new), prompt
        assert torch.equal(new.score(x, mask), old.distances(x, mask))


def test_one_prompt_samples_equal_the_paper_bit_for_bit(tiny_model, tiny_clip):
    from blended.augment import ExtendingAugmentation
    from blended.pixel.sampler import SamplerSettings, sample

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    settings = SamplerSettings(steps="5", skip_timesteps=1)
    aug = ExtendingAugmentation(2)
    frozen = FrozenClipGuidance(tiny_clip, "a red ball", 1000.0, "spherical", aug)
    old = sample(tiny_model, image, mask, Guidance((frozen, RangeLoss())), settings, [5, 6])
    new = sample(tiny_model, image, mask, Guidance((ClipGuidance(tiny_clip, "a red ball", 1000.0, "spherical", aug),
                                                    RangeLoss())), settings, [5, 6])
    assert torch.equal(old, new)


def test_weighted_and_negative_prompts_combine_distances(tiny_clip):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    mask = torch.ones(2, 1, 32, 32)

    def d(prompt):
        return ClipGuidance(tiny_clip, prompt, weight=1.0).score(x, mask)

    combined = ClipGuidance(tiny_clip, "a red ball:3 | a blue cube:1", weight=1.0, negative_prompt="a green tree:2")
    expected = 0.75 * d("a red ball") + 0.25 * d("a blue cube") - 0.5 * d("a green tree")
    torch.testing.assert_close(combined.score(x, mask), expected, rtol=1e-6, atol=1e-6)
    # the loss is λ times the same combination: ranking and guidance agree
    ctx = GuidanceContext(mask, x)
    torch.testing.assert_close(combined.loss(x, ctx), combined.score(x, mask))


def test_negative_prompt_gradient_pushes_away(tiny_clip):
    import torch.nn.functional as F

    from blended.augment import resize_for_clip

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    mask = torch.ones(1, 1, 32, 32)
    with torch.no_grad():
        neg = F.normalize(tiny_clip.encode_text(["a green tree"]), dim=-1)

    def sim(img):
        with torch.no_grad():
            return (F.normalize(tiny_clip.encode_image(resize_for_clip(img.add(1).div(2), 32)), dim=-1) @ neg.T).item()

    with_neg = ClipGuidance(tiny_clip, "a red ball", weight=1.0, negative_prompt="a green tree:4")
    _, g = _loss_and_grad(with_neg, x, GuidanceContext(mask, x))
    step = x - 0.02 * g / g.abs().max()
    _, g0 = _loss_and_grad(ClipGuidance(tiny_clip, "a red ball", weight=1.0), x, GuidanceContext(mask, x))
    step0 = x - 0.02 * g0 / g0.abs().max()
    assert sim(step) < sim(x) and sim(step) < sim(step0)


def test_prompt_errors_name_the_input(tiny_clip):
    with pytest.raises(InputError, match="weights cancel out"):
        ClipGuidance(tiny_clip, "a red ball", negative_prompt="a red ball")
    with pytest.raises(InputError, match="prompt is empty"):
        ClipGuidance(tiny_clip, " | ")
    too_long = r"prompt entry 'a very long prompt a very long prompt\.\.\.' is 82 CLIP tokens"
    with pytest.raises(InputError, match=too_long):
        ClipGuidance(tiny_clip, "a red ball | " + "a very long prompt " * 20)
    with pytest.raises(InputError, match="negative_prompt entry .* CLIP tokens long"):
        ClipGuidance(tiny_clip, "a red ball", negative_prompt="blurry | " + "a very long prompt " * 20)
    with pytest.raises(InputError, match="clip_lambda is nan"):
        ClipGuidance(tiny_clip, "a red ball", weight=float("nan"))
    with pytest.raises(InputError, match="typography_strength"):
        ClipGuidance(tiny_clip, "a red ball", typography=-1.0)
    with pytest.raises(InputError, match="typography_strength is inf"):
        ClipGuidance(tiny_clip, "a red ball", typography=float("inf"))
    with pytest.raises(InputError, match="clip_lambda is 'lots': use a number"):
        ClipGuidance(tiny_clip, "a red ball", weight="lots")
