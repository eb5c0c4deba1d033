"""Rankings with bad values, ties and a fooled criterion (issue 29): a non-finite score is worst on
its criterion in every combine mode, is named and never wins; equal totals go by D_CLIP; the
hacking guard works with two criteria and can demote; a whole-picture reward reads the scene prompt."""

import math

import pytest
import torch

from blended.guidance import ClipGuidance
from blended.ranking import (
    RankingWeights,
    RewardCriterion,
    _ensemble,
    _weighted_sum,
    best_first,
    ranks_of,
    score_samples,
    zscores,
)

NAN, INF = float("nan"), float("inf")
t = torch.tensor


def test_a_nan_ranks_last_not_first():
    assert ranks_of(t([0.9, NAN, 0.8])).tolist() == [2.0, 3.0, 1.0]
    assert ranks_of(t([0.9, NAN, 0.8]), higher_is_better=True).tolist() == [1.0, 3.0, 2.0]
    # an infinity that would be "best" is not finite either: last, like -inf for a cost
    assert ranks_of(t([0.9, INF, 0.8]), higher_is_better=True).tolist() == [1.0, 3.0, 2.0]
    assert ranks_of(t([0.9, -INF, 0.8])).tolist() == [2.0, 3.0, 1.0]
    # two bad values share the last places' mean rank; the finite ones keep their own ranks and ties
    assert ranks_of(t([NAN, 0.5, INF, 0.5])).tolist() == [3.5, 1.5, 3.5, 1.5]


def test_one_nan_does_not_zero_the_z_scores():
    v = t([0.2, NAN, 0.6, 0.4])
    z = zscores(v)
    torch.testing.assert_close(z[[0, 2, 3]], zscores(t([0.2, 0.6, 0.4])))
    assert z[1] == z[[0, 2, 3]].max() + 1 and z.abs().sum() > 0
    assert torch.equal(zscores(t([NAN, NAN])), torch.zeros(2, dtype=torch.float64))


def crit(clip, reward):
    return {"clip": t(clip), "seam": torch.zeros(len(clip)), "reward0": t(reward)}


@pytest.mark.parametrize("combine", ["mean_rank", "z_score", "weighted_sum"])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_a_non_finite_reward_never_wins_and_is_named(combine, bad):
    """Sample 1 is best on D_CLIP and its reward is broken: in every mode it comes last."""
    c = crit([0.5, 0.1, 0.4, 0.3], [0.2, bad, 0.1, 0.3])
    table = _ensemble(c, RankingWeights(), {"reward0": 1.0}, {"reward0": "HPSv2.1 (box)"}, combine, [])
    assert table.order[-1] == 1 and table.bad == {1: ["reward0"]}
    assert math.isfinite(float(table.total[[0, 2, 3]].sum()))
    text = table.format()
    assert text.splitlines()[0] == f"non-finite scores, ranked after every sample with finite scores: " \
                                   f"sample 1: HPSv2.1 (box) {bad}"
    assert "! HPSv2.1 (box) not finite: ranked last" in [ln for ln in text.splitlines() if "sample 1 " in ln][0]


def test_a_non_finite_d_clip_ranks_last_in_the_plain_sum():
    c = {"clip": t([0.5, NAN, 0.4, -INF]), "seam": t([0.0, 0.0, 0.0, 0.0])}
    table = _weighted_sum(c, RankingWeights(), [])
    assert table.order.tolist() == [2, 0, 1, 3] and table.bad == {1: ["clip"], 3: ["clip"]}
    assert table.format().startswith("non-finite scores, ranked after every sample with finite scores: "
                                     "sample 1: D_CLIP nan; sample 3: D_CLIP -inf\nranked 4 samples by 1 x D_CLIP")


