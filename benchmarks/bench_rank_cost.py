"""What ranking costs: best-of-N with each criterion against one SDXL sample, at the real model sizes.

    python -m benchmarks.bench_rank_cost [--candidates 8] [--size 1024] [--steps 30] [--run-steps 2]
                                         [--min-free-gb 6] [--wait-s 900] [--tiny]

Every model is built at its real size with random weights (the cost of a forward does not depend on
the values) and written in its real file format to a temporary folder outside the repository, then
loaded by the pack's own loaders (the functions its loader nodes call). Each file is read once before
the clock starts, so it comes from the page cache: the load figure is what a user's load costs minus
the disk.

- ranking CLIP: OpenAI's ViT-B/16 (QuickGELU) as OpenAI ships it, a TorchScript archive in fp16
  (ViT-B-16.pt) -> ``blended.clip_model.load_clip``;
- HPSv2.1: open_clip's ViT-H-14 saved as HPSv2 saves it (``torch.save({"state_dict": ...})``, fp32)
  -> ``load_reward("hpsv2")``;
- PickScore v1: transformers' ``CLIPModel`` with the config of laion/CLIP-ViT-H-14 (PickScore_v1's),
  ``model.safetensors`` in fp32 -> ``load_reward("pickscore")``;
- LAION aesthetic v2: the authors' MLP (``.pth``) plus OpenAI's ViT-L/14 TorchScript archive (fp16)
  -> ``load_reward("aesthetic")``.

Scoring: N candidates of size x size px (random pixels, one centred mask of half the side, the batch
cut to the mask's context box as Blended Rank Results cuts it) through ``blended.ranking.score_samples``
as the node calls it. The CLIP criterion is the whole call without reward models (D_CLIP + seam); a
reward criterion is the time inside the ``on_device`` block that ``score_samples`` opens around each
reward model, judged on the whole picture (``whole_image``, the largest view), text encoding included.

The sample: SDXL's UNet at its real size (ComfyUI's own detection of SDXL's key layout gives the config,
its model class builds it with random fp32 weights, in a ModelPatcher; the transformer blocks of a level
share their weight tensors, which keeps the work and cuts 10 GB to 1.6 GB: ``tie_transformer_blocks``),
a 128x128 latent (1024 px), sampled by ``comfy.sample.sample`` as KSampler calls it (euler, normal,
cfg 8: cond and uncond each step), stopped after ``--run-steps`` of a ``--steps`` schedule
(KSamplerAdvanced's end_at_step). The mean measured step times ``--steps`` is the estimate; text
encoding and the VAE decode are not in it.

One model is in memory at a time, the SDXL sample first; before it the run waits until
MemAvailable is at least ``--min-free-gb`` (polled every 30 s, up to ``--wait-s``). Peak RSS is
reported per phase (VmHWM, reset at each phase start), and so are the box's load average and the major
page faults while timed (pages read back from disk: a phase with many ran under memory pressure). The last line is

    rank_cost: sample_s=<x> clip=<ratio> hpsv2=<ratio> pickscore=<ratio> aesthetic=<ratio>

each ratio the time to score the N candidates with that criterion over the time of one sample, in CPU
time of this one-thread process (the wall clock of a phase on a shared box depends on what else ran
then; both are in the table).

``--tiny`` runs the same code on tiny models (tests/test_rank_cost.py): a check of the mechanics only.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import resource
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import torch

GIB = 2**30
REWARDS = ("hpsv2", "pickscore", "aesthetic")
PROMPT = "a red ball on a wooden table"
# PickScore_v1's config.json (that of laion/CLIP-ViT-H-14-laion2B-s32B-b79K) as transformers reads it.
PICK_CONFIG = dict(
    text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                     num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                     eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
    vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                       patch_size=14, image_size=224, hidden_act="gelu"),
    projection_dim=1024,
)
TINY_PICK_CONFIG = dict(
    text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                     num_attention_heads=1, max_position_embeddings=77, hidden_act="gelu",
                     eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
    vision_config=dict(hidden_size=160, intermediate_size=320, num_hidden_layers=1, num_attention_heads=2,
                       patch_size=8, image_size=32, hidden_act="gelu"),
    projection_dim=32,
)
AESTHETIC_SIZES = (1024, 128, 64, 16, 1)  # the authors' MLP after the CLIP embedding
NEED_GB = {"clip": 2, "aesthetic": 5, "pickscore": 10, "hpsv2": 10}  # peak of a phase, with margin


@dataclass
class Phase:
    name: str
    load_s: float = math.nan
    score_s: float = math.nan  # all candidates, wall clock
    score_cpu_s: float = math.nan  # the same, CPU time of this process (what a dedicated core would take)
    peak_gb: float = math.nan
    load_avg: float = math.nan  # the box's 1-minute load average when the phase ended (it is shared)
    faults: int = 0  # major page faults while timed: pages read back from disk (memory pressure)
    notes: list[str] = field(default_factory=list)


# --- memory ---------------------------------------------------------------------------------------


def available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return math.inf


def major_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def reset_peak() -> None:
    """Reset VmHWM (the peak RSS) of this process so each phase reports its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return math.nan


