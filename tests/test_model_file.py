"""No code ever runs from a model file, on any loader; refusals say so in plain words."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import pytest
import torch
from safetensors.torch import save_file

from blended.clip_model import load_clip
from blended.errors import CheckpointError
from blended.lpips_model import load_lpips
from blended.model_file import first_code_global, read_torchscript_tensors
from blended.pixel.checkpoint import CONFIG_METADATA_KEY, load_diffusion_model
from tests.support.hostile_files import pickle_that_runs_code, torchscript_that_runs_code
from tests.support.tiny_clip import tiny_clip_state_dict
from tests.support.tiny_unet import tiny_unet_config, tiny_unet_state_dict

LOADERS = {
    "diffusion": load_diffusion_model,
    "clip": load_clip,
    "lpips": lambda path: load_lpips(path, pretrained_backbone=False),
}


def refusal(loader, path) -> str:
    with pytest.raises(CheckpointError) as e:
        loader(path)
    return str(e.value)


def test_malicious_torchscript_archive_runs_under_jit_but_not_here(tmp_path):
    archive = torchscript_that_runs_code(tmp_path / "ViT-B-16.pt", tmp_path / "written_by_archive")
    for name, loader in LOADERS.items():
        msg = refusal(loader, archive)
        assert "refused" in msg and "code" in msg and "ViT-B-16.pt" in msg and "__setstate__" in msg, name
        assert ".safetensors" in msg and "Nothing from it was run" in msg
    assert not (tmp_path / "written_by_archive").exists()
    # The same file does run its payload under torch.jit.load, so the check above can fail.
    proof = tmp_path / "proof.pt"
    torchscript_that_runs_code(proof, tmp_path / "written_under_jit")
    subprocess.run([sys.executable, "-c", f"import torch; torch.jit.load({str(proof)!r})"], check=True,
                   capture_output=True)
    assert (tmp_path / "written_under_jit").exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_that_calls_os_system_is_refused_by_every_loader(tmp_path, legacy):
    marker = tmp_path / "written_by_pickle"
    for name, loader in LOADERS.items():
        path = pickle_that_runs_code(tmp_path / f"{name}.ckpt", marker, legacy=legacy)
        msg = refusal(loader, path)
        assert "refused" in msg and "code" in msg and "system" in msg, (name, msg)
        assert "damaged" not in msg and "download it again" not in msg
    assert not marker.exists()
    assert first_code_global(tmp_path / "clip.ckpt") in ("posix.system", "os.system", "nt.system")


def test_plain_checkpoints_have_no_code(tmp_path):
    torch.save(tiny_unet_state_dict(0), tmp_path / "zip.pt")
    torch.save(tiny_unet_state_dict(0), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert first_code_global(tmp_path / "zip.pt") is None
    assert first_code_global(tmp_path / "legacy.pt") is None


def test_openai_layout_torchscript_archive_is_read_without_torchscript(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    model = CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                 quick_gelu=True)
    model.load_state_dict(tiny_clip_state_dict())
    path = tmp_path / "ViT-B-16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model.eval()).save(str(path))
        reference = torch.jit.load(str(path)).state_dict()
    tensors = read_torchscript_tensors(path)
    assert tensors.keys() == reference.keys()
    assert all(torch.equal(tensors[k], reference[k]) for k in reference)
    bundle = load_clip(path)
    assert bundle.encode_text(["a red ball"]).shape == (1, 32)


def test_damaged_torchscript_archive_is_damaged_not_refused(tmp_path):
    import zipfile

    good = tmp_path / "good.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(good))
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 2] if item.filename.endswith("/data/0") else data)
    msg = refusal(load_clip, bad)
    assert "damaged" in msg and "refused" not in msg


# --- the UNet config stored in a .safetensors is checked before anything is built ---------------------


@pytest.mark.parametrize("change, words", [
    ({"model_channels": "32"}, ["model_channels", "whole number", "'32'"]),
    ({"model_channels": -32}, ["model_channels", "-32"]),
    ({"image_size": 0}, ["image_size", "from 8"]),
    ({"num_res_blocks": 400}, ["num_res_blocks", "400"]),
    ({"num_res_blocks": 3}, ["num_res_blocks is 3 there but 1 in the weights"]),
    ({"channel_mult": [1, "x"]}, ["channel_mult"]),
    ({"use_scale_shift_norm": "yes"}, ["use_scale_shift_norm", "true or false"]),
    ({"attention_ds": [3]}, ["attention_ds"]),
    ({"image_size": 30}, ["image_size 30 is not a multiple"]),
])
def test_stored_config_is_validated_before_building(tmp_path, change, words):
    fields = {**tiny_unet_config().__dict__, **change}
    import json

    path = tmp_path / "config.safetensors"
    save_file(tiny_unet_state_dict(0), str(path),
              metadata={CONFIG_METADATA_KEY: json.dumps({k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in fields.items()})})
    start = time.monotonic()
    msg = refusal(load_diffusion_model, path)
    assert time.monotonic() - start < 30  # generous: the point is that nothing huge gets built
    assert "config.safetensors" in msg and CONFIG_METADATA_KEY in msg and "Remove" in msg
    for w in words:
        assert w in msg, msg
