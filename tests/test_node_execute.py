"""Every node's ``execute`` called directly, in-process, without the server (as ComfyUI tests its nodes).

The engine tests (test_comfy_engine.py, test_latent_engine.py) prove the nodes inside a real ComfyUI
at length; these check the contract of each ``execute`` fast: the outputs it returns in its
``io.NodeOutput`` (types, shapes, the caller's own pixels outside the mask), the ``ui`` text, the
error a bad input gets (a ValueError in the library's words, naming the input) and ComfyUI's Cancel.
Nodes run under ``torch.inference_mode()`` as ComfyUI's executor runs them. Model folders point at
a temp dir for the loader tests; monkeypatch puts ComfyUI's globals back afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import pytest
import torch

from tests.support.comfy_harness import photo
from tests.support.sd15_fixture import comfy_engine_path, encode_text

try:
    comfy_engine_path()  # comfy_api, folder_paths and comfy.* importable, device = CPU
except SystemExit as missing:  # no ComfyUI here: the ComfyUI-free tests still run (setup: scripts/setup/setup_comfy.sh)
    pytest.skip(str(missing), allow_module_level=True)

import comfy.model_management as mm  # noqa: E402
import comfy.samplers  # noqa: E402
import folder_paths  # noqa: E402
from comfy_api.latest import io  # noqa: E402

from blended.augment import ExtendingAugmentation  # noqa: E402
from blended.clip_model import ClipBundle  # noqa: E402
from blended.errors import BlendedError  # noqa: E402
from blended.guidance import BackgroundLoss, ClipGuidance, Guidance, RangeLoss  # noqa: E402
from blended.latent.blend import cover_mask  # noqa: E402
from blended.latent.crop_stitch import LatentCrop  # noqa: E402
from blended.pixel.diffusion_model import DiffusionModel  # noqa: E402
from blended_diffusion_pack.nodes import comfy_glue  # noqa: E402
from blended_diffusion_pack.nodes.auto_mask import BlendedAutoMask  # noqa: E402
from blended_diffusion_pack.nodes.confine_node import BlendedConfineEdit  # noqa: E402
from blended_diffusion_pack.nodes.evaluate_node import BlendedEvaluate  # noqa: E402
from blended_diffusion_pack.nodes.extension import NODES  # noqa: E402
from blended_diffusion_pack.nodes.guidance_nodes import (  # noqa: E402
    BlendedBackgroundLoss,
    BlendedCLIPGuidance,
    BlendedExtendingAugmentation,
)
from blended_diffusion_pack.nodes.latent_nodes import (  # noqa: E402
    BlendedBackgroundReconstruction,
    BlendedLatentCrop,
    BlendedLatentSampler,
    BlendedLatentSamplerObject,
    BlendedLatentStitch,
)
from blended_diffusion_pack.nodes.latent_sampling import BlendingSampler  # noqa: E402
from blended_diffusion_pack.nodes.loaders import (  # noqa: E402
    BlendedCLIPLoader,
    BlendedDiffusionModelLoader,
    BlendedLPIPSLoader,
)
from blended_diffusion_pack.nodes.ranking_node import BlendedRankResults  # noqa: E402
from blended_diffusion_pack.nodes.reward_nodes import (  # noqa: E402
    BlendedRewardCriterion,
    BlendedRewardModelLoader,
    Unavailable,
)
from blended_diffusion_pack.nodes.sampler_node import BlendedSampler  # noqa: E402

# the rank and confine nodes write their reports to ComfyUI's temp folder: a temp dir of each test here
pytestmark = pytest.mark.usefixtures("comfy_temp_folder")


def run(node, **inputs) -> io.NodeOutput:
    """``node.execute`` as ComfyUI's executor calls it: keyword inputs, under inference mode."""
    with torch.inference_mode():
        out = node.execute(**inputs)
    assert isinstance(out, io.NodeOutput)
    return out


def comfy_image(h, w, b=1, seed=0):
    """An IMAGE [B,H,W,3] with LoadImage's k/255 values."""
    return torch.stack([torch.from_numpy(photo(w, h, seed + i)).float().div(255) for i in range(b)])


def box_mask(h, w, y0, y1, x0, x1):
    m = torch.zeros(1, h, w)
    m[:, y0:y1, x0:x1] = 1
    return m


@contextlib.contextmanager
def cancel_pressed():
    """ComfyUI's Cancel pressed for the block; the flag is always cleared afterwards."""
    mm.interrupt_current_processing(True)
    try:
        yield
    finally:
        mm.interrupt_current_processing(False)


def test_every_listed_node_is_tested_here():
    tested = {BlendedDiffusionModelLoader, BlendedCLIPLoader, BlendedLPIPSLoader, BlendedExtendingAugmentation,
              BlendedCLIPGuidance, BlendedBackgroundLoss, BlendedSampler, BlendedRankResults, BlendedEvaluate,
              BlendedLatentCrop, BlendedLatentSampler, BlendedLatentSamplerObject, BlendedBackgroundReconstruction,
              BlendedLatentStitch, BlendedRewardModelLoader, BlendedRewardCriterion, BlendedAutoMask,
              BlendedConfineEdit}
    assert set(NODES) == tested
    for node in NODES:
        assert node.define_schema().node_id == node.__name__
        assert getattr(node.execute, "checks_inputs", False)  # BlendedNode's input checks wrap it


# --- loaders ----------------------------------------------------------------------------------------


