"""Reward models rest on the offload device between rankings and go when ComfyUI frees memory.

Each reward model is loaded the way a user's graph loads it: its files, tiny random models in the real
layouts and formats (tests/support/tiny_rewards.py), under the names and in the folders the pack's
downloader uses (``REWARD_WEIGHTS``), read by Blended Reward Loader offline. (Without those files the
loader has nothing to read and downloads are off, so it hands on ``Unavailable`` and the ranking
skips the model with a note: that is why the soak benchmark's reward models never load.)

The pack does not hand its models to ComfyUI's ``ModelPatcher`` (docs/DESIGN.md, "ComfyUI model
management"): the loader puts a reward model on ComfyUI's offload device, Blended Rank Results moves it
to the work device for its own chunks only and back after, and ComfyUI's node-output cache is its
only owner. So ComfyUI's "free memory" (POST /free: ``unload_all_models()`` for its own models, then
``PromptExecutor.reset()``, which drops that cache) leaves nothing of it alive, provided the pack keeps
no reference of its own. This machine has no GPU, where work and offload device are both the CPU, so
the work device is ``cpu:0`` here, a device that compares unequal to ``cpu`` but moves nothing: every
move a model makes is recorded and checked.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from tests.support.sd15_fixture import comfy_engine_path

try:
    comfy_engine_path()
except SystemExit as missing:  # no ComfyUI here: the ComfyUI-free tests still run (setup: scripts/setup/setup_comfy.sh)
    pytest.skip(str(missing), allow_module_level=True)

import comfy.model_management as mm  # noqa: E402
import folder_paths  # noqa: E402
from comfy_api.latest import io  # noqa: E402

from blended.clip_model import ClipBundle  # noqa: E402
from blended.downloads import REWARD_WEIGHTS  # noqa: E402
from blended.reward_models import RewardModel  # noqa: E402
from blended_diffusion_pack.nodes import comfy_glue  # noqa: E402
from blended_diffusion_pack.nodes.guidance_nodes import BlendedCLIPGuidance  # noqa: E402
from blended_diffusion_pack.nodes.ranking_node import BlendedRankResults  # noqa: E402
from blended_diffusion_pack.nodes.reward_nodes import MODELS, BlendedRewardCriterion, BlendedRewardModelLoader  # noqa: E402
from tests.support.comfy_harness import photo  # noqa: E402
from tests.support.tiny_rewards import save_tiny_aesthetic, save_tiny_hps, save_tiny_pick  # noqa: E402

# Blended Rank Results writes its scores to ComfyUI's temp folder: a temp dir of each test here
pytestmark = pytest.mark.usefixtures("comfy_temp_folder")
WORK = torch.device("cpu", 0)  # the work device of this test: unequal to the offload device "cpu"


def run(node, **inputs) -> tuple:
    """``node.execute`` as ComfyUI's executor calls it: keyword inputs, under inference mode."""
    with torch.inference_mode():
        out = node.execute(**inputs)
    assert isinstance(out, io.NodeOutput)
    return out.result


@pytest.fixture
def models(tmp_path, monkeypatch):
    """ComfyUI's models/ is ``tmp_path`` for the pack's folders (registered by the pack itself)."""
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    for name in comfy_glue.MODEL_FOLDERS:
        monkeypatch.delitem(folder_paths.folder_names_and_paths, name, raising=False)
    comfy_glue.register_model_folders()
    return tmp_path


def place_reward_files(models, kind: str) -> None:
    """Tiny files in the real formats, at the paths the loader looks in (offline: nothing downloads)."""
    paths = [models / entry.subfolder / entry.filename for entry in REWARD_WEIGHTS[kind]]
    if kind == "hpsv2":
        save_tiny_hps(paths[0])
    elif kind == "pickscore":
        save_tiny_pick(paths[0])
    else:
        save_tiny_aesthetic(paths[0], paths[1])  # the MLP and OpenAI's ViT-L/14 in models/blended_clip


@pytest.fixture
def moves(monkeypatch):
    """Every ``.to(device)`` of a reward model or a CLIP, in order: [(kind, device)]."""
    seen = []
    for cls, kind in ((RewardModel, "reward"), (ClipBundle, "clip")):
        original = cls.to

        def to(self, device, _original=original, _kind=kind):
            seen.append((_kind, torch.device(device)))
            return _original(self, device)

        monkeypatch.setattr(cls, "to", to)
    monkeypatch.setattr(comfy_glue, "work_device", lambda: WORK)
    return seen


