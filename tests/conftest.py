"""Shared fixtures: tiny random models in the real key layouts, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BLENDED_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The node modules import the library relatively; tests reach them as blended_diffusion_pack.nodes.*
from tests.support import pack_import  # noqa: E402

pack_import.register()

# the session-wide real ComfyUI server (fixture ``comfy``), started only by tests that ask for it
# sd15_fixture: random SD1.5 checkpoint (latent path)
pytest_plugins = ["tests.support.comfy_harness", "tests.support.sd15_fixture"]


@pytest.fixture(scope="session")
def tiny_model():
    from blended.pixel.diffusion_model import DiffusionModel
    from blended.pixel.unet import UNetModel
    from tests.support.tiny_unet import tiny_unet_config, tiny_unet_state_dict

    unet = UNetModel(tiny_unet_config())
    unet.load_state_dict(tiny_unet_state_dict(seed=0), strict=True)
    return DiffusionModel(unet)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    from blended.clip_model import load_clip
    from tests.support.tiny_clip import save_tiny_clip

    return load_clip(save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors"))


@pytest.fixture(scope="session")
def random_lpips():
    from blended.lpips_model import load_lpips

    return load_lpips(pretrained_backbone=False)


@pytest.fixture(scope="session")
def real_lpips_path(tmp_path_factory):
    from tests.support.real_lpips import real_lpips_file

    return real_lpips_file(tmp_path_factory.mktemp("lpips"))


@pytest.fixture
def comfy_temp_folder(tmp_path, monkeypatch):
    """ComfyUI's temp folder is ``tmp_path/comfy_temp`` for the test: nodes run in-process write
    their text reports there (``comfy_glue.text_report``), not into the engine's own folder, which
    every test run shares."""
    from tests.support.sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import folder_paths

    monkeypatch.setattr(folder_paths, "temp_directory", str(tmp_path / "comfy_temp"))
    return tmp_path / "comfy_temp"
