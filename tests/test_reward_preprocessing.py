"""Each reward model sees the pixels and tokens its authors' code gives it, checked against the
libraries that code calls (``tests.support.reference_views``), on non-square, small and large boxes.

Max |diff| in 0..1 pixel units, per model:
- float path (the library fed the same float tensor): 0 for all three. PickScore and aesthetic
  are compared after clamping the library's output to 0..1, because their authors' libraries write
  8-bit PIL pixels (clamped); HPSv2 resizes the float tensor and is compared unclamped.
- PIL path (the authors' 8-bit route): at most ``PIL_TOLERANCE`` = 2/255 on pictures whose values
  stay inside 0.25..0.75, so that no pass overshoots 0..1. PIL resizes in two passes and rounds the
  first to 8 bits, so the float result differs by up to about one level (measured: 0.0042 on
  upscales, 0.0038 on downscales). Outside that band PIL also clamps between passes, which a float
  resize cannot mimic (up to 0.08 on upscaled white noise; mean 0.0015).
"""

import pytest
import torch

from blended.reward_models import HFClipTokenizer, longest_side_pad, shortest_side_crop, shortest_side_size
from tests.support.reference_views import aesthetic_view, hf_clip_tokenizer, hf_ids, hps_view, pickscore_view

BOXES = [(480, 640), (750, 1000), (640, 480), (37, 53), (53, 37), (100, 100), (301, 1201), (224, 100), (13, 224)]
PIL_TOLERANCE = 2 / 255


def picture(h, w, lo=0, hi=255, seed=0):
    """A [3,H,W] picture of whole 8-bit levels (so PIL holds it exactly), values in lo..hi."""
    g = torch.Generator().manual_seed(seed + h * 7 + w)
    return torch.randint(lo, hi + 1, (3, h, w), generator=g).float() / 255


def pack_pickscore(x):
    return shortest_side_crop(x[None], 224, offset="floor")[0]


def pack_aesthetic(x):
    return shortest_side_crop(x[None], 224, offset="round")[0]


def pack_hps(x):
    return longest_side_pad(x[None], 224)[0]


@pytest.mark.parametrize("h, w", BOXES)
def test_pickscore_view_is_transformers_clip_image_processor(h, w):
    x = picture(h, w)
    ref = pickscore_view(x, 224)
    assert (pack_pickscore(x) - ref.clamp(0, 1)).abs().max() == 0


@pytest.mark.parametrize("h, w", BOXES)
def test_aesthetic_view_is_openai_clip_transform(h, w):
    x = picture(h, w)
    ref = aesthetic_view(x, 224)
    assert (pack_aesthetic(x) - ref.clamp(0, 1)).abs().max() == 0


@pytest.mark.parametrize("h, w", BOXES)
def test_hps_view_is_the_unclamped_float_resize_and_pad(h, w):
    x = picture(h, w)
    ref = hps_view(x, 224)
    assert (pack_hps(x) - ref).abs().max() == 0


def test_hps_keeps_the_overshoot_of_an_upscaled_hard_edge():
    """HPSv2's ToTensor comes before the resize, so a small box's hard edges overshoot 0..1: the
    model sees that, and a clamp would change those pixels."""
    x = picture(37, 53)
    ours = pack_hps(x)
    assert ours.min() < -0.01 and ours.max() > 1.01
    assert (ours - hps_view(x, 224)).abs().max() == 0


@pytest.mark.parametrize("view, pack", [(pickscore_view, pack_pickscore), (aesthetic_view, pack_aesthetic),
                                        (hps_view, pack_hps)])
@pytest.mark.parametrize("h, w", BOXES)
def test_views_match_the_8_bit_pil_route(view, pack, h, w):
    x = picture(h, w, lo=64, hi=192)
    diff = (pack(x) - view(x, 224, pil=True)).abs()
    assert diff.max() <= PIL_TOLERANCE
    assert diff.mean() < 0.5 / 255


def test_the_long_side_is_truncated_and_the_crop_offsets_follow_each_library():
    """480x640 and 750x1000: 224x298 (not 299, which rounding gives) and columns 37..260."""
    assert shortest_side_size(480, 640, 224) == (224, 298)
    assert shortest_side_size(1000, 750, 224) == (298, 224)
    # a 75 px margin: transformers floors (37), torchvision's CenterCrop rounds half to even (38)
    x = torch.arange(299.0).view(1, 1, 1, 299).expand(1, 3, 224, 299) / 298
    assert shortest_side_crop(x, 224, "floor")[0, 0, 0, 0] * 298 == pytest.approx(37)
    assert shortest_side_crop(x, 224, "round")[0, 0, 0, 0] * 298 == pytest.approx(38)


PROMPTS = [
    "a photo of a cat",
    "Tom &amp; Jerry",
    "l&#39;été à Paris",
    "\u201ccurly quotes\u201d and \u2018apostrophes\u2019",
    "\ufb01ne ligature \uff26\uff35\uff2c\uff2c width",
    "caf\u00e9 nai\u0308ve",
    "multiple   spaces\tand\nnewlines",
    "it's 3 o'clock, 12.5% 🍒",
    " ".join(["cherries"] * 100),
]


def test_pickscore_tokens_are_the_hugging_face_fast_tokenizers(tmp_path):
    ref = hf_ids(hf_clip_tokenizer(tmp_path), PROMPTS)
    assert torch.equal(HFClipTokenizer()(PROMPTS), ref)


def test_open_clip_tokens_differ_on_entities_and_curly_quotes():
    """Why PickScore has its own tokeniser: open_clip runs ftfy and HTML unescaping first."""
    import open_clip

    ours = HFClipTokenizer()(PROMPTS[1:5])
    oc = open_clip.get_tokenizer("ViT-H-14")(PROMPTS[1:5])
    oc = oc.masked_fill(oc == 0, 49407)  # open_clip pads with 0, Hugging Face with the end token
    assert (ours != oc).any(1).all()
