"""CLIP loading: local files in OpenAI's layout (state dict and TorchScript), hub tag offline, errors."""

import warnings

import pytest
import torch

from blended.clip_model import HUB_DEFAULT, load_clip
from blended.errors import CheckpointError
from tests.support.tiny_clip import save_tiny_clip, tiny_clip_state_dict
from tests.support.tiny_unet import save_tiny_unet


def test_state_dict_file_builds_quickgelu_clip_with_real_tokenizer(tmp_path):
    for name in ("tiny.safetensors", "tiny.pt"):
        bundle = load_clip(save_tiny_clip(tmp_path / name))
        assert bundle.image_size == 32 and bundle.context_length == 77
        # QuickGELU, as OpenAI trained ViT-B/16 (plain GELU silently degrades guidance).
        assert type(bundle.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        assert not any(p.requires_grad for p in bundle.model.parameters())
        assert bundle.encode_text(["a cat", "a dog"]).shape == (2, 32)
        image = torch.rand(1, 3, 32, 32, requires_grad=True)
        bundle.encode_image(image).sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0


def test_openai_torchscript_archive_loads(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    )
    model.load_state_dict(tiny_clip_state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model.eval()).save(str(tmp_path / "ViT-B-16.pt"))
        bundle = load_clip(tmp_path / "ViT-B-16.pt")
    reference = load_clip(save_tiny_clip(tmp_path / "same.safetensors"))
    torch.testing.assert_close(bundle.encode_text(["a red ball"]), reference.encode_text(["a red ball"]))


def test_hub_tag_offline_says_where_to_put_the_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        load_clip(HUB_DEFAULT)
    message = str(err.value)
    assert "models/blended_clip/" in message and "ViT-B-16.pt" in message and "HF_HUB_OFFLINE" in message


def test_bad_clip_files_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*models/blended_clip/"):
        load_clip(tmp_path / "missing.safetensors")
    unet = save_tiny_unet(tmp_path / "unet.safetensors")
    with pytest.raises(CheckpointError, match="is a diffusion UNet.*models/blended_diffusion/"):
        load_clip(unet)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="could not be read.*download it again"):
        load_clip(broken)
    partial = tiny_clip_state_dict()
    partial.pop("ln_final.weight")
    partial.pop("ln_final.bias")
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="does not match a CLIP ViT layout"):
        load_clip(tmp_path / "partial.pt")
