"""Ranking beyond the mask: the paper's order at weight 0, seams, the scene prompt, ties, the table."""

import numpy as np
import pytest
import torch
from skimage import data, transform

from blended.errors import InputError
from blended.guidance import ClipGuidance, TextTargets
from blended.prompts import prompt_set
from blended.ranking import RankingWeights, rank, score_samples


def frozen_rank(images, mask, clip_guidance, chunk=16):
    """blended.ranking.rank as it was before the new criteria (commit 3347adb), kept as the reference."""
    if mask.shape[0] == 1:
        mask = mask.expand(images.shape[0], *mask.shape[1:])
    with torch.no_grad():
        scores = torch.cat(
            [clip_guidance.score(images[i : i + chunk], mask[i : i + chunk]) for i in range(0, images.shape[0], chunk)]
        )
    order = torch.argsort(scores, stable=True)
    return order, scores[order]


def photo(name, size=64):
    img = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1


@pytest.fixture
def box_mask():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 20:44] = 1
    return mask


def test_new_weights_at_zero_give_the_papers_order(tiny_clip, box_mask):
    images = torch.rand(20, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    guidance = ClipGuidance(tiny_clip, "a red ball")
    expected = frozen_rank(images, box_mask, guidance, chunk=7)
    for kwargs in ({}, {"weights": RankingWeights(1.0, 0.0, 0.0)},
                   {"weights": RankingWeights(), "scene_prompt": "a room"}):
        order, scores = rank(images, box_mask, guidance, chunk=7, **kwargs)
        assert torch.equal(order, expected[0]) and torch.equal(scores, expected[1]), kwargs


def test_a_pasted_discontinuity_ranks_below_a_smooth_edit(tiny_clip, box_mask):
    source, new = photo("astronaut"), photo("coffee")
    # the same new content, once blended in over a few pixels, once pasted with a hard edge
    inner = torch.zeros_like(box_mask)
    inner[..., 22:42, 26:38] = 1
    soft = torch.nn.functional.avg_pool2d(inner, 13, stride=1, padding=6) * box_mask
    smooth = torch.lerp(source, new, soft)
    pasted = torch.where(box_mask > 0, new, source)
    guidance = ClipGuidance(tiny_clip, "a cup of coffee")
    for images, smooth_index in ((torch.cat([pasted, smooth]), 1), (torch.cat([smooth, pasted]), 0)):
        table = score_samples(images, box_mask, guidance, RankingWeights(clip=1.0, seam=1.0))
        seam = table.criteria["seam"]
        assert seam[smooth_index] < 0.04 and seam[1 - smooth_index] > 3 * seam[smooth_index]
        assert table.order[0].item() == smooth_index
    # the seam alone decides even when CLIP happens to like the pasted one better
    d = guidance.score(torch.cat([pasted, smooth]), box_mask)
    big = float((d[0] - d[1]).abs() / (seam[0] - seam[1]).abs()) * 2 + 1
    table = score_samples(torch.cat([pasted, smooth]), box_mask, guidance, RankingWeights(clip=1.0, seam=big))
    assert table.order.tolist() == [1, 0]


def test_ties_keep_their_order(tiny_clip, box_mask):
    a, b = photo("astronaut"), photo("coffee")
    guidance = ClipGuidance(tiny_clip, "a cup of coffee")
    d = guidance.score(torch.cat([a, b]), box_mask)
    better, worse = (0, 1) if d[0] <= d[1] else (1, 0)
    pair = [a, b]
    images = torch.cat([pair[worse], pair[better], pair[worse], pair[better], pair[better]])
    for weights in (RankingWeights(), RankingWeights(1.0, 0.5), RankingWeights(0.0, 1.0)):
        table = score_samples(images, box_mask, guidance, weights)
        # identical samples have identical scores: they keep the order they came in
        if weights.clip:
            assert table.order.tolist()[:3] == [1, 3, 4] and table.order.tolist()[3:] == [0, 2]
        assert [i for i in table.order.tolist() if i in (1, 3, 4)] == [1, 3, 4]
    same = score_samples(a.expand(6, -1, -1, -1), box_mask, guidance, RankingWeights(1.0, 1.0))
    assert same.order.tolist() == list(range(6))


def test_scene_score_judges_the_unmasked_view(tiny_clip, box_mask):
    images = torch.cat([photo("astronaut"), photo("coffee"), photo("chelsea")])
    guidance = ClipGuidance(tiny_clip, "a red ball", distance="cosine")
    table = score_samples(images, box_mask, guidance, RankingWeights(clip=0.0, scene=1.0),
                          scene_prompt="a cat:2 | a room")
    expected = TextTargets(tiny_clip, prompt_set("a cat:2 | a room"), "cosine")(
        tiny_clip.encode_image(torch.nn.functional.adaptive_avg_pool2d(images.add(1).div(2), 32)))
    torch.testing.assert_close(table.criteria["scene"], expected)
    assert torch.equal(table.total, table.criteria["scene"])
    assert torch.equal(table.order, torch.argsort(expected, stable=True))
    # another view (e.g. the whole image while the samples are cropped to the mask's box)
    whole = torch.nn.functional.pad(images, (8, 8, 8, 8))
    other = score_samples(images, box_mask, guidance, RankingWeights(), scene_prompt="a cat", scene_images=whole)
    assert not torch.equal(other.criteria["scene"], table.criteria["scene"])
    with pytest.raises(InputError, match="scene images: 2 views for 3 samples"):
        score_samples(images, box_mask, guidance, RankingWeights(), scene_prompt="a cat", scene_images=whole[:2])


def test_weighted_total_and_table(tiny_clip, box_mask):
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    guidance = ClipGuidance(tiny_clip, "a red ball")
    w = RankingWeights(clip=0.5, seam=2.0, scene=0.25)
    table = score_samples(images, box_mask, guidance, w, scene_prompt="a garden")
    c = table.criteria
    assert set(c) == {"clip", "seam", "scene"} and all(v.shape == (5,) for v in c.values())
    torch.testing.assert_close(table.total, 0.5 * c["clip"] + 2.0 * c["seam"] + 0.25 * c["scene"])
    text = table.format(top_k=3)
    lines = text.splitlines()
    assert lines[0] == "ranked 5 samples by 0.5 x D_CLIP + 2 x seam + 0.25 x scene (lower is better):"
    assert len(lines) == 4
    for r, line in enumerate(lines[1:]):
        i = table.order[r].item()
        assert line == (f"#{r + 1}: sample {i}  D_CLIP {c['clip'][i]:.4f}  seam {c['seam'][i]:.4f}  "
                        f"scene {c['scene'][i]:.4f}  total {table.total[i]:.4f}")
    # without a scene prompt the table has no scene column; the paper's weights name only D_CLIP
    plain = score_samples(images, box_mask, guidance).format()
    assert plain.startswith("ranked 5 samples by 1 x D_CLIP (lower") and "scene" not in plain
    assert len(plain.splitlines()) == 6 and "  seam " in plain.splitlines()[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clip": float("nan")}, "clip_weight is nan"),
        ({"seam": -1.0}, "seam_weight is -1.0"),
        ({"scene": float("inf")}, "scene_weight is inf"),
        ({"clip": 0.0}, "all 0: nothing to rank by"),
    ],
)
def test_bad_weights_name_the_input(kwargs, message):
    with pytest.raises(InputError, match=message):
        RankingWeights(**kwargs)