@pytest.fixture
def models(tmp_path, monkeypatch):
    """ComfyUI's models/ is ``tmp_path`` for the pack's folders (registered by the pack's own
    ``register_model_folders``) and the legacy CLIP folder; everything is restored afterwards."""
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    for name in comfy_glue.MODEL_FOLDERS:
        monkeypatch.delitem(folder_paths.folder_names_and_paths, name, raising=False)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "text_encoders",
                        ([str(tmp_path / "text_encoders")], set(folder_paths.supported_pt_extensions)))
    comfy_glue.register_model_folders()
    for name in (*comfy_glue.MODEL_FOLDERS, "text_encoders"):
        (tmp_path / name).mkdir()
    return tmp_path


def no_inference_tensors(module: torch.nn.Module) -> bool:
    """Weights made under inference mode could never take part in the guidance gradient."""
    return not any(t.is_inference() for t in [*module.parameters(), *module.buffers()])


def test_diffusion_model_loader_loads_a_working_model(models, tiny_model):
    from tests.support.tiny_unet import save_tiny_unet

    save_tiny_unet(models / "blended_diffusion" / "tiny_adm.pt", seed=0)
    assert "tiny_adm.pt" in BlendedDiffusionModelLoader.define_schema().inputs[0].options
    (model,) = run(BlendedDiffusionModelLoader, model_name="tiny_adm.pt").result
    assert isinstance(model, DiffusionModel) and model.image_size == 32 and model.learn_sigma
    assert no_inference_tensors(model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.tensor([10.0, 500.0])
    with torch.no_grad():
        out = model(x, t)
        assert out.shape == (2, 6, 32, 32)
        assert torch.equal(out, tiny_model(x, t))  # the very weights that were saved


def test_diffusion_model_loader_names_a_missing_or_wrong_file(models, monkeypatch):
    from tests.support.tiny_clip import save_tiny_clip

    with pytest.raises(ValueError, match=r"Diffusion model 'nope\.pt' is not in .*blended_diffusion"):
        run(BlendedDiffusionModelLoader, model_name="nope.pt")
    monkeypatch.setenv("BLENDED_OFFLINE", "1")  # a listed OpenAI file that is missing: says where it goes
    with pytest.raises(ValueError, match=r"256x256_diffusion_uncond\.pt.*download is off"):
        run(BlendedDiffusionModelLoader, model_name="256x256_diffusion_uncond.pt")
    save_tiny_clip(models / "blended_diffusion" / "clip_here.safetensors")
    with pytest.raises(ValueError, match=r"clip_here\.safetensors' looks like a CLIP model.*CLIP loader") as info:
        run(BlendedDiffusionModelLoader, model_name="clip_here.safetensors")
    assert isinstance(info.value.__cause__, BlendedError)  # the library's error, in its words


def test_clip_loader_loads_its_folder_and_the_legacy_one(models, tiny_clip, caplog):
    from tests.support.tiny_clip import save_tiny_clip

    save_tiny_clip(models / "blended_clip" / "tiny_clip.safetensors", seed=0)
    save_tiny_clip(models / "text_encoders" / "old_place.safetensors", seed=0)
    (clip,) = run(BlendedCLIPLoader, clip_name="tiny_clip.safetensors").result
    assert isinstance(clip, ClipBundle) and no_inference_tensors(clip.model)
    images = torch.rand(1, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(clip.encode_image(images), tiny_clip.encode_image(images))
    with caplog.at_level("WARNING"):
        (legacy,) = run(BlendedCLIPLoader, clip_name="old_place.safetensors").result
    assert isinstance(legacy, ClipBundle)
    assert "old_place.safetensors" in caplog.text and "move it to" in caplog.text
    with pytest.raises(ValueError, match=r"CLIP file 'gone\.safetensors' is not in .*blended_clip.*choose"):
        run(BlendedCLIPLoader, clip_name="gone.safetensors")
    assert BlendedCLIPLoader.validate_inputs("tiny_clip.safetensors") is True
    assert "is not in" in BlendedCLIPLoader.validate_inputs("gone.safetensors")


def test_lpips_loader_loads_a_file_and_names_a_missing_one(models, random_lpips):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in random_lpips.net.state_dict().items() if not k.startswith("lins.")}
    save_file(state, str(models / "lpips" / "lpips_random.safetensors"))
    (lpips,) = run(BlendedLPIPSLoader, lpips_name="lpips_random.safetensors").result
    assert no_inference_tensors(lpips)
    a = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        d = lpips(a, a.flip(0))
        assert d.shape == (2,) and (d > 0).all() and torch.equal(lpips(a, a), torch.zeros(2))
        assert torch.allclose(d, random_lpips(a, a.flip(0)))
    # a file picker is left to the loader (FILE_INPUTS): the message says where the file belongs
    with pytest.raises(ValueError, match=r"LPIPS file 'none\.safetensors' is not in .*lpips\. Put it there, or choose "
                       r"'vgg16 \(torchvision download\)'"):
        run(BlendedLPIPSLoader, lpips_name="none.safetensors")


# --- guidance ---------------------------------------------------------------------------------------


def test_augmentation_node_returns_its_settings_and_checks_ranges():
    (aug,) = run(BlendedExtendingAugmentation, count=3, degrees=10.0, translate=0.2, perspective=0.5).result
    assert isinstance(aug, ExtendingAugmentation)
    assert (aug.count, aug.degrees, aug.translate, aug.perspective) == (3, 10.0, 0.2, 0.5)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    assert aug.homographies(32, gens).shape == (3 * 2, 3, 3)
    with pytest.raises(ValueError, match="count is 65: give a whole number from 0 to 64"):
        run(BlendedExtendingAugmentation, count=65, degrees=10.0, translate=0.2, perspective=0.5)
    with pytest.raises(ValueError, match="translate is 0.95"):
        run(BlendedExtendingAugmentation, count=3, degrees=10.0, translate=0.95, perspective=0.5)


def clip_guidance(clip, **overrides):
    inputs = dict(clip=clip, prompt="a red ball", clip_lambda=1000.0, range_lambda=50.0, distance="spherical")
    (guidance,) = run(BlendedCLIPGuidance, **{**inputs, **overrides}).result
    return guidance


def test_clip_guidance_node_builds_its_terms(tiny_clip):
    aug = ExtendingAugmentation(2)
    guidance = clip_guidance(tiny_clip, clip_lambda=700.0, range_lambda=20.0, distance="cosine", augmentation=aug)
    assert isinstance(guidance, Guidance) and [type(t) for t in guidance.terms] == [ClipGuidance, RangeLoss]
    clip_term, range_term = guidance.terms
    assert clip_term.weight == 700.0 and clip_term.distance == "cosine" and clip_term.augmentation is aug
    assert clip_term.clip is tiny_clip and clip_term.prompt == "a red ball" and clip_term.guard is None
    assert range_term.weight == 20.0
    no_range = clip_guidance(tiny_clip, range_lambda=0.0)
    assert [type(t) for t in no_range.terms] == [ClipGuidance]
    guarded = clip_guidance(tiny_clip, typography_guard=True, typography_strength=0.75)
    assert guarded.clip.guard is not None and guarded.clip.guard.strength == 0.75


@pytest.mark.parametrize("inputs, message", [
    ({"clip_lambda": float("nan")}, "clip_lambda is nan: give a number from 0 to"),
    ({"clip_lambda": -1.0}, "clip_lambda is -1: give a number from 0 to"),
    ({"range_lambda": float("inf")}, "range_lambda is inf"),
    ({"distance": "manhattan"}, "distance 'manhattan' is not one of its choices"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"typography_guard": "yes"}, "typography_guard must be true or false"),
])
def test_clip_guidance_node_refuses_bad_inputs_by_name(tiny_clip, inputs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        clip_guidance(tiny_clip, **inputs)


def test_background_loss_node_adds_a_term_and_leaves_its_input_alone(tiny_clip, random_lpips):
    guidance = clip_guidance(tiny_clip)
    (extended,) = run(BlendedBackgroundLoss, guidance=guidance, lpips=random_lpips, lambda_lpips=300.0,
                      lambda_l2=4000.0).result
    assert [type(t) for t in extended.terms] == [ClipGuidance, RangeLoss, BackgroundLoss]
    bg = extended.terms[-1]
    assert bg.lpips is random_lpips and (bg.weight_lpips, bg.weight_l2) == (300.0, 4000.0)
    assert [type(t) for t in guidance.terms] == [ClipGuidance, RangeLoss]  # one guidance may feed several nodes
    with pytest.raises(ValueError, match="lambda_l2 is nan"):
        run(BlendedBackgroundLoss, guidance=guidance, lpips=random_lpips, lambda_lpips=300.0, lambda_l2=math.nan)


# --- sampler ----------------------------------------------------------------------------------------

H, W = 40, 56


def sampler_inputs(model, guidance, **overrides):
    inputs = dict(model=model, guidance=guidance, image=comfy_image(H, W, b=2), mask=box_mask(H, W, 8, 26, 30, 50),
                  steps="4", skip_timesteps=1, mode="blended", method="ddpm", batch_size=2, seed=5,
                  enforce_background=True, mask_dilate=0, mask_feather=0, context_margin=0.25)
    return {**inputs, **overrides}


def test_sampler_returns_images_and_mask_with_the_background_untouched(tiny_model, tiny_clip):
    guidance = clip_guidance(tiny_clip, augmentation=ExtendingAugmentation(1))
    inputs = sampler_inputs(tiny_model, guidance)
    images, paste = run(BlendedSampler, **inputs).result
    assert images.shape == (4, H, W, 3) and images.dtype == torch.float32  # 2 images x 2 samples, image-major
    assert paste.shape == (4, H, W) and float(images.min()) >= 0 and float(images.max()) <= 1
    source = inputs["image"].repeat_interleave(2, 0)
    outside = (inputs["mask"][0] == 0)[None, :, :, None].expand_as(images)
    assert torch.equal(images[outside], source[outside])  # the caller's own values, bit for bit
    assert not torch.equal(images[~outside], source[~outside])
    assert (paste[:, inputs["mask"][0] == 0] == 0).all() and (paste[:, inputs["mask"][0] > 0] > 0).all()
    assert not torch.equal(images[0], images[1])  # seed + i: the samples differ


def test_sampler_stops_on_cancel(tiny_model, tiny_clip):
    inputs = sampler_inputs(tiny_model, clip_guidance(tiny_clip), batch_size=1)
    with cancel_pressed(), pytest.raises(mm.InterruptProcessingException):
        run(BlendedSampler, **inputs)


def test_sampler_names_a_bad_mask_and_bad_settings(tiny_model, tiny_clip):
    guidance = clip_guidance(tiny_clip)
    with pytest.raises(ValueError, match=r"mask is 24x24 pixels but the image is 56x40"):
        run(BlendedSampler, **sampler_inputs(tiny_model, guidance, mask=box_mask(24, 24, 2, 9, 2, 9)))
    with pytest.raises(ValueError, match="mask is empty"):
        run(BlendedSampler, **sampler_inputs(tiny_model, guidance, mask=torch.zeros(1, H, W)))
    with pytest.raises(ValueError, match="batch_size is 0"):
        run(BlendedSampler, **sampler_inputs(tiny_model, guidance, batch_size=0))
    with pytest.raises(ValueError, match="steps"):
        run(BlendedSampler, **sampler_inputs(tiny_model, guidance, steps="four"))


# --- ranking and evaluation -------------------------------------------------------------------------


def seam_samples():
    """Three edits of one photo inside a box: unchanged (no seam), half-dark, black (a hard seam)."""
    source, mask = comfy_image(48, 48, seed=3), box_mask(48, 48, 12, 36, 12, 36)
    inside = (mask > 0)[..., None]
    half = torch.where(inside, source * 0.5, source)
    black = torch.where(inside, torch.zeros_like(source), source)
    return source, mask, torch.cat([source, black, half])


def ranked_lines(text):
    return [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"#\d+: sample (\d+) .* total (\S+)", text)]


