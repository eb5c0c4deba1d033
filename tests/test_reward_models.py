"""Reward models (HPSv2.1, PickScore v1, LAION aesthetic v2) against frozen copies of their authors'
score formulas, fed the views the authors' libraries make (tests/test_reward_preprocessing.py checks
those), on tiny random models in the real architectures, loaded from files like real ones."""

import pickle

import pytest
import torch

from blended.errors import CheckpointError
from blended.reward_models import load_reward
from tests.support.reference_views import aesthetic_view, hf_clip_tokenizer, hf_ids, hps_view, pickscore_view
from tests.support.tiny_rewards import save_tiny_aesthetic, save_tiny_hps, save_tiny_pick

MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)


def images(n=3, h=40, w=56, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def normalised(view, x, size, clamp=True):
    """The authors' view of each picture (``tests.support.reference_views``), OpenAI-normalised;
    ``clamp`` as PIL's 8-bit pixels do (PickScore, aesthetic; HPSv2 resizes the float tensor)."""
    views = torch.stack([view(im, size) for im in x])
    return ((views.clamp(0, 1) if clamp else views) - MEAN) / STD


def tokens(prompt):
    import open_clip

    return open_clip.get_tokenizer("ViT-H-14")([prompt])


def test_hpsv2_is_the_cosine_of_normalised_features(tmp_path):
    model, path = save_tiny_hps(tmp_path / "HPS_v2.1_compressed.pt")
    reward = load_reward("hpsv2", path)
    x = images()
    with torch.no_grad():
        # HPSv2's img_score.py: image_features @ text_features.T, diagonal (both normalised, no scale)
        img = model.encode_image(normalised(hps_view, x, 32, clamp=False), normalize=True)
        txt = model.encode_text(tokens("a red ball"), normalize=True)
        expected = (img @ txt.T)[:, 0]
    got = reward.score(x, [("a red ball", 1.0)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the pad matters: a centre crop (the other CLIP preprocessing) gives another score
    with torch.no_grad():
        cropped = (model.encode_image(normalised(pickscore_view, x, 32), normalize=True) @ txt.T)[:, 0]
    assert (cropped - got).abs().max() > 1e-3
    assert reward.model.visual.transformer.resblocks[0].attn.num_heads == 2  # 160 / ViT-H-14's 80


def test_pickscore_is_the_scaled_cosine(tmp_path):
    model, path = save_tiny_pick(tmp_path / "PickScore_v1.safetensors")
    reward = load_reward("pickscore", path)
    x = images(seed=1)
    with torch.no_grad():
        # PickScore's README: logit_scale.exp() * (text_embs @ image_embs.T)[0], both normalised
        image_embs = model.get_image_features(pixel_values=normalised(pickscore_view, x, 32))
        image_embs = getattr(image_embs, "pooler_output", image_embs)
        image_embs = image_embs / image_embs.norm(dim=-1, keepdim=True)
        text_embs = model.get_text_features(input_ids=hf_ids(hf_clip_tokenizer(tmp_path), ["a cat &amp; a dog"]))
        text_embs = getattr(text_embs, "pooler_output", text_embs)
        text_embs = text_embs / text_embs.norm(dim=-1, keepdim=True)
        expected = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
    got = reward.score(x, [("a cat &amp; a dog", 1.0)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert got.abs().max() > 1e-3


def test_aesthetic_is_the_mlp_over_normalised_vit_l_embeddings(tmp_path):
    mlp_path, clip_path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth", tmp_path / "ViT-L-14.pt"
    mlp, clip_sd = save_tiny_aesthetic(mlp_path, clip_path)
    reward = load_reward("aesthetic", mlp_path, clip_path)
    x = images(seed=2)
    from blended.clip_model import clip_from_state_dict

    clip = clip_from_state_dict(clip_sd)
    with torch.no_grad():
        # simple_inference.py: prediction = model(normalized(clip.encode_image(preprocess(img))))
        feats = clip.model.encode_image(normalised(aesthetic_view, x, 32)).float()
        expected = mlp(feats / feats.norm(dim=-1, keepdim=True))[:, 0]
    got = reward.score(x)  # the aesthetic predictor has no prompt
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_weighted_prompts_average_the_scores(tmp_path):
    _, path = save_tiny_hps(tmp_path / "h.pt")
    reward = load_reward("hpsv2", path)
    x = images(2)
    a, b = reward.score(x, [("a", 1.0)]), reward.score(x, [("b", 1.0)])
    torch.testing.assert_close(reward.score(x, [("a", 0.75), ("b", 0.25)]), 0.75 * a + 0.25 * b)


class Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_no_code_runs_from_a_reward_file(tmp_path, capsys):
    path = tmp_path / "HPS_v2.1_compressed.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Boom()}, f)
    with pytest.raises(CheckpointError):
        load_reward("hpsv2", path)
    assert "code ran" not in capsys.readouterr().out


def test_wrong_files_are_named(tmp_path):
    _, hps = save_tiny_hps(tmp_path / "h.pt")
    with pytest.raises(CheckpointError, match="transformers CLIPModel"):
        load_reward("pickscore", hps)
    with pytest.raises(CheckpointError, match="aesthetic MLP"):
        load_reward("aesthetic", hps, hps)
    with pytest.raises(CheckpointError, match="choose one of"):
        load_reward("imagereward", hps)


@pytest.mark.parametrize("h, w", [(225, 1), (1, 300), (3, 5)])
def test_preprocessing_takes_a_one_pixel_strip(h, w):
    """HPSv2's longest-side resize rounds a 1 px side to 0 (a 1x300 selection); it keeps 1 pixel."""
    from blended.reward_models import longest_side_pad, shortest_side_crop

    x = torch.rand(2, 3, h, w)
    assert longest_side_pad(x, 32).shape == (2, 3, 32, 32)
    assert shortest_side_crop(x, 32).shape == (2, 3, 32, 32)