def test_equal_totals_go_by_d_clip_not_by_position():
    """Two criteria that disagree exactly: every mean rank is 2; D_CLIP (lower first) decides."""
    c = crit([0.3, 0.1, 0.2], [3.0, 1.0, 2.0])  # D_CLIP ranks 3 1 2, reward ranks 1 3 2
    table = _ensemble(c, RankingWeights(), {"reward0": 1.0}, {"reward0": "r"}, "mean_rank", [])
    assert table.total.tolist() == [2.0, 2.0, 2.0]
    assert table.order.tolist() == [1, 2, 0]
    # weights whose float sums differ in the last bit still tie: with 0.1 and 0.2, ranks (3, 3) sum to
    # 3.0 but (5, 2) and (1, 4) to 2.9999999999999996; the tie goes by D_CLIP, so (3, 3) precedes (5, 2)
    c = crit([0.3, 0.5, 0.1, 0.2, 0.4], [3.0, 4.0, 2.0, 5.0, 1.0])  # ranks (3,3) (5,2) (1,4) (2,1) (4,5)
    table = _ensemble(c, RankingWeights(0.1), {"reward0": 0.2}, {"reward0": "r"}, "mean_rank", [])
    assert table.order.tolist() == [3, 2, 0, 1, 4]
    # and equal D_CLIP too: then the samples' order
    assert best_first(t([1.0, 1.0]), t([0.2, 0.2])).tolist() == [0, 1]


def test_two_criteria_flag_the_lone_winner_and_demote_it_when_asked():
    """D_CLIP plus one reward: sample 0 is first on the reward and last on D_CLIP."""
    c = crit([0.9, 0.1, 0.2, 0.3, 0.4], [9.0, 3.0, 2.0, 5.0, 4.0])
    args = (c, RankingWeights(), {"reward0": 1.0}, {"reward0": "HPSv2.1 (box)"}, "mean_rank", [])
    kept = _ensemble(*args)
    assert kept.flags == {0: "reward0", 1: "clip"} and not kept.demoted
    assert kept.order.tolist() == [1, 3, 0, 2, 4]  # totals 3, 2.5, 3.5, 2.5, 3.5; ties by D_CLIP
    demoted = _ensemble(*args, demote=True)  # the flagged two below the rest, each group in its order
    assert demoted.order.tolist() == [3, 2, 4, 1, 0] and demoted.demoted
    line = [ln for ln in demoted.format().splitlines() if "sample 0 " in ln][0]
    assert line.endswith("! first only on HPSv2.1 (box), in the worse half on every other criterion: that "
                         "criterion may be fooled (demoted below the unflagged samples)")


class Recorder:
    """A reward model that remembers the prompts it was given; scores the mean brightness."""

    label, model, uses_prompt = "recorder", None, True

    def __init__(self):
        self.prompts = []

    def score(self, images01, prompts=None):
        self.prompts.append(prompts)
        return images01.mean(dim=(1, 2, 3))


class Blind(Recorder):
    label, uses_prompt = "aesthetic", False


def test_a_whole_picture_reward_reads_the_scene_prompt(tiny_clip):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    guidance = ClipGuidance(tiny_clip, "a red ball")
    box, whole, blind = Recorder(), Recorder(), Blind()
    rewards = (RewardCriterion(box), RewardCriterion(whole, view="whole_image"), RewardCriterion(blind))
    table = score_samples(images, mask, guidance, rewards=rewards, scene_prompt="a garden:3 | a lawn")
    assert box.prompts == [[("a red ball", 1.0)]]
    assert whole.prompts == [[("a garden", 0.75), ("a lawn", 0.25)]]
    lines = table.format().splitlines()
    assert lines[1:4] == ["  recorder (box): judged on the mask's box against the edit prompt 'a red ball'",
                          "  recorder (whole): judged on the whole picture against the scene prompt "
                          "'a garden:0.75 | a lawn:0.25'",
                          "  aesthetic (box): judged on the mask's box, no prompt (it rates the image alone)"]
    # without a scene prompt the whole picture is judged against the edit's prompt, and says so
    whole.prompts.clear()
    table = score_samples(images, mask, guidance, rewards=(RewardCriterion(whole, view="whole_image"),))
    assert whole.prompts == [[("a red ball", 1.0)]]
    assert "  recorder (whole): judged on the whole picture against the edit prompt 'a red ball'" in table.format()