def reported_file(ui: dict, text: str, temp) -> str:
    """A node's text report as both views get it: the ``text`` preview (graph view) and one .txt file
    in ComfyUI's temp folder holding the same text (APP mode's output area fetches it through /view).
    Returns the file's name."""
    (saved,) = ui["files"]
    assert ui["text"] == (text,) and saved["type"] == "temp" and saved["filename"].endswith(".txt")
    assert (temp / saved["subfolder"] / saved["filename"]).read_text(encoding="utf-8") == text
    return saved["filename"]


def test_rank_results_orders_by_the_criterion_and_keeps_top_k(tiny_clip, comfy_temp_folder):
    source, mask, images = seam_samples()
    out = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=2,
              clip_weight=0.0, seam_weight=1.0)
    ranked, ranked_mask, text = out.result
    assert text.startswith("ranked 3 samples by 1 x seam")
    assert [i for i, _ in ranked_lines(text)] == [0, 2]  # no seam, then the softer one; the black box is dropped
    assert torch.equal(ranked, images[[0, 2]]) and ranked_mask.shape == (2, 48, 48)
    assert torch.equal(ranked_mask[1], mask[0])
    first = reported_file(out.ui, text, comfy_temp_folder)

    out = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip),
              top_k=5)  # the paper's D_CLIP; more kept than made: all of them
    ranked, _, text = out.result
    lines = ranked_lines(text)
    assert sorted(i for i, _ in lines) == [0, 1, 2] and "1 x D_CLIP" in text
    assert [t for _, t in lines] == sorted(t for _, t in lines)
    assert torch.equal(ranked, images[[i for i, _ in lines]])
    assert reported_file(out.ui, text, comfy_temp_folder) != first  # each run its own file; the first one kept
    assert (comfy_temp_folder / first).read_text(encoding="utf-8").startswith("ranked 3 samples by 1 x seam")


