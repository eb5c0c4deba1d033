"""Ranking by several criteria: today's order kept exactly, mean rank and z-score, the reward-hacking
guard, and reward models in chunks (batch 64) with progress, Cancel and freeing per model."""

import contextlib

import pytest
import torch

from blended import memory
from blended.errors import InputError
from blended.guidance import ClipGuidance
from blended.metrics import seam_score
from blended.ranking import RankingWeights, RewardCriterion, score_samples
from blended.reward_models import load_reward
from tests.support.tiny_rewards import save_tiny_hps


def frozen_today(images, mask, guidance, weights, scene_prompt="", chunk=16):
    """score_samples' total and table as they were before reward criteria (the parent commit)."""
    from blended.ranking import SceneScore

    n = images.shape[0]
    mask = mask.expand(n, *mask.shape[1:])
    with torch.no_grad():
        crit = {"clip": torch.cat([guidance.score(images[i:i + chunk], mask[i:i + chunk]) for i in range(0, n, chunk)])}
        crit["seam"] = seam_score(images.add(1).div(2), mask, 2)
        if scene_prompt:
            scene = SceneScore(guidance, scene_prompt)
            crit["scene"] = torch.cat([scene(images[i:i + chunk]) for i in range(0, n, chunk)])
    total = None
    for k in ("clip", "seam", "scene"):
        w = getattr(weights, k)
        if w:
            term = crit[k] if w == 1.0 else w * crit[k]
            total = term if total is None else total + term
    return torch.argsort(total, stable=True), total, crit


@pytest.fixture
def mask():
    m = torch.zeros(1, 1, 32, 32)
    m[..., 8:24, 10:22] = 1
    return m


@pytest.fixture(scope="module")
def hps(tmp_path_factory):
    _, path = save_tiny_hps(tmp_path_factory.mktemp("hps") / "HPS_v2.1_compressed.pt")
    return load_reward("hpsv2", path)


