"""Behaviour of the sampling loop with tiny random models."""

import pytest
import torch

from blended.augment import ExtendingAugmentation, resize_for_clip
from blended.errors import InputError
from blended.guidance import BackgroundLoss, ClipGuidance, Guidance, GuidanceContext, RangeLoss
from blended.pixel.sampler import SamplerSettings, sample
from blended.pixel.schedule import GaussianSchedule
from blended.ranking import rank
from tests.support.two_forward import two_forward_sample

FAST = SamplerSettings(steps="8", skip_timesteps=2)


@pytest.fixture(scope="module")
def scene(tiny_model):
    size = tiny_model.image_size
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return image, mask


def clip_guidance(tiny_clip, weight=1000.0, count=0):
    aug = ExtendingAugmentation(count) if count else None
    return ClipGuidance(tiny_clip, "a red ball", weight=weight, augmentation=aug)


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
@pytest.mark.parametrize("mode", ["blended", "local"])
def test_background_is_bit_identical_and_foreground_edited(tiny_model, tiny_clip, scene, method, mode):
    image, mask = scene
    guidance = Guidance((clip_guidance(tiny_clip), RangeLoss()))
    out = sample(tiny_model, image, mask, guidance, SamplerSettings("8", method, 2, mode), seeds=[1, 2])
    assert out.shape == (2, 3, *image.shape[-2:])
    outside = (mask == 0).expand_as(out)
    assert torch.equal(out[outside], image.expand_as(out)[outside])
    assert (out[~outside] - image.expand_as(out)[~outside]).abs().mean() > 0.05


def test_local_mode_without_paste_changes_background(tiny_model, tiny_clip, scene):
    image, mask = scene
    settings = SamplerSettings("8", "ddpm", 2, "local", enforce_background=False)
    out = sample(tiny_model, image, mask, Guidance((clip_guidance(tiny_clip),)), settings, seeds=[1])
    assert not torch.equal(out[:, :, 0, 0], image[:, :, 0, 0])


def test_background_loss_pulls_local_background_towards_source(tiny_model, tiny_clip, random_lpips, scene):
    image, mask = scene
    settings = SamplerSettings("8", "ddpm", 2, "local", enforce_background=False)
    base = Guidance((clip_guidance(tiny_clip),))
    keep = 1 - mask

    def bg_error(guidance):
        out = sample(tiny_model, image, mask, guidance, settings, seeds=[3, 4])
        return ((out - image) * keep).pow(2).mean().item()

    with_bg = base.with_term(BackgroundLoss(random_lpips, weight_lpips=10.0, weight_l2=30.0))
    assert bg_error(with_bg) < 0.8 * bg_error(base)


def test_guidance_lowers_clip_distance(tiny_model, tiny_clip, scene):
    image, mask = scene
    seeds = [10, 11, 12, 13]
    guided = clip_guidance(tiny_clip, weight=20000.0)
    settings = SamplerSettings("8", "ddpm", 0)
    plain = sample(tiny_model, image, mask, Guidance(), settings, seeds)
    steered = sample(tiny_model, image, mask, Guidance((guided,)), settings, seeds)
    assert guided.score(steered, mask).mean() < guided.score(plain, mask).mean()