def test_text_report_never_overwrites_one_written_at_the_same_time(comfy_temp_folder, monkeypatch):
    """Another run (a second server on the same folder) writes the file name this one has just chosen:
    this run takes the next name and both reports stay as written."""
    chosen = folder_paths.get_save_image_path

    def other_run_writes_it_first(prefix, folder, *size):
        found = chosen(prefix, folder, *size)
        folder_, base, counter = found[:3]
        (Path(folder_) / f"{base}_{counter:05}_.txt").write_text("the other run's report", encoding="utf-8")
        return found

    monkeypatch.setattr(folder_paths, "get_save_image_path", other_run_writes_it_first)
    ui = comfy_glue.text_report("ranked 2 samples", "blended_scores")
    assert reported_file(ui, "ranked 2 samples", comfy_temp_folder) == "blended_scores_00002_.txt"
    assert (comfy_temp_folder / "blended_scores_00001_.txt").read_text(encoding="utf-8") == "the other run's report"


def test_rank_results_best_last_for_krita_layers(tiny_clip):
    """Krita's 'layers' mode stacks each image above the previous one: best_last puts the best on top.
    The masks follow the images; the scores text still lists best first."""
    source, mask, images = seam_samples()
    weights = dict(clip_weight=0.0, seam_weight=1.0)
    first = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=2,
                **weights).result
    last = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=2,
               order="best_last", **weights).result
    assert torch.equal(last[0], first[0].flip(0)) and torch.equal(last[1], first[1].flip(0))
    assert last[2] == first[2] and [i for i, _ in ranked_lines(last[2])] == [0, 2]
    with pytest.raises(ValueError, match="order 'worst_first' is not one of its choices"):
        run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=2,
            order="worst_first")


def test_reward_loader_skips_a_missing_model_with_a_note_or_says_where_it_goes(models):
    (missing,) = run(BlendedRewardModelLoader, reward_model="HPSv2.1").result  # offline in tests
    assert isinstance(missing, Unavailable) and "HPS_v2.1_compressed.pt" in missing.note
    assert str(models / "blended_hpsv2") in missing.note and "\n" not in missing.note
    with pytest.raises(ValueError, match=r"HPS_v2\.1_compressed\.pt.*blended_hpsv2.*huggingface\.co/xswu/HPSv2"):
        run(BlendedRewardModelLoader, reward_model="HPSv2.1", if_missing="error")
    # the aesthetic predictor needs two files; with only the MLP, the missing CLIP is named
    from tests.support.tiny_rewards import save_tiny_aesthetic, save_tiny_hps

    save_tiny_aesthetic(models / "blended_aesthetic" / "sac+logos+ava1-l14-linearMSE.pth", models / "x" / "c.pt")
    (missing,) = run(BlendedRewardModelLoader, reward_model="LAION aesthetic v2").result
    assert "ViT-L-14.pt" in missing.note
    save_tiny_hps(models / "blended_hpsv2" / "HPS_v2.1_compressed.pt")
    folder_paths.filename_list_cache.clear()
    (reward,) = run(BlendedRewardModelLoader, reward_model="HPSv2.1").result
    assert reward.kind == "hpsv2" and no_inference_tensors(reward.model)