def batch(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("weights,scene", [(RankingWeights(), ""), (RankingWeights(1.0, 0.7, 0.0), ""),
                                           (RankingWeights(0.5, 2.0, 1.5), "a room")])
def test_only_the_old_criteria_rank_exactly_as_before(tiny_clip, mask, weights, scene):
    images = batch(12)
    guidance = ClipGuidance(tiny_clip, "a red ball")
    order, total, crit = frozen_today(images, mask, guidance, weights, scene, chunk=5)
    for extra in ({}, {"combine": "auto"}, {"rewards": ()}):
        table = score_samples(images, mask, guidance, weights, scene, chunk=5, **extra)
        assert torch.equal(table.order, order) and torch.equal(table.total, total)
        assert all(torch.equal(table.criteria[k], v) for k, v in crit.items())
        assert table.format(4).startswith(f"ranked 12 samples by {weights.clip:g} x D_CLIP")
    # an unavailable reward model changes nothing but a note line
    missing = RewardCriterion(None, 1.0, note="HPS_v2.1_compressed.pt is missing", name="HPSv2.1")
    table = score_samples(images, mask, guidance, weights, scene, chunk=5, rewards=(missing,))
    assert torch.equal(table.order, order) and torch.equal(table.total, total)
    first, rest = table.format(4).split("\n", 1)
    assert first == "HPSv2.1 (box) not used: HPS_v2.1_compressed.pt is missing"
    assert rest == score_samples(images, mask, guidance, weights, scene, chunk=5).format(4)
    # two unavailable models (a shipped template offline): still one note line, naming both
    other = RewardCriterion(None, 1.0, view="whole_image", note="PickScore_v1.safetensors is missing",
                            name="PickScore")
    table = score_samples(images, mask, guidance, weights, scene, chunk=5, rewards=(missing, other))
    first, rest = table.format(4).split("\n", 1)
    assert first == ("HPSv2.1 (box) not used: HPS_v2.1_compressed.pt is missing; "
                     "PickScore (whole) not used: PickScore_v1.safetensors is missing")
    assert rest == score_samples(images, mask, guidance, weights, scene, chunk=5).format(4)


def ranks(v, higher=False):
    """Independent reference: 1 + how many are strictly better + half the ties."""
    v = -v if higher else v
    return torch.tensor([1 + float((v < x).sum()) + (float((v == x).sum()) - 1) / 2 for x in v])


def test_mean_rank_and_z_score_are_the_weighted_means(tiny_clip, mask, hps):
    images = batch(9, seed=3)
    guidance = ClipGuidance(tiny_clip, "a red ball")
    rewards = (RewardCriterion(hps, 2.0, "mask_box"), RewardCriterion(hps, 0.5, "whole_image"))
    whole = batch(9, seed=4)
    table = score_samples(images, mask, guidance, RankingWeights(1.0, 1.0), rewards=rewards, whole_images=whole)
    clip, seam = table.criteria["clip"], table.criteria["seam"]
    prompt = [("a red ball", 1.0)]
    box, full = hps.score(images.add(1).div(2), prompt), hps.score(whole.add(1).div(2), prompt)
    torch.testing.assert_close(table.criteria["reward0"], box)
    torch.testing.assert_close(table.criteria["reward1"], full)
    expected = (ranks(clip) + ranks(seam) + 2 * ranks(box, True) + 0.5 * ranks(full, True)) / 4.5
    torch.testing.assert_close(table.total.double(), expected.double(), atol=1e-6, rtol=0)
    assert torch.equal(table.order, torch.argsort(table.total, stable=True))
    assert table.combine == "mean_rank"  # auto, with reward models

    def z(v):
        return (v.double() - v.double().mean()) / v.double().std(unbiased=False)

    zt = score_samples(images, mask, guidance, RankingWeights(1.0, 1.0), rewards=rewards, whole_images=whole,
                       combine="z_score")
    expected = (z(clip) + z(seam) - 2 * z(box) - 0.5 * z(full)) / 4.5
    torch.testing.assert_close(zt.total.double(), expected, atol=1e-5, rtol=0)
    text = table.format(3)
    assert "weighted mean rank of 1 x D_CLIP + 1 x seam + 2 x HPSv2.1 (box) + 0.5 x HPSv2.1 (whole)" in text
    assert text.count("(rank ") == 3 * 4
    with pytest.raises(InputError, match="combine 'best'"):
        score_samples(images, mask, guidance, rewards=rewards, combine="best")


class Brightness:
    """What a hacked reward likes (HPSv2's bias toward brightness, Follow-Your-Preference): mean luminance."""

    label, model = "bright-lover", None

    def score(self, images01, prompts=None):
        return images01.mean(dim=(1, 2, 3))


class Exposure:
    """Prefers the exposure of the surroundings: minus the gap between inside and outside means."""

    label, model = "exposure", None

    def __init__(self, mask):
        self.mask = mask

    def score(self, images01, prompts=None):
        m = self.mask.expand(images01.shape[0], 3, -1, -1)
        inside = (images01 * m).sum((1, 2, 3)) / m.sum((1, 2, 3))
        outside = (images01 * (1 - m)).sum((1, 2, 3)) / (1 - m).sum((1, 2, 3))
        return -(inside - outside).abs()


def test_one_fooled_criterion_does_not_pick_the_brightened_copy(tiny_clip, mask):
    g = torch.Generator().manual_seed(5)
    source = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 40, generator=g), 9, stride=1)  # smooth, 32x32
    samples = []
    for _ in range(4):  # plausible edits: slightly different content that blends in
        samples.append(torch.lerp(source, source.flip(-1), 0.3 * torch.rand(1, generator=g).item()))
    bright = source.clone()
    bright = torch.where(mask > 0, (samples[0] * 1.6).clamp(0, 1), samples[0])  # the edit, brightened
    images = torch.cat(samples + [bright]) * 2 - 1
    guidance = ClipGuidance(tiny_clip, "a red ball")
    hacked = (RewardCriterion(Brightness()),)
    only = RankingWeights(0.0, 0.0, allow_zero=True)
    alone = score_samples(images, mask, guidance, only, rewards=hacked)
    assert alone.order[0] == 4  # ranked by the fooled reward alone, the brightened copy wins
    both = hacked + (RewardCriterion(Exposure(mask)),)
    table = score_samples(images, mask, guidance, RankingWeights(0.0, 1.0), rewards=both)
    assert table.ranks["reward0"][4] == 1 and table.order[0] != 4 and table.order[-1] == 4
    assert table.flags[4] == "reward0" and int(table.order[0]) not in table.flags
    r = {"seam": ranks(table.criteria["seam"]), "reward0": ranks(table.criteria["reward0"], True),
         "reward1": ranks(table.criteria["reward1"], True)}
    expected = {i: k for i in range(5) for k in r if r[k][i] == 1 and all(r[j][i] > 3 for j in r if j != k)}
    assert table.flags == expected
    line = [t for t in table.format().splitlines() if " sample 4 " in t][0]
    assert "first only on bright-lover (box), in the worse half on every other criterion" in line
    # two criteria are enough: the brightened copy is first on the fooled reward, worse half on the seam
    table = score_samples(images, mask, guidance, RankingWeights(0.0, 1.0), rewards=hacked)
    assert table.flags[4] == "reward0"
    demoted = score_samples(images, mask, guidance, RankingWeights(0.0, 1.0), rewards=hacked, demote=True)
    assert set(demoted.order[-len(demoted.flags):].tolist()) == set(demoted.flags)
    with pytest.raises(InputError, match="no reward model with a weight is available"):
        score_samples(images, mask, guidance, only, rewards=(RewardCriterion(None, 1.0, note="missing"),))


