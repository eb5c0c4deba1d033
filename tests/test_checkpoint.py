"""Loading ADM checkpoints from disk, every way it can go wrong, and the weights registry."""

import argparse
import hashlib
import urllib.request

import pytest
import torch
from safetensors.torch import save_file

from blended import downloads as weights
from blended.errors import CheckpointError
from blended.pixel.checkpoint import CONFIG_METADATA_KEY, load_diffusion_model, read_checkpoint, read_state_dict
from blended.pixel.unet import UNetConfig
from tests.support.tiny_clip import save_tiny_clip
from tests.support.tiny_unet import save_tiny_unet, tiny_unet_config, tiny_unet_state_dict


def reference_output(class_cond=False):
    from blended.pixel.diffusion_model import DiffusionModel
    from blended.pixel.unet import UNetModel

    unet = UNetModel(tiny_unet_config(class_cond))
    unet.load_state_dict(tiny_unet_state_dict(0, class_cond))
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([20.0, 800.0])
    with torch.no_grad():
        return x, t, DiffusionModel(unet)(x, t)


@pytest.mark.parametrize("name, class_cond", [
    ("tiny.pt", False), ("tiny.safetensors", False), ("tiny.pth", True), ("tiny_cond.safetensors", True),
])
def test_round_trip(tmp_path, name, class_cond):
    path = save_tiny_unet(tmp_path / name, seed=0, class_cond=class_cond)
    model = load_diffusion_model(path)
    assert model.config == tiny_unet_config(class_cond)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    x, t, expected = reference_output(class_cond)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), expected, rtol=0, atol=0)


def test_training_wrappers_and_dataparallel_prefix_are_unwrapped(tmp_path):
    sd = tiny_unet_state_dict(0)
    path = tmp_path / "train.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    loaded = read_state_dict(path)
    assert loaded.keys() == sd.keys()
    assert torch.equal(loaded["out.2.weight"], sd["out.2.weight"])
    torch.save({"model": sd, "step": 10}, tmp_path / "model.bin")
    assert read_state_dict(tmp_path / "model.bin").keys() == sd.keys()


def test_legacy_non_zip_pickle_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(tiny_unet_state_dict(0), path, _use_new_zipfile_serialization=False)
    assert load_diffusion_model(path).config == tiny_unet_config()


def test_safetensors_metadata_config_wins(tmp_path):
    """A config in the metadata is how non-default attention heads survive a conversion."""
    path = tmp_path / "heads.safetensors"
    cfg = UNetConfig(**{**tiny_unet_config().__dict__, "num_head_channels": 32})
    save_file(tiny_unet_state_dict(0), str(path), metadata={CONFIG_METADATA_KEY: cfg.to_json()})
    _, metadata = read_checkpoint(path)
    assert CONFIG_METADATA_KEY in metadata
    model = load_diffusion_model(path)
    assert model.config.num_head_channels == 32
    x, t, default_heads = reference_output()
    with torch.no_grad():
        assert (model(x, t) - default_heads).abs().max() > 1e-4