def test_rank_results_with_reward_criteria_and_a_missing_one(tiny_clip, tmp_path):
    from blended.reward_models import load_reward
    from tests.support.tiny_rewards import save_tiny_hps

    hps = load_reward("hpsv2", save_tiny_hps(tmp_path / "h.pt")[1])
    (chain,) = run(BlendedRewardCriterion, reward=hps, weight=1.0, view="mask_box").result
    (chain,) = run(BlendedRewardCriterion, reward=Unavailable("PickScore", "PickScore_v1.safetensors is missing."),
                   weight=1.0, view="whole_image", criteria=chain).result
    (chain,) = run(BlendedRewardCriterion, reward=hps, weight=0.5, view="whole_image", criteria=chain).result
    assert len(chain) == 3
    images = torch.cat([comfy_image(40, 40, seed=10 + i) for i in range(6)])  # any IMAGE batch, one mask
    mask = box_mask(40, 40, 8, 30, 10, 28)
    ranked, ranked_mask, text = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip),
                                    top_k=3, seam_weight=1.0, criteria=chain).result
    lines = text.splitlines()
    assert lines[0] == "PickScore (whole) not used: PickScore_v1.safetensors is missing."
    assert "weighted mean rank of 1 x D_CLIP + 1 x seam + 1 x HPSv2.1 (box) + 0.5 x HPSv2.1 (whole)" in lines[1]
    order = [i for i, _ in ranked_lines(text)]
    assert len(order) == 3 and torch.equal(ranked, images[order]) and ranked_mask.shape == (3, 40, 40)
    # what each reward model judged: its view and prompt (no scene prompt: the edit's prompt for both)
    assert lines[2:4] == ["  HPSv2.1 (box): judged on the mask's box against the edit prompt 'a red ball'",
                          "  HPSv2.1 (whole): judged on the whole picture against the edit prompt 'a red ball'"]
    assert all(line.count("(rank ") == 4 for line in lines[4:7])
    _, _, text = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=3,
                     seam_weight=1.0, criteria=chain, scene_prompt="a kitchen").result
    assert "  HPSv2.1 (whole): judged on the whole picture against the scene prompt 'a kitchen'" in text
    # without criteria the same inputs rank exactly as before (weighted sum)
    _, _, old = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=3,
                    seam_weight=1.0).result
    assert old.startswith("ranked 6 samples by 1 x D_CLIP + 1 x seam (lower is better):")
    # the reward models alone may rank (clip_weight 0 is allowed when a criterion carries weight)
    _, _, text = run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=3,
                     clip_weight=0.0, criteria=chain).result
    assert "weighted mean rank of 1 x HPSv2.1 (box) + 0.5 x HPSv2.1 (whole)" in text
    with cancel_pressed(), pytest.raises(mm.InterruptProcessingException):
        run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=3, criteria=chain)


def test_rank_results_demotes_lone_winners_only_when_asked(tiny_clip, tmp_path):
    """D_CLIP and one reward model: a sample first on one and in the worse half on the other is
    flagged; demote_lone_winners puts the flagged below the rest, off keeps the order."""
    from blended.reward_models import load_reward
    from tests.support.tiny_rewards import save_tiny_hps

    hps = load_reward("hpsv2", save_tiny_hps(tmp_path / "h.pt")[1])
    (chain,) = run(BlendedRewardCriterion, reward=hps, weight=1.0, view="mask_box").result
    images = torch.cat([comfy_image(40, 40, seed=10 + i) for i in range(8)])
    mask = box_mask(40, 40, 8, 30, 10, 28)
    inputs = dict(images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=8, criteria=chain)
    _, _, plain = run(BlendedRankResults, **inputs).result
    _, _, off = run(BlendedRankResults, demote_lone_winners=False, **inputs).result
    ranked, _, on = run(BlendedRankResults, demote_lone_winners=True, **inputs).result
    assert off == plain
    flagged = [int(m.group(1)) for m in re.finditer(r"sample (\d+) .*! first only on", plain)]
    assert flagged, "these samples were chosen to give a lone winner"
    order_off, order_on = [i for i, _ in ranked_lines(off)], [i for i, _ in ranked_lines(on)]
    assert order_on == [i for i in order_off if i not in flagged] + [i for i in order_off if i in flagged]
    assert order_on != order_off and torch.equal(ranked, images[order_on])
    assert on.count("(demoted below the unflagged samples)") == len(flagged)


def test_rank_results_needs_clip_guidance_and_a_weight(tiny_clip):
    source, mask, images = seam_samples()
    with pytest.raises(ValueError, match="guidance has no CLIP term"):
        run(BlendedRankResults, images=images, mask=mask, guidance=Guidance((RangeLoss(50.0),)), top_k=2)
    with pytest.raises(ValueError, match="clip_weight, seam_weight and scene_weight are all 0"):
        run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=2, clip_weight=0.0)
    with pytest.raises(ValueError, match="top_k is 0"):
        run(BlendedRankResults, images=images, mask=mask, guidance=clip_guidance(tiny_clip), top_k=0)


