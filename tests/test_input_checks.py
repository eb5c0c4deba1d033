"""Library-level input checks behind the hostile-inputs engine tests: fast, no server."""

from __future__ import annotations

import pytest
import torch

from blended.errors import InputError
from blended.guidance import ClipGuidance
from blended.pixel.edit import RegionSettings, prepare_masks


class Cancelled(Exception):
    pass


def test_mask_preparation_checks_for_cancel_between_phases():
    mask = torch.zeros(1, 1, 300, 400)
    mask[..., 100:200, 100:300] = 1
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:  # after dilation, before feathering
            raise Cancelled

    with pytest.raises(Cancelled):
        prepare_masks(mask, RegionSettings(dilate=50, feather=50), check)
    assert len(calls) == 2
    calls.clear()
    edit, paste = prepare_masks(mask, RegionSettings(dilate=5, feather=5), lambda: calls.append(1))
    assert len(calls) == 3 and edit.sum() > mask.sum() and paste[edit == 0].eq(0).all()


def test_a_huge_single_word_prompt_is_refused_before_tokenizing(tiny_clip, monkeypatch):
    def no_tokenizing(text):  # BPE on this one word took 4-7 s
        raise AssertionError("the tokenizer ran")

    monkeypatch.setattr(tiny_clip.tokenizer, "encode", no_tokenizing, raising=False)
    with pytest.raises(InputError, match="12000 characters long.*77 tokens"):
        ClipGuidance(tiny_clip, "x" * 12000)
    monkeypatch.undo()
    with pytest.raises(InputError, match="CLIP tokens long"):  # under the length bound: counted exactly
        ClipGuidance(tiny_clip, "ball " * 200)
    ClipGuidance(tiny_clip, "a red ball" + " " * 5000)  # whitespace does not count


def test_ranking_checks_for_cancel_before_every_chunk(tiny_clip):
    from blended.guidance import ClipGuidance
    from blended.ranking import score_samples

    images = torch.rand(5, 3, 32, 32) * 2 - 1
    mask = torch.ones(1, 1, 32, 32)
    calls = []
    score_samples(images, mask, ClipGuidance(tiny_clip, "a red ball"), chunk=2, check=lambda: calls.append(1))
    assert len(calls) == 3

    def cancel():
        raise Cancelled

    with pytest.raises(Cancelled):
        score_samples(images, mask, ClipGuidance(tiny_clip, "a red ball"), chunk=2, check=cancel)


@pytest.mark.parametrize("h, w", [(1, 1), (2, 2), (1, 300), (300, 1), (3, 5), (7, 7)])
def test_seam_score_on_images_too_small_for_its_bands(h, w):
    from blended.metrics import seam_score

    images = torch.rand(2, 3, h, w)
    mask = torch.zeros(1, 1, h, w)
    mask[..., : max(1, h // 2), : max(1, w // 2)] = 1
    score = seam_score(images, mask, 2)  # raised in torch.arange before
    assert torch.isfinite(score).all() and (score >= 0).all()
    if max(h, w) < 8:  # no room for two 2-px bands on each side in either direction
        assert torch.equal(score, torch.zeros(2))