def test_dtype_and_device_arguments(tmp_path):
    path = save_tiny_unet(tmp_path / "tiny.safetensors")
    model = load_diffusion_model(path, device=torch.device("cpu"), dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    x, t, expected = reference_output()
    with torch.no_grad():
        out = model(x, t)
    assert out.dtype == torch.float32  # the caller's precision
    assert (out - expected).abs().mean() < 0.05 * expected.abs().mean()


# --- errors -----------------------------------------------------------------------------------------


def error_for(path, loader=load_diffusion_model) -> str:
    with pytest.raises(CheckpointError) as e:
        loader(path)
    return str(e.value)


def test_missing_file_says_where_it_should_go(tmp_path):
    msg = error_for(tmp_path / "nope.pt")
    assert "nope.pt" in msg and "not found" in msg
    assert "256x256_diffusion_uncond.pt" in msg and "models/blended_diffusion/" in msg
    assert weights.ADM_256_UNCOND.url in msg
    assert "No diffusion model file" in error_for("")


def test_folder_and_unknown_extension(tmp_path):
    assert "is a folder" in error_for(tmp_path)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00" * 10)
    msg = error_for(path)
    assert "model.onnx" in msg and ".onnx" in msg and ".safetensors" in msg and ".pt" in msg


@pytest.mark.parametrize("name, content, words", [
    ("empty.pt", b"", ["0 bytes", "download"]),
    ("page.pt", b"<?xml version='1.0'?><Error><Code>BlobNotFound</Code></Error>", ["web page or XML", "download"]),
    ("lfs.safetensors", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", ["Git LFS pointer"]),
    ("garbage.pt", bytes(range(256)) * 8, ["could not be read", "damaged", "download it again"]),
    ("garbage.safetensors", b"\xff" * 100, ["could not be read", ".safetensors", "download it again"]),
])
def test_unreadable_files(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    msg = error_for(path)
    assert name in msg
    for w in words:
        assert w in msg


def test_truncated_download(tmp_path):
    good = save_tiny_unet(tmp_path / "good.pt")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    msg = error_for(truncated)
    assert "truncated.pt" in msg and "damaged or incomplete" in msg


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": tiny_unet_state_dict(0), "hparams": argparse.Namespace(lr=1e-4)}, path)
    msg = error_for(path)
    assert "lightning.ckpt" in msg and "argparse.Namespace" in msg
    assert "state_dict" in msg and ".safetensors" in msg


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    assert "does not hold a model state dict" in error_for(path)
    torch.save({"weights": [1, 2]}, path)
    assert "are not tensors" in error_for(path)


@pytest.mark.parametrize("keys, words", [
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
      "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}, ["Stable Diffusion"]),
    ({"conv_in.weight": (320, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3)}, ["diffusers"]),
    ({"input_blocks.0.0.weight": (128, 3, 3, 3), "out.2.c_proj.weight": (1000, 512, 1)}, ["classifier"]),
    ({"input_blocks.0.0.weight": (192, 6, 3, 3), "output_blocks.0.0.in_layers.2.weight": (192, 384, 3, 3),
      "out.2.weight": (6, 192, 3, 3)}, ["super-resolution"]),
    ({"encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3)}, ["VAE"]),
    ({"features.0.weight": (64, 3, 3, 3), "classifier.0.weight": (10, 64)}, ["classifier"]),
    ({"some.random.weight": (2, 2)}, ["none of the keys", "some.random.weight"]),
])
def test_foreign_checkpoints_are_named(tmp_path, keys, words):
    path = tmp_path / "wrong.safetensors"
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    msg = error_for(path)
    assert "wrong.safetensors" in msg and "256x256_diffusion_uncond.pt" in msg
    for w in words:
        assert w in msg


def test_clip_checkpoint_is_named(tmp_path):
    msg = error_for(save_tiny_clip(tmp_path / "clip.pt"))
    assert "clip.pt" in msg and "CLIP model" in msg and "CLIP loader" in msg


def test_incomplete_and_extra_keys_are_listed(tmp_path):
    sd = tiny_unet_state_dict(0)
    del sd["out.2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pt"
    torch.save(sd, path)
    msg = error_for(path)
    assert "edited.pt" in msg and "missing: out.2.bias" in msg and "unexpected: extra.weight" in msg


def test_metadata_config_that_does_not_fit(tmp_path):
    path = tmp_path / "wrong_config.safetensors"
    wrong = UNetConfig(**{**tiny_unet_config().__dict__, "model_channels": 64})
    save_file(tiny_unet_state_dict(0), str(path), metadata={CONFIG_METADATA_KEY: wrong.to_json()})
    msg = error_for(path)
    assert "wrong_config.safetensors" in msg and "wrong shape" in msg and CONFIG_METADATA_KEY in msg
    save_file(tiny_unet_state_dict(0), str(path), metadata={CONFIG_METADATA_KEY: '{"bogus": 1}'})
    assert "not a valid UNet config" in error_for(path)


def test_damaged_layout_is_reported(tmp_path):
    sd = {k: v for k, v in tiny_unet_state_dict(0).items() if not k.startswith("middle_block.")}
    path = tmp_path / "no_middle.pt"
    torch.save(sd, path)
    msg = error_for(path)
    assert "no_middle.pt" in msg and "middle_block" in msg


# --- weights registry ---------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(urllib.request, "urlopen", fail)


def test_registry_entry_for_the_paper_model():
    entry = weights.KNOWN_WEIGHTS["256x256_diffusion_uncond.pt"]
    assert entry.subfolder == "blended_diffusion"
    assert entry.url == "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"


def test_present_file_is_returned_without_download(tmp_path, no_network):
    path = tmp_path / weights.ADM_256_UNCOND.filename
    path.write_bytes(b"x")
    assert weights.ensure_file(weights.ADM_256_UNCOND, tmp_path) == path


@pytest.mark.parametrize("env", ["HF_HUB_OFFLINE", "BLENDED_OFFLINE"])
def test_offline_missing_file_names_folder_file_and_url(tmp_path, monkeypatch, no_network, env):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    monkeypatch.setenv(env, "1")
    folder = tmp_path / "models" / "blended_diffusion"
    with pytest.raises(CheckpointError) as e:
        weights.ensure_file(weights.ADM_256_UNCOND, folder)
    msg = str(e.value)
    assert str(folder) in msg and "256x256_diffusion_uncond.pt" in msg
    assert weights.ADM_256_UNCOND.url in msg and env in msg
    assert not folder.exists() or not any(folder.iterdir())


def test_download_not_allowed(tmp_path, monkeypatch, no_network):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="512x512_diffusion.pt"):
        weights.ensure_file(weights.ADM_512_COND, tmp_path, allow_download=False)


def local_entry(tmp_path, payload: bytes, **overrides):
    source = tmp_path / "server" / "file.pt"
    source.parent.mkdir()
    source.write_bytes(payload)
    fields = dict(filename="file.pt", subfolder="blended_diffusion", url=source.as_uri(),
                  description="test", size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    fields.update(overrides)
    return weights.WeightFile(**fields)


def test_download_verifies_and_renames(tmp_path, monkeypatch):
    """The download path, run against a file:// URL (urllib handles it like http)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    payload = b"weights" * 1000
    dest = tmp_path / "models"
    path = weights.ensure_file(local_entry(tmp_path, payload), dest)
    assert path == dest / "file.pt" and path.read_bytes() == payload
    assert not (dest / "file.pt.part").exists()


def test_download_with_wrong_hash_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    entry = local_entry(tmp_path, b"weights", sha256="0" * 64)
    dest = tmp_path / "models"
    with pytest.raises(CheckpointError) as e:
        weights.ensure_file(entry, dest)
    assert "SHA-256" in str(e.value) and "file.pt" in str(e.value) and entry.url in str(e.value)
    assert list(dest.iterdir()) == []


def test_failed_download_explains_manual_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    entry = weights.WeightFile("gone.pt", "blended_diffusion", (tmp_path / "absent.pt").as_uri(), "test")
    with pytest.raises(CheckpointError) as e:
        weights.ensure_file(entry, tmp_path / "models")
    msg = str(e.value)
    assert "gone.pt" in msg and "download failed" in msg and entry.url in msg