def test_evaluate_reports_every_metric_as_json(tiny_clip, random_lpips):
    source, mask, images = seam_samples()
    touched = images[2:3].clone()
    touched[:, :4] = touched[:, :4] * 0.9  # the background changed in a strip far from the mask
    images = torch.cat([images, touched])
    out = run(BlendedEvaluate, images=images, source=source, mask=mask, prompt="a red ball", band_px=2,
              clip=tiny_clip, lpips=random_lpips)
    (text,) = out.result
    assert out.ui.as_dict() == {"text": (text,)}
    report = json.loads(text)
    assert set(report) == {"background_psnr", "band_px", "seam", "background_lpips", "diversity_lpips", "clip_score"}
    assert report["band_px"] == 2
    for key in ("background_psnr", "seam", "background_lpips", "clip_score"):
        assert len(report[key]) == 4, key
    psnr = report["background_psnr"]
    assert psnr[0] == psnr[1] == psnr[2] and psnr[0] > 60  # untouched background
    assert 10 < psnr[3] < psnr[0]
    assert report["background_lpips"][0] == 0 and report["background_lpips"][3] > 0
    assert report["seam"][0] < report["seam"][2] < report["seam"][1]  # none, softer, black box

    (bare,) = run(BlendedEvaluate, images=images, source=source, mask=mask, prompt="a red ball", band_px=2).result
    assert set(json.loads(bare)) == {"background_psnr", "band_px", "seam"}  # no CLIP, no LPIPS: PSNR and seam
    with pytest.raises(ValueError, match="source has a batch of 2"):
        run(BlendedEvaluate, images=images, source=torch.cat([source, source]), mask=mask, prompt="x", band_px=2)


# --- latent path: crop and stitch (no model needed) -------------------------------------------------

IH, IW = 72, 100


def crop_inputs(**overrides):
    inputs = dict(image=comfy_image(IH, IW, seed=4), mask=box_mask(IH, IW, 20, 44, 70, 96), resolution=64,
                  multiple=8, context_margin=0.25, mask_dilate=0)
    return {**inputs, **overrides}


@pytest.mark.parametrize("resolution, multiple", [(64, 8), (64, 16), (96, 32)])
def test_latent_crop_sizes_are_the_models_multiples(resolution, multiple):
    inputs = crop_inputs(resolution=resolution, multiple=multiple)
    image, mask, crop = run(BlendedLatentCrop, **inputs).result
    h, w = image.shape[1:3]
    assert image.shape == (1, h, w, 3) and mask.shape == (1, h, w)
    assert h % multiple == 0 and w % multiple == 0 and min(h, w) == resolution
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert isinstance(crop, LatentCrop) and crop.size == (h, w)
    assert float(image.min()) >= 0 and float(image.max()) <= 1


def test_latent_crop_names_bad_inputs():
    with pytest.raises(ValueError, match="resolution 72 must be a multiple of 16"):
        run(BlendedLatentCrop, **crop_inputs(resolution=72, multiple=16))
    with pytest.raises(ValueError, match="mask is 40x30 pixels but the image is 100x72"):
        run(BlendedLatentCrop, **crop_inputs(mask=box_mask(30, 40, 2, 9, 2, 9)))
    with pytest.raises(ValueError, match="resolution is 32: give a whole number from 64"):
        run(BlendedLatentCrop, **crop_inputs(resolution=32))


def test_latent_stitch_pastes_only_inside_the_mask():
    inputs = crop_inputs()
    crop_image, _, crop = run(BlendedLatentCrop, **inputs).result
    edited = torch.cat([1 - crop_image, crop_image.flip(2)])  # two samples, different everywhere
    out = run(BlendedLatentStitch, crop=crop, images=edited, mask_feather=0)
    full, weights, report = out.result
    assert out.ui.as_dict() == {"text": (report,)}
    assert full.shape == (2, IH, IW, 3) and weights.shape == (2, IH, IW)
    source = inputs["image"].expand_as(full)
    outside = (inputs["mask"][0] == 0)[None, :, :, None].expand_as(full)
    assert torch.equal(full[outside], source[outside])
    assert not torch.equal(full[~outside], source[~outside]) and not torch.equal(full[0], full[1])
    assert torch.equal(weights[0], inputs["mask"][0])
    lines = report.splitlines()
    assert len(lines) == 3 and lines[1].startswith("image 0 (source 0): exact paste;") and "image 1" in lines[2]
    assert all("seam score" in line and "exact paste ->" in line for line in lines[1:])
    feathered, soft, _ = run(BlendedLatentStitch, crop=crop, images=edited, mask_feather=4).result
    assert torch.equal(feathered[outside], source[outside]) and 0 < float(soft[0][soft[0] < 1].max()) < 1
    with pytest.raises(ValueError, match="images are 32x32 but the crop is"):
        run(BlendedLatentStitch, crop=crop, images=torch.rand(1, 32, 32, 3), mask_feather=0)
    for seam in ("feather", "colour match", "gradient domain"):
        seamed, _, seam_report = run(BlendedLatentStitch, crop=crop, images=edited, mask_feather=0, seam=seam).result
        assert torch.equal(seamed[outside], source[outside]), seam
        assert not torch.equal(seamed, full), seam
        assert [line.split("): ")[1].startswith(seam) for line in seam_report.splitlines()[1:]] == [True, True]