def wait_for_memory(need_gb: float, wait_s: float, poll_s: float = 30.0) -> float:
    """Wait (polling) until MemAvailable >= ``need_gb``: the box is shared, and a phase that starts
    short of memory would swap or be killed. Returns the seconds waited; raises after ``wait_s``."""
    start = time.monotonic()
    while available_gb() < need_gb:
        if time.monotonic() - start > wait_s:
            raise SystemExit(f"only {available_gb():.1f} GB available after {wait_s:.0f} s; need {need_gb} GB")
        print(f"  waiting for {need_gb} GB available (now {available_gb():.1f} GB)", flush=True)
        time.sleep(poll_s)
    return time.monotonic() - start


def release() -> None:
    gc.collect()
    gc.collect()


# --- files in their real formats ------------------------------------------------------------------


def open_clip_model(name: str, tiny: bool, quick_gelu: bool):
    """open_clip's ``name`` at its real config, or with every size shrunk (``--tiny``), random weights."""
    from open_clip import get_model_config
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    cfg = get_model_config(name)
    vision, text, embed = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"]), cfg["embed_dim"]
    if tiny:
        head = vision.get("head_width", 64)
        vision.update(layers=1, width=2 * head, patch_size=8, image_size=32)
        text.update(layers=1, width=64, heads=1)
        embed = 32
    torch.manual_seed(0)
    model = CLIP(embed_dim=embed, vision_cfg=CLIPVisionCfg(**vision), text_cfg=CLIPTextCfg(**text),
                 quick_gelu=quick_gelu)
    return model.eval().requires_grad_(False)


def write_openai_archive(path: Path, name: str, tiny: bool) -> Path:
    """An OpenAI CLIP file as OpenAI ships it: a TorchScript archive of the fp16 model."""
    model = open_clip_model(name, tiny, quick_gelu=True).half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model).save(str(path))
    return path


def write_hps(path: Path, tiny: bool) -> Path:
    model = open_clip_model("ViT-H-14", tiny, quick_gelu=False)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, str(path))  # HPSv2's checkpoint layout
    return path


def write_pickscore(path: Path, tiny: bool) -> Path:
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(**(TINY_PICK_CONFIG if tiny else PICK_CONFIG)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_aesthetic_mlp(path: Path, tiny: bool) -> Path:
    sizes = (32 if tiny else 768,) + AESTHETIC_SIZES
    L, D = torch.nn.Linear, torch.nn.Dropout
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(L(sizes[0], sizes[1]), D(0.2), L(sizes[1], sizes[2]), D(0.2), L(sizes[2], sizes[3]),
                              D(0.1), L(sizes[3], sizes[4]), L(sizes[4], sizes[5]))
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, str(path))
    return path