def test_64_samples_in_chunks_with_progress_cancel_and_freeing(tiny_clip, mask, hps):
    images = batch(64, seed=7)
    guidance = ClipGuidance(tiny_clip, "a red ball")
    rewards = (RewardCriterion(hps, 1.0), RewardCriterion(hps, 1.0, "whole_image"))
    events = []

    @contextlib.contextmanager
    def on_device(reward):
        events.append("on")
        try:
            yield
        finally:
            events.append("off")

    # the memory planner's chunk: the budget of 10 images' activations, less the fixed part
    cost = memory.reward_cost(hps)
    budget = int((cost.fixed + 10.5 * cost.per_sample) / memory.HEADROOM)
    assert memory.reward_chunk(hps, 64, budget) == 10 and memory.reward_chunk(hps, 4, budget) == 4
    progress = []
    table = score_samples(images, mask, guidance, rewards=rewards,
                          reward_chunk=lambda r, n: memory.reward_chunk(r, n, budget),
                          progress=lambda d, t: progress.append((d, t)), on_device=on_device)
    assert progress == [(i, 14) for i in range(1, 15)]  # 2 models x ceil(64 / 10)
    assert events == ["on", "off", "on", "off"]  # one model at a time, each freed when done
    whole = score_samples(images, mask, guidance, rewards=rewards, chunk=64)
    assert torch.allclose(table.criteria["reward0"], whole.criteria["reward0"], atol=1e-5)

    class Cancelled(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) == 8:  # 4 CLIP chunks of 16, then the 4th reward chunk
            raise Cancelled

    events.clear()
    progress.clear()
    with pytest.raises(Cancelled):
        score_samples(images, mask, guidance, rewards=rewards, reward_chunk=lambda r, n: 10, check=check,
                      progress=lambda d, t: progress.append((d, t)), on_device=on_device)
    assert progress[-1] == (3, 14) and events == ["on", "off"]  # stopped between chunks, model freed


def test_lone_winner_is_first_on_one_and_in_the_worse_half_on_every_other():
    from blended.ranking import lone_winners

    t = torch.tensor
    r = {"a": t([1.0, 2, 3, 4, 5]), "b": t([5.0, 4, 1, 2, 3]), "c": t([4.0, 5, 2, 1, 3])}
    assert lone_winners(r, ["a", "b", "c"]) == {0: "a"}  # 1 on a, 5 and 4 elsewhere
    # second place is not winning; the median (3 of 5) is not the worse half
    assert lone_winners({"a": t([2.0, 3, 1, 4, 5]), "b": t([5.0, 4, 1, 2, 3]), "c": t([4.0, 5, 2, 1, 3])},
                        ["a", "b", "c"]) == {}
    assert lone_winners({"a": t([1.0, 2, 3, 4, 5]), "b": t([3.0, 4, 1, 2, 5]), "c": t([4.0, 5, 2, 1, 3])},
                        ["a", "b", "c"]) == {}
    assert lone_winners(r, ["a", "b"]) == {0: "a"}  # two criteria: 1 and 5 of 5; sample 2 is 1 and 3 (median)
    assert lone_winners(r, ["a"]) == {}  # one criterion: nothing to disagree with