def test_latent_sampler_object_is_a_core_sampler_with_shrinking_masks():
    mask = box_mask(64, 64, 16, 34, 30, 50)
    (sampler,) = run(BlendedLatentSamplerObject, sampler_name="euler", mask=mask, shrink_px=8,
                     shrink_fraction=0.5).result
    assert isinstance(sampler, BlendingSampler) and isinstance(sampler, comfy.samplers.Sampler)
    sigmas = torch.tensor([14.6, 5.0, 1.5, 0.0])
    per_step = sampler.masks_for(sigmas, torch.zeros(1, 4, 8, 8))
    assert len(per_step) == 3 and per_step[0].shape == (1, 1, 8, 8)
    assert int(per_step[0].sum()) > int(per_step[-1].sum())  # the mask shrinks over the steps
    assert torch.equal(per_step[-1] > 0, cover_mask(mask[:, None], 8) > 0)  # to the precise mask
    (empty,) = run(BlendedLatentSamplerObject, sampler_name="euler", mask=torch.zeros(1, 64, 64), shrink_px=8,
                   shrink_fraction=0.5).result
    latent = torch.randn(1, 4, 8, 8)  # an empty mask edits nothing: the source comes back, no model call
    assert empty.sample(object(), sigmas, {}, None, torch.randn_like(latent), latent) is latent
    with pytest.raises(ValueError, match="sampler_name 'nope' is not one of its choices"):
        run(BlendedLatentSamplerObject, sampler_name="nope", mask=mask, shrink_px=8, shrink_fraction=0.5)


# --- latent path on a random SD1.5 checkpoint -------------------------------------------------------

SIZE = 64


def latent_sampler_inputs(sd15, source, **overrides):
    model, clip, _ = sd15
    inputs = dict(model=model, positive=encode_text(clip, "a red apple"), negative=encode_text(clip, ""),
                  latent={"samples": source}, mask=box_mask(SIZE, SIZE, 16, 34, 30, 50), seed=3, steps=2, cfg=5.0,
                  sampler_name="euler", scheduler="normal", denoise=1.0, batch_size=2, shrink_px=0,
                  shrink_fraction=0.0)
    return {**inputs, **overrides}