def test_same_seed_same_result_and_batch_independence(tiny_model, tiny_clip, scene):
    image, mask = scene
    guidance = Guidance((clip_guidance(tiny_clip, count=2),))
    both = sample(tiny_model, image, mask, guidance, FAST, seeds=[5, 6])
    again = sample(tiny_model, image, mask, guidance, FAST, seeds=[5, 6])
    alone = sample(tiny_model, image, mask, guidance, FAST, seeds=[6])
    assert torch.equal(both, again)
    torch.testing.assert_close(both[1:], alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(both[0], both[1])


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_one_forward_per_step_equals_two_forward_baseline(tiny_model, tiny_clip, scene, method):
    image, mask = scene
    guidance = Guidance((clip_guidance(tiny_clip, count=2), RangeLoss()))
    settings = SamplerSettings("8", method, 2, eta=0.3)
    calls = []
    hook = tiny_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        ours = sample(tiny_model, image, mask, guidance, settings, seeds=[7, 8])
        ours_calls = len(calls)
        baseline = two_forward_sample(tiny_model, image, mask, guidance, settings, seeds=[7, 8])
    finally:
        hook.remove()
    steps = 8 - 2
    assert ours_calls == steps
    assert len(calls) - ours_calls == 2 * steps
    torch.testing.assert_close(ours, baseline, atol=1e-5, rtol=1e-5)


def test_background_is_blended_at_level_of_x_t_minus_1(tiny_model, scene, monkeypatch):
    image, mask = scene
    levels = []
    original = GaussianSchedule.q_sample

    def spy(self, x0, t, noise):
        levels.append(int(t[0]))
        return original(self, x0, t, noise)

    monkeypatch.setattr(GaussianSchedule, "q_sample", spy)
    sample(tiny_model, image, mask, Guidance(), SamplerSettings("8", skip_timesteps=3), seeds=[0])
    # First call noises the source to the start step (4); then one blend per step at t-1, clean at t=0.
    assert levels == [4, 3, 2, 1, 0]


def test_callback_sees_every_step_and_can_interrupt(tiny_model, scene):
    image, mask = scene
    seen = []
    sample(tiny_model, image, mask, Guidance(), FAST, [0], callback=lambda i, n, x0: seen.append((i, n, x0.shape)))
    assert [s[0] for s in seen] == list(range(6)) and all(s[1] == 6 for s in seen)

    class Stop(Exception):
        pass

    def stop(i, n, x0):
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        sample(tiny_model, image, mask, Guidance(), FAST, [0], callback=stop)


def test_augmentation_changes_gradient_and_averages_views(tiny_clip, scene):
    image, mask = scene
    x = image.repeat(2, 1, 1, 1).requires_grad_(True)
    ctx = lambda: GuidanceContext(mask, image, generators=[torch.Generator().manual_seed(s) for s in (0, 1)])  # noqa: E731
    plain, augmented = clip_guidance(tiny_clip), clip_guidance(tiny_clip, count=4)
    g_plain = torch.autograd.grad(plain.loss(x, ctx()).sum(), x)[0]
    g_aug = torch.autograd.grad(augmented.loss(x, ctx()).sum(), x)[0]
    assert not torch.allclose(g_plain, g_aug, atol=1e-6)
    # The loss is the mean over 1 + 4 views per sample, the first view un-augmented.
    views = augmented.augmentation(((x * mask) + 1) / 2, tiny_clip.image_size, ctx().generators)
    assert views.shape[0] == 5 * 2
    torch.testing.assert_close(views[:2], resize_for_clip(((x * mask) + 1) / 2, tiny_clip.image_size))
    assert not torch.allclose(views[2:4], views[:2])


def test_augmentation_depends_only_on_the_generator(tiny_clip):
    aug = ExtendingAugmentation(3)
    x = torch.rand(1, 3, 40, 40)
    a = aug(x, 32, [torch.Generator().manual_seed(1)])
    b = aug(x, 32, [torch.Generator().manual_seed(1)])
    c = aug(x, 32, [torch.Generator().manual_seed(2)])
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_ranking_is_by_unaugmented_distance_best_first(tiny_model, tiny_clip, scene):
    image, mask = scene
    images = torch.rand(5, 3, *image.shape[-2:], generator=torch.Generator().manual_seed(3)) * 2 - 1
    guidance = clip_guidance(tiny_clip, count=4)
    order, scores = rank(images, mask, guidance)
    raw = clip_guidance(tiny_clip).score(images, mask)
    assert torch.equal(order, torch.argsort(raw))
    torch.testing.assert_close(scores, raw[order])
    assert (scores[1:] >= scores[:-1]).all()


def test_bad_inputs_raise_clear_errors(tiny_model, tiny_clip, scene):
    image, mask = scene
    with pytest.raises(InputError, match="mask is empty"):
        sample(tiny_model, image, torch.zeros_like(mask), Guidance(), FAST, [0])
    with pytest.raises(InputError, match="skip_timesteps 8"):
        sample(tiny_model, image, mask, Guidance(), SamplerSettings("8", skip_timesteps=8), [0])
    with pytest.raises(InputError, match="method 'euler'"):
        sample(tiny_model, image, mask, Guidance(), SamplerSettings("8", method="euler"), [0])
    with pytest.raises(InputError, match="mask must be"):
        sample(tiny_model, image, mask[..., :-1], Guidance(), FAST, [0])
    with pytest.raises(InputError, match="CLIP tokens"):
        ClipGuidance(tiny_clip, "a very long prompt " * 75)
    with pytest.raises(InputError, match="prompt is empty"):
        ClipGuidance(tiny_clip, "   ")


def reference_homography(aug: ExtendingAugmentation, size: int, generator: torch.Generator) -> torch.Tensor:
    """The per-copy construction the batched one replaced (one Python-built 3x3 map at a time)."""
    import math

    from kornia.geometry.transform import get_perspective_transform

    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    c = (size - 1) / 2
    angle = math.radians((u(1).item() * 2 - 1) * aug.degrees)
    shift = (u(2) * 2 - 1) * aug.translate * size
    cos, sin = math.cos(angle), math.sin(angle)
    affine = torch.tensor([[cos, -sin, c - cos * c + sin * c + shift[0].item()],
                           [sin, cos, c - sin * c - cos * c + shift[1].item()],
                           [0.0, 0.0, 1.0]], dtype=torch.float64)
    corners = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=torch.float64)
    inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
    moved = corners + inward * u(4, 2) * aug.perspective * size / 2
    return get_perspective_transform(corners[None], moved[None])[0] @ affine


def test_batched_homographies_equal_the_per_copy_construction():
    """Same draws from each sample's generator, same maps: the distribution is unchanged and a
    sample's warps still depend only on its seed (copy-major rows: copy * B + sample)."""
    aug = ExtendingAugmentation(5, degrees=30.0, translate=0.2, perspective=0.5)
    seeds = [3, 4, 5]
    batched = aug.homographies(224, [torch.Generator().manual_seed(s) for s in seeds])
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    reference = torch.stack([reference_homography(aug, 224, g) for _ in range(5) for g in gens])
    torch.testing.assert_close(batched, reference, atol=1e-9, rtol=1e-9)
    alone = aug.homographies(224, [torch.Generator().manual_seed(4)])
    torch.testing.assert_close(batched.view(5, 3, 3, 3)[:, 1], alone, atol=0, rtol=0)