def read_through(*paths: Path) -> None:
    """Read each file once so the timed load finds it in the page cache (load minus disk speed)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


# --- candidates and scoring -----------------------------------------------------------------------


def candidates(n: int, size: int):
    """N pictures in [-1, 1] and one centred mask of half the side, cut to the mask's context box as
    Blended Rank Results cuts them; (box views, box masks, whole pictures)."""
    from blended.pixel.edit import crop_to_mask

    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    box, box_mask = crop_to_mask(images, mask)
    return box, box_mask, images


def clip_criterion_s(guidance, views) -> float:
    """The default ranking (D_CLIP in the mask + seam), the whole ``score_samples`` call."""
    from blended.ranking import score_samples

    box, box_mask, _ = views
    start, cpu = time.perf_counter(), time.process_time()
    score_samples(box, box_mask, guidance)
    return time.perf_counter() - start, time.process_time() - cpu


def reward_criterion_s(guidance, views, reward) -> float:
    """One reward criterion in ``score_samples``: the time inside its ``on_device`` block."""
    from blended.ranking import RewardCriterion, score_samples

    box, box_mask, whole = views
    spent = []

    @contextlib.contextmanager
    def timed(_reward):
        start, cpu = time.perf_counter(), time.process_time()
        yield
        spent.append((time.perf_counter() - start, time.process_time() - cpu))

    table = score_samples(box, box_mask, guidance, rewards=(RewardCriterion(reward, 1.0, "whole_image"),),
                          whole_images=whole, chunk=len(whole), on_device=timed)
    if len(spent) != 1 or not table.criteria:
        raise RuntimeError(f"{reward.label}: the reward criterion did not run once ({len(spent)} blocks)")
    return spent[0]


# --- phases ---------------------------------------------------------------------------------------


def timed_load(load, *paths):
    read_through(*paths)
    start = time.perf_counter()
    model = load()
    return model, time.perf_counter() - start


def clip_phase(folder: Path, tiny: bool, views) -> tuple[Phase, object]:
    from blended.clip_model import load_clip
    from blended.guidance import ClipGuidance

    phase = Phase("clip")
    reset_peak()
    path = write_openai_archive(folder / "ViT-B-16.pt", "ViT-B-16", tiny)
    release()
    faults = major_faults()
    clip, phase.load_s = timed_load(lambda: load_clip(path), path)
    guidance = ClipGuidance(clip, PROMPT)
    phase.score_s, phase.score_cpu_s = clip_criterion_s(guidance, views)
    phase.faults = major_faults() - faults
    phase.peak_gb, phase.load_avg = peak_gb(), os.getloadavg()[0]
    path.unlink()
    return phase, guidance


def reward_files(kind: str, folder: Path, tiny: bool) -> tuple[Path, ...]:
    if kind == "hpsv2":
        return (write_hps(folder / "HPS_v2.1_compressed.pt", tiny),)
    if kind == "pickscore":
        return (write_pickscore(folder / "PickScore_v1.safetensors", tiny),)
    return (write_aesthetic_mlp(folder / "sac+logos+ava1-l14-linearMSE.pth", tiny),
            write_openai_archive(folder / "ViT-L-14.pt", "ViT-L-14", tiny))


def reward_phase(kind: str, folder: Path, tiny: bool, views, guidance, wait_s: float) -> Phase:
    from blended.reward_models import load_reward

    phase = Phase(kind)
    if not tiny:
        wait_for_memory(NEED_GB[kind], wait_s)
    reset_peak()
    paths = reward_files(kind, folder, tiny)
    release()
    faults = major_faults()
    reward, phase.load_s = timed_load(lambda: load_reward(kind, *paths), *paths)
    phase.score_s, phase.score_cpu_s = reward_criterion_s(guidance, views, reward)
    phase.faults = major_faults() - faults
    phase.peak_gb, phase.load_avg = peak_gb(), os.getloadavg()[0]
    del reward
    for path in paths:
        path.unlink()
    release()
    return phase


# --- the SDXL sample --------------------------------------------------------------------------------


def sdxl_model(tiny: bool, latent: int):
    """A ModelPatcher of SDXL's UNet (ComfyUI's classes, random fp32 weights, the transformer blocks
    of a level sharing theirs: ``tie_transformer_blocks``) and its conditioning."""
    from tests.support import latent_families as lf

    if tiny:
        built = lf.build("sdxl", (latent, latent))
        tie_transformer_blocks(built.model.model.diffusion_model)
        init_weights(built.model.model.diffusion_model)
        return built.model, built.positive, built.negative
    import comfy.model_management as mm
    import comfy.model_patcher

    config = lf.detected_config("sdxl")  # SDXL's full config, from ComfyUI's detection of its layout
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({}, "")  # uninitialised: its 10 GB are not touched yet, so not resident
    tie_transformer_blocks(base.diffusion_model)
    init_weights(base.diffusion_model)
    model = comfy.model_patcher.ModelPatcher(base.eval(), load_device=mm.get_torch_device(),
                                             offload_device=mm.unet_offload_device())
    return model, sdxl_cond(latent, 1), sdxl_cond(latent, 2)


def tie_transformer_blocks(module: torch.nn.Module) -> int:
    """Make every transformer block use the weight tensors of the first block of its shape.

    SDXL's UNet is 10 GB in fp32, 8.4 GB of them in its 70 transformer blocks (60 of width 1280, 10 of
    640); as resident memory on this shared box it got the first full run killed by the OOM killer and
    the second paged out when other processes grew. Tied, the blocks of one width hold one block's
    tensors: each block still runs its own forward, with weights (140 MB at width 1280) far beyond any
    CPU cache, so read from memory each time as untied ones are; the work and the time are a full
    UNet's, in 1.6 GB. Returns how many blocks were tied."""
    from comfy.ldm.modules.attention import BasicTransformerBlock

    first, tied = {}, 0
    for block in module.modules():
        if not isinstance(block, BasicTransformerBlock):
            continue
        shapes = tuple((name, tuple(p.shape)) for name, p in block.named_parameters())
        if shapes not in first:
            first[shapes] = dict(block.named_parameters())
            continue
        for name, _ in shapes:
            owner, _, leaf = name.rpartition(".")
            block.get_submodule(owner)._parameters[leaf] = first[shapes][name]
        tied += 1
    return tied