def test_scene_weight_needs_a_scene_prompt(tiny_clip, box_mask):
    images = torch.zeros(2, 3, 64, 64)
    guidance = ClipGuidance(tiny_clip, "a red ball")
    with pytest.raises(InputError, match="scene_weight is 0.5 but scene_prompt is empty"):
        score_samples(images, box_mask, guidance, RankingWeights(scene=0.5), scene_prompt=" \n ")
    with pytest.raises(InputError, match="scene_prompt: 'a cat:nan' has weight nan"):
        score_samples(images, box_mask, guidance, RankingWeights(scene=0.5), scene_prompt="a cat:nan")
    with pytest.raises(InputError, match="scene_prompt has no prompt with a positive weight"):
        score_samples(images, box_mask, guidance, RankingWeights(scene=0.5), scene_prompt="a cat:-1")
    with pytest.raises(InputError, match="scene_prompt entry .* CLIP tokens long"):
        score_samples(images, box_mask, guidance, RankingWeights(scene=0.5), scene_prompt="a | " + "long words " * 40)


def test_typography_guard_and_prompts_rank_too(tiny_clip, box_mask):
    """Ranking scores with the guidance's own combination: weighted prompts, negative prompt, guard."""
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    guidance = ClipGuidance(tiny_clip, "a red ball:2 | a toy", negative_prompt="blurry", typography=0.5)
    table = score_samples(images, box_mask, guidance)
    torch.testing.assert_close(table.criteria["clip"], guidance.score(images, box_mask.expand(4, -1, -1, -1)))