def ranking_inputs(tiny_clip) -> dict:
    (guidance,) = run(BlendedCLIPGuidance, clip=tiny_clip, prompt="a red ball", clip_lambda=1000.0,
                      range_lambda=50.0, distance="spherical")
    images = torch.stack([torch.from_numpy(photo(40, 40, 20 + i)).float().div(255) for i in range(3)])
    mask = torch.zeros(1, 40, 40)
    mask[:, 8:30, 10:28] = 1
    return dict(images=images, mask=mask, guidance=guidance, top_k=2)


def comfyui_free(cache: dict) -> None:
    """What POST /free (unload_models, free_memory) makes ComfyUI's prompt worker do: unload every
    model it manages, drop the executor's caches (``cache`` stands for them: it holds the node outputs
    as the output cache does), collect garbage."""
    mm.unload_all_models()
    cache.clear()
    gc.collect()
    mm.soft_empty_cache()


@pytest.mark.parametrize("name", list(MODELS))
def test_reward_model_rests_on_the_offload_device_and_goes_with_comfyuis_free(models, moves, tiny_clip, name):
    kind = MODELS[name]
    place_reward_files(models, kind)
    offload = mm.unet_offload_device()
    assert offload != WORK
    cache = {"loader": run(BlendedRewardModelLoader, reward_model=name, if_missing="error")}
    reward = cache["loader"][0]
    assert isinstance(reward, RewardModel) and reward.kind == kind
    assert moves == [("reward", offload)], "the loader puts the model on the offload device"
    alive = weakref.ref(reward), weakref.ref(reward.model)
    cache["criterion"] = run(BlendedRewardCriterion, reward=reward, weight=1.0, view="whole_image")
    del reward
    moves.clear()

    cache["rank"] = run(BlendedRankResults, criteria=cache["criterion"][0], **ranking_inputs(tiny_clip))
    assert f"1 x {cache['loader'][0].label} (whole)" in cache["rank"][2]  # it ranked, not skipped
    assert [d for k, d in moves if k == "reward"] == [WORK, offload], "on the work device for its scores only"
    assert [d for k, d in moves if k == "clip"][-1] == offload, "the ranking CLIP goes back too"
    assert all(p.device == offload for p in cache["loader"][0].model.parameters())
    managed = [m.model for m in mm.current_loaded_models]
    assert alive[1]() not in managed, "ComfyUI's model management has no handle on it: nothing of it to unload"

    comfyui_free(cache)
    assert alive[0]() is None and alive[1]() is None, (
        f"the pack keeps the {name} model alive after ComfyUI dropped its outputs: "
        f"{[type(r).__name__ for r in gc.get_referrers(alive[1]())] if alive[1]() is not None else ''}")


def test_unload_models_alone_leaves_a_cached_reward_model_usable_on_the_offload_device(models, moves, tiny_clip):
    """POST /free with only ``unload_models`` keeps the output cache: the cached model is still on the
    offload device and the next ranking uses it as before (same scores)."""
    place_reward_files(models, "hpsv2")
    (reward,) = run(BlendedRewardModelLoader, reward_model="HPSv2.1", if_missing="error")
    (chain,) = run(BlendedRewardCriterion, reward=reward, weight=1.0, view="mask_box")
    inputs = ranking_inputs(tiny_clip)
    _, _, before = run(BlendedRankResults, criteria=chain, **inputs)
    mm.unload_all_models()
    assert reward.device == mm.unet_offload_device()
    _, _, after = run(BlendedRankResults, criteria=chain, **inputs)
    assert after == before


def test_a_cancel_while_a_reward_model_scores_still_sends_it_back_to_the_offload_device(models, moves, tiny_clip,
                                                                                       monkeypatch):
    """Cancel pressed the moment the reward model reaches the work device: the check before its first
    chunk raises ComfyUI's interrupt, and the model still goes back."""
    place_reward_files(models, "pickscore")
    (reward,) = run(BlendedRewardModelLoader, reward_model="PickScore v1", if_missing="error")
    (chain,) = run(BlendedRewardCriterion, reward=reward, weight=1.0, view="mask_box")
    moves.clear()
    to = RewardModel.to

    def cancel_on_arrival(self, device):
        out = to(self, device)
        if torch.device(device) == WORK:
            mm.interrupt_current_processing(True)
        return out

    monkeypatch.setattr(RewardModel, "to", cancel_on_arrival)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(BlendedRankResults, criteria=chain, **ranking_inputs(tiny_clip))
    finally:
        mm.interrupt_current_processing(False)
    assert [d for k, d in moves if k == "reward"] == [WORK, mm.unet_offload_device()]