def test_latent_sampler_keeps_the_source_latent_outside_the_mask(sd15):
    latent = sd15[2].encode(comfy_image(SIZE, SIZE)).detach()
    inputs = latent_sampler_inputs(sd15, latent)
    (result,) = run(BlendedLatentSampler, **inputs).result
    out = result["samples"]
    assert set(result) == {"samples"} and out.shape == (2, 4, SIZE // 8, SIZE // 8) and torch.isfinite(out).all()
    outside = (cover_mask(inputs["mask"][:, None], 8) == 0).expand_as(out)
    assert torch.equal(out[outside], latent.expand_as(out)[outside])  # bit for bit
    assert not torch.equal(out[~outside], latent.expand_as(out)[~outside])
    assert not torch.equal(out[0], out[1])


def test_latent_sampler_stops_on_cancel_and_names_bad_latents(sd15):
    latent = sd15[2].encode(comfy_image(SIZE, SIZE)).detach()
    inputs = latent_sampler_inputs(sd15, latent, batch_size=1)
    with cancel_pressed(), pytest.raises(mm.InterruptProcessingException):
        run(BlendedLatentSampler, **inputs)
    with pytest.raises(ValueError, match="latent is empty"):
        run(BlendedLatentSampler, **latent_sampler_inputs(sd15, torch.zeros_like(latent)))
    with pytest.raises(ValueError, match="latent must be a LATENT"):
        run(BlendedLatentSampler, **latent_sampler_inputs(sd15, latent, latent=latent))
    with pytest.raises(ValueError, match="cfg is nan"):
        run(BlendedLatentSampler, **latent_sampler_inputs(sd15, latent, cfg=math.nan))


def test_auto_mask_finds_a_mask_at_the_images_size_that_the_latent_sampler_takes(sd15):
    model, clip, vae = sd15
    latent = vae.encode(comfy_image(SIZE, SIZE)).detach()
    inputs = dict(model=model, target=encode_text(clip, "a red apple"), reference=encode_text(clip, "a bowl"),
                  latent={"samples": latent}, seed=1, draws=2, strength=0.5, threshold=0.4, grow_px=0)
    mask, soft, report = run(BlendedAutoMask, **inputs).result
    assert mask.shape == soft.shape == (1, SIZE, SIZE) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert report.startswith("auto mask (DiffEdit): 2 draws") and "4 predictions" in report
    assert torch.equal(mask, run(BlendedAutoMask, **inputs, image=comfy_image(SIZE, SIZE)).result[0])
    (result,) = run(BlendedLatentSampler, **latent_sampler_inputs(sd15, latent, mask=mask, batch_size=1)).result
    outside = (cover_mask(mask[:, None], 8) == 0).expand_as(result["samples"])
    assert torch.equal(result["samples"][outside], latent.expand_as(result["samples"])[outside])
    with pytest.raises(ValueError, match="image is 40x64 px but the latent is 8x8 cells"):
        run(BlendedAutoMask, **inputs, image=comfy_image(SIZE, 40))
    with pytest.raises(ValueError, match="draws is 0"):
        run(BlendedAutoMask, **{**inputs, "draws": 0})


def test_confine_edit_keeps_the_source_outside_what_the_edit_changed(comfy_temp_folder):
    source = comfy_image(48, 64, seed=2)
    edited = source.clone()
    edited[:, 10:30, 20:40] = 1 - edited[:, 10:30, 20:40]
    out = run(BlendedConfineEdit, source=source, edited=edited * 0.97 + 0.02, threshold=0.1,
              grow_px=2, align=True, seam="exact paste")
    images, mask, report = out.result
    assert images.shape == source.shape and mask.shape == (1, 48, 64) and "region " in report
    reported_file(out.ui, report, comfy_temp_folder)
    assert torch.equal(images[mask == 0], source[mask == 0])
    assert mask[0, 12:28, 22:38].all() and not mask[0, :5].any()
    with pytest.raises(ValueError, match="grow_px is -1"):
        run(BlendedConfineEdit, source=source, edited=edited, threshold=0.1, grow_px=-1, align=True,
            seam="exact paste")


def edited_latents(vae, size, samples, seed):
    """A photo, a box mask and ``samples`` latents of it with noise in the mask's cells: what a
    blended sampler hands the reconstruction."""
    source, mask = comfy_image(size, size, seed=5), box_mask(size, size, 8, 24, 8, 20)
    latent = vae.encode(source).detach()
    cells = cover_mask(mask[:, None], 8).expand(samples, *latent.shape[1:]) > 0
    noise = torch.randn((samples, *latent.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return source, mask, torch.where(cells, noise, latent.expand_as(noise))


@pytest.mark.parametrize("iterations, size, samples", [(0, SIZE, 2), (2, 32, 1)])
def test_background_reconstruction_returns_images_and_its_report(sd15, iterations, size, samples):
    vae = sd15[2]
    source, mask, edited = edited_latents(vae, size, samples, seed=0)
    out = run(BlendedBackgroundReconstruction, vae=vae, source=source, mask=mask, latent={"samples": edited},
              iterations=iterations, learning_rate=2e-5, background_weight=100.0, mask_feather=0)
    images, report = out.result
    assert images.shape == (samples, size, size, 3) and out.ui.as_dict() == {"text": (report,)}
    outside = (mask[0] == 0)[None, :, :, None].expand_as(images)
    assert torch.equal(images[outside], source.expand_as(images)[outside])
    assert not torch.equal(images[~outside], source.expand_as(images)[~outside])
    lines = report.splitlines()
    assert lines[0].startswith("background reconstruction") and len(lines) == 1 + samples
    for i, line in enumerate(lines[1:]):
        assert line.startswith(f"image {i}: outside the mask max |diff| 0 (0 = exact)")
    plain, tuned = map(float, re.search(r"([\d.]+) plain -> ([\d.]+) tuned", lines[1]).groups())
    assert (tuned == plain) if iterations == 0 else (tuned < plain)


@pytest.mark.parametrize("seam", ["reconstruct decoder", "reconstruct + gradient domain"])
def test_background_reconstruction_seam_modes_keep_the_outside_and_report_per_image(sd15, seam):
    vae = sd15[2]
    size, samples = 32, 2
    source, mask, edited = edited_latents(vae, size, samples, seed=1)
    out = run(BlendedBackgroundReconstruction, vae=vae, source=source, mask=mask, latent={"samples": edited},
              iterations=20, learning_rate=5e-4, background_weight=100.0, mask_feather=2, seam=seam)
    images, report = out.result
    outside = (mask[0] == 0)[None, :, :, None].expand_as(images)
    assert torch.equal(images[outside], source.expand_as(images)[outside])  # bit for bit, every mode
    lines = report.splitlines()[1:]
    assert len(lines) == samples
    for i, line in enumerate(lines):
        assert line.startswith(f"image {i}: outside the mask max |diff| 0 (0 = exact)")
        assert f"mode {seam}: last 1 decoder block(s) + output conv" in line
        steps = int(re.search(r"(\d+) Adam steps \(stopped: (target|plateau|cap)\)", line).group(1))
        assert 0 < steps <= 20
        before, after = map(float, re.search(r"seam score ([\d.]+) plain decode -> ([\d.]+)", line).groups())
        assert before >= 0 and after >= 0
    with pytest.raises(ValueError, match="seam 'poisson' is not one of its choices: 'reconstruct decoder'"):
        run(BlendedBackgroundReconstruction, vae=vae, source=source, mask=mask, latent={"samples": edited},
            iterations=0, learning_rate=5e-4, background_weight=100.0, mask_feather=0, seam="poisson")


def test_background_reconstruction_names_bad_inputs(sd15):
    vae = sd15[2]
    source, mask = comfy_image(32, 32), box_mask(32, 32, 8, 24, 8, 20)
    latent = {"samples": vae.encode(source).detach()}
    common = dict(vae=vae, latent=latent, iterations=0, learning_rate=1e-4, background_weight=100.0, mask_feather=0)
    with pytest.raises(ValueError, match="learning_rate is 0: give a number from"):
        run(BlendedBackgroundReconstruction, source=source, mask=mask, **{**common, "learning_rate": 0.0})
    with pytest.raises(ValueError, match="mask is 64x64 pixels but the image is 32x32"):
        run(BlendedBackgroundReconstruction, source=source, mask=box_mask(64, 64, 2, 9, 2, 9), **common)
    with pytest.raises(ValueError, match="LATENT"):
        run(BlendedBackgroundReconstruction, source=source, mask=mask, **{**common, "latent": None})
    with pytest.raises(ValueError, match="image latent"):
        flat = {"samples": torch.tensor(1.0)}  # not [batch, channels, height, width]
        run(BlendedBackgroundReconstruction, source=source, mask=mask, **{**common, "latent": flat})