def init_weights(module: torch.nn.Module) -> None:
    """ComfyUI's layers are created uninitialised (garbage can hold NaNs or denormals, which change
    the CPU's speed): weights ~ N(0, 1/fan_in), norm scales 1, biases 0; a tied tensor once."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() <= 1:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
            else:
                p.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=gen)


def sdxl_cond(latent: int, seed: int) -> list:
    """SDXL's conditioning as its text encoders give it: 77 tokens of CLIP-L+G (2048), the pooled
    CLIP-G (1280) and the size conditioning of a ``latent * 8`` px picture."""
    g = torch.Generator().manual_seed(seed)
    px = latent * 8
    return [[torch.randn(1, 77, 2048, generator=g), {
        "pooled_output": torch.randn(1, 1280, generator=g), "width": px, "height": px, "crop_w": 0, "crop_h": 0,
        "target_width": px, "target_height": px}]]


def sample_phase(tiny: bool, size: int, steps: int, run_steps: int, min_free_gb: float, wait_s: float) -> Phase:
    """``run_steps`` steps of a ``steps``-step KSampler run (euler, normal, cfg 8); Phase.score_s is
    the estimate for all ``steps``."""
    from tests.support.sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import comfy.sample

    phase = Phase("sdxl")
    if not tiny:
        waited = wait_for_memory(min_free_gb, wait_s)
        phase.notes.append(f"waited {waited:.0f} s for {min_free_gb} GB available")
    reset_peak()
    latent = size // 8
    start = time.perf_counter()
    model, positive, negative = sdxl_model(tiny, latent)
    phase.load_s = time.perf_counter() - start  # building it, not loading a file: printed for information
    unique = sum(p.numel() for p in model.model.diffusion_model.parameters())
    phase.notes.append(f"UNet {unique * 4 / GIB:.1f} GB of distinct fp32 tensors")
    calls = []

    def counted(apply, a):  # ComfyUI's public UNet wrapper: each call's batch and seconds
        start = time.perf_counter()
        out = apply(a["input"], a["timestep"], **a["c"])
        calls.append((a["input"].shape[0], time.perf_counter() - start))
        return out

    model = model.clone()
    model.set_model_unet_function_wrapper(counted)
    empty = torch.zeros(1, 4, latent, latent)  # SDXL's 4-channel latent of an empty picture
    noise = comfy.sample.prepare_noise(empty, 0)
    start, cpu, faults = time.perf_counter(), time.process_time(), major_faults()
    comfy.sample.sample(model, noise, steps, 8.0, "euler", "normal", positive, negative, empty,
                        last_step=run_steps, disable_pbar=True, seed=0)
    spent, spent_cpu = time.perf_counter() - start, time.process_time() - cpu
    phase.faults = major_faults() - faults
    phase.score_s, phase.score_cpu_s = spent / run_steps * steps, spent_cpu / run_steps * steps
    phase.peak_gb, phase.load_avg = peak_gb(), os.getloadavg()[0]
    phase.notes.append(f"{run_steps} of {steps} steps took {spent:.1f} s, CPU {spent_cpu:.1f} s "
                       f"({spent / run_steps:.1f} s/step, "
                       f"{len(calls)} UNet calls, batch {calls[0][0] if calls else 0}, "
                       f"{', '.join(f'{t:.1f}' for _, t in calls)} s each)")
    del model
    release()
    return phase


# --- report ---------------------------------------------------------------------------------------


def report(phases: dict[str, Phase], n: int, size: int, steps: int) -> list[str]:
    """The table, wall clock and CPU time side by side; the ratios of the last line are CPU time's:
    on a shared box the wall clock of each phase depends on what else ran then, the CPU time of a
    one-thread process hardly does."""
    sample = phases["sdxl"]
    lines = [f"{n} candidates at {size} px, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
             f"device cpu",
             f"SDXL sample ({steps} steps, estimated): {sample.score_s:.1f} s wall, {sample.score_cpu_s:.1f} s CPU; "
             f"building the UNet {sample.load_s:.1f} s; peak RSS {sample.peak_gb:.1f} GB; load average "
             f"{sample.load_avg:.1f}; {sample.faults} major page faults; {'; '.join(sample.notes)}",
             f"{'criterion':<10} {'load s':>7} {f'{n} cand. s':>10} {'CPU s':>7} {'per cand.':>9} "
             f"{'x sample':>9} {'wall x':>7} {f'x {n} samp.':>10} {'peak GB':>7} {'load avg':>8} {'maj.flt':>7}"]
    ratios = {}
    for name in ("clip", *REWARDS):
        p = phases[name]
        ratios[name] = p.score_cpu_s / sample.score_cpu_s
        lines.append(f"{name:<10} {p.load_s:7.2f} {p.score_s:10.2f} {p.score_cpu_s:7.2f} {p.score_cpu_s / n:9.3f} "
                     f"{ratios[name]:9.4f} {p.score_s / sample.score_s:7.4f} {ratios[name] / n:10.5f} "
                     f"{p.peak_gb:7.2f} {p.load_avg:8.1f} {p.faults:7d}")
    peak = max(p.peak_gb for p in phases.values())
    lines.append(f"peak RSS of any phase: {peak:.1f} GB")
    lines.append(f"rank_cost: sample_s={sample.score_cpu_s:.2f} "
                 + " ".join(f"{k}={v:.4f}" for k, v in ratios.items()))
    return lines


def run(n: int, size: int, steps: int, run_steps: int, min_free_gb: float, wait_s: float, tiny: bool,
        folder: Path | None = None) -> list[str]:
    """Every phase, one model in memory at a time; the report's lines (also printed)."""
    with tempfile.TemporaryDirectory(prefix="blended_rank_cost_", dir=folder) as tmp:
        phases = {"sdxl": sample_phase(tiny, size, steps, run_steps, min_free_gb, wait_s)}  # the most memory
        print(f"sdxl: {'; '.join(phases['sdxl'].notes)}", flush=True)
        views = candidates(n, size)
        phases["clip"], guidance = clip_phase(Path(tmp), tiny, views)
        print(f"clip: load {phases['clip'].load_s:.2f} s, {n} candidates {phases['clip'].score_s:.2f} s", flush=True)
        for kind in REWARDS:
            phases[kind] = reward_phase(kind, Path(tmp), tiny, views, guidance, wait_s)
            print(f"{kind}: load {phases[kind].load_s:.2f} s, {n} candidates {phases[kind].score_s:.2f} s", flush=True)
    lines = report(phases, n, size, steps)
    print("\n".join(lines), flush=True)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=None, help="samples to rank (8; --tiny: 2)")
    parser.add_argument("--size", type=int, default=None, help="their side in px (1024; --tiny: 64)")
    parser.add_argument("--steps", type=int, default=None, help="the sample's schedule (30; --tiny: 3)")
    parser.add_argument("--run-steps", type=int, default=None, help="steps actually run (2; --tiny: 1)")
    parser.add_argument("--min-free-gb", type=float, default=6.0, help="MemAvailable to wait for before SDXL")
    parser.add_argument("--wait-s", type=float, default=900.0, help="longest wait for that memory")
    parser.add_argument("--tiny", action="store_true", help="tiny models: the mechanics only, for the test")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the temporary folder
    tiny_defaults, real_defaults = (2, 64, 3, 1), (8, 1024, 30, 2)
    n, size, steps, run_steps = (v if v is not None else d for v, d in zip(
        (args.candidates, args.size, args.steps, args.run_steps), tiny_defaults if args.tiny else real_defaults))
    if not 1 <= run_steps <= steps:
        parser.error(f"--run-steps {run_steps}: use 1 to --steps ({steps})")
    if size % 8 or size < 64:
        parser.error(f"--size {size}: use a multiple of 8 of at least 64 (SDXL's latent is size / 8)")
    run(n, size, steps, run_steps, args.min_free_gb, args.wait_s, args.tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
