"""The typography guard with the tiny random CLIP: it pushes away from the prompt written as text."""

import torch
import torch.nn.functional as F

from blended.augment import resize_for_clip
from blended.guidance import ClipGuidance, GuidanceContext
from blended.typography import GENERIC_TEXT_PROMPTS, TypographyGuard, render_text


def test_rendered_text_is_large_and_legible():
    img = render_text("a bowl of cherries", 224)
    assert img.shape == (1, 3, 224, 224) and img.min() == 0 and img.max() == 1
    ink = img[0, 0] < 0.5
    rows, cols = ink.any(1).nonzero(), ink.any(0).nonzero()
    # word-wrapped and scaled up to fill most of the square, centred
    assert cols.max() - cols.min() > 0.6 * 224 and rows.max() - rows.min() > 0.3 * 224
    assert abs((cols.max() + cols.min()).item() / 2 - 112) < 12
    assert 0.05 < ink.float().mean() < 0.5
    light = render_text("a bowl of cherries", 224, dark_on_light=False)
    assert (light - (1 - img)).abs().mean() < 0.01  # the same letters, inverted
    assert not torch.equal(render_text("a cup of tea", 224), img)


def test_older_pillow_bitmap_font_still_renders(monkeypatch):
    import blended.typography as typography

    monkeypatch.setattr(typography, "load_font", lambda size: None)  # Pillow < 10.1 cannot size the built-in font
    img = typography.render_text("a bowl of cherries", 224)
    ink = img[0, 0] < 0.5
    cols = ink.any(0).nonzero()
    assert img.shape == (1, 3, 224, 224) and cols.max() - cols.min() > 0.5 * 224 and 0.02 < ink.float().mean() < 0.5


def test_targets_are_the_rendered_prompts_and_generic_text(tiny_clip):
    guard = TypographyGuard(tiny_clip, ["a bowl of cherries", "red fruit"])
    rendered, generic = guard.targets(torch.device("cpu"))
    assert rendered.shape == (4, 32) and generic.shape == (len(GENERIC_TEXT_PROMPTS), 32)
    with torch.no_grad():
        expected = tiny_clip.encode_image(resize_for_clip(render_text("red fruit"), 32))
    torch.testing.assert_close(rendered[2:3], expected)


def _similarity(clip, images, target):
    embeds = F.normalize(clip.encode_image(resize_for_clip(images.add(1).div(2), clip.image_size)), dim=-1)
    return (embeds @ F.normalize(target, dim=-1).T).squeeze(-1)


def test_guard_gradient_lowers_similarity_to_the_rendered_text(tiny_clip):
    prompt = "a bowl of cherries"
    # the rendered-text part alone (the generic prompts pull the random CLIP's gradient elsewhere)
    guard = TypographyGuard(tiny_clip, [prompt], strength=1.0, generic=())
    rendered = guard.targets(torch.device("cpu"))[0][:1]  # the prompt rendered dark on light
    mask = torch.ones(4, 1, 32, 32)
    # x̂0 drifting into lettering: the written prompt under noise of several strengths
    written = resize_for_clip(render_text(prompt), 32) * 2 - 1
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = torch.lerp(written, noise, torch.tensor([0.1, 0.3, 0.5, 0.7]).view(4, 1, 1, 1))
    x = x.requires_grad_(True)
    loss = guard.loss(x, GuidanceContext(mask, x.detach()))
    grad = torch.autograd.grad(loss.sum(), x)[0]
    assert grad.abs().sum() > 0
    with torch.no_grad():
        before = _similarity(tiny_clip, x, rendered)
        after = _similarity(tiny_clip, x - 0.05 * grad / grad.abs().amax(dim=(1, 2, 3), keepdim=True), rendered)
    assert (after < before).all(), (before, after)
    # the whole guard: the same descent lowers its penalty
    full = TypographyGuard(tiny_clip, [prompt], strength=1.0)
    ctx = GuidanceContext(mask, x.detach())
    loss = full.loss(x, ctx)
    grad = torch.autograd.grad(loss.sum(), x)[0]
    with torch.no_grad():
        stepped = full.loss(x - 0.05 * grad / grad.abs().amax(dim=(1, 2, 3), keepdim=True), ctx)
    assert (stepped < loss.detach()).all()


def test_the_written_prompt_scores_worse_with_the_guard(tiny_clip):
    prompt = "a bowl of cherries"
    written = resize_for_clip(render_text(prompt), 32) * 2 - 1  # the prompt written as text, as an image
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    images, mask = torch.cat([written, other]), torch.ones(2, 1, 32, 32)
    plain = ClipGuidance(tiny_clip, prompt).score(images, mask)
    guarded = ClipGuidance(tiny_clip, prompt, typography=0.5).score(images, mask)
    assert guarded[0] > plain[0]
    # a blank (grey) view is not penalised at all: the guard leaves D_CLIP's scale alone
    blank = torch.zeros(1, 3, 32, 32)
    guard = TypographyGuard(tiny_clip, [prompt], strength=0.5)
    penalty = guard.loss(torch.cat([written, blank]), GuidanceContext(torch.ones(2, 1, 32, 32), blank))
    assert penalty[0] > 0 and penalty[1].abs() < 1e-6


def test_guard_shares_clip_guidance_forward_and_scales_with_lambda(tiny_clip):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 4:28, 4:28] = 1
    ctx = GuidanceContext(mask, x)
    plain = ClipGuidance(tiny_clip, "a red ball | a blue cube:-0.5", weight=10.0)
    guarded = ClipGuidance(tiny_clip, "a red ball | a blue cube:-0.5", weight=10.0, typography=0.3)
    assert guarded.guard.prompts == ["a red ball"]  # only what is asked for is rendered
    standalone = TypographyGuard(tiny_clip, ["a red ball"], strength=0.3).loss(x, ctx)
    torch.testing.assert_close(guarded.loss(x, ctx), plain.loss(x, ctx) + 10.0 * standalone, rtol=1e-5, atol=1e-5)
    assert ClipGuidance(tiny_clip, "a red ball", typography=0.0).guard is None
