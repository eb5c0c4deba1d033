"""Memory as a planned quantity: how many samples fit on the device at once, and at what cost.

A guided step keeps every activation of one UNet forward (and of CLIP on each augmented view)
alive for the backward pass, so memory grows linearly with the number of samples run together:
about 6 GiB per sample for the 256x256 ADM with ViT-B/16 and 8 augmentations in fp32. Rather than
letting a large batch crash, the sampler asks ``plan`` how many samples to run per chunk: the
budget (free memory, optionally capped by ``BLENDED_MEMORY_BUDGET_MB``) minus a fixed part,
divided by an estimate of one sample's cost. When not even one sample fits, gradient
checkpointing (``memory='low'``) recomputes each block in the backward pass instead of keeping
its insides: a fraction of the memory for more time (in theory a third more; measured 1.7-2.9x for
one sample on an H200, which at batch 1 waits on kernel launches rather than arithmetic).

The estimate is structural (element counts of the UNet's feature maps and of CLIP's tokens, which
scale with the model, the resolution and the number of augmented views) times constants measured
on the real model sizes (benchmarks/bench_memory.py --calibrate; docs/DESIGN.md, "Memory"). It
is meant to be a little pessimistic; on CUDA an out-of-memory error in a chunk still halves it.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch

from .errors import BlendedError, InputError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MEMORY_MODES = ("auto", "fast", "low")
BUDGET_ENV = "BLENDED_MEMORY_BUDGET_MB"
GiB = 2**30

# Bytes per structural element, from the peak of live tensor bytes of one guided step (what CUDA's
# max allocated counts) measured by ``benchmarks/bench_memory.py --calibrate``, rounded up by ~10%
# (docs/DESIGN.md, "Memory", has the measured values).
UNET_BYTES_PER_ELEMENT = {"fast": 3.3, "low": 0.95}  # per element of unet_elements(), fp32
CLIP_BYTES_PER_ELEMENT = {"fast": 17.0, "low": 3.0}  # per element of clip_elements() and view, fp32
# Under autocast most saved activations are half precision, but GroupNorm runs in fp32: the UNet
# part shrinks by these factors rather than by 2. Without checkpointing the half copies of the
# weights are also kept (the backward needs them), 2 bytes per parameter.
HALF_FACTOR = {"fast": 0.75, "low": 0.7}
LPIPS_BYTES_PER_PIXEL = 6000.0  # VGG16 activations kept for the background loss, per input pixel
FIXED_BYTES = 256 << 20  # schedule tables, noise, x̂0 and its previews, allocator slack
HEADROOM = 0.9  # plan for 90% of the budget: fragmentation, other processes' small allocations


class OutOfMemory(BlendedError):
    """Not even one checkpointed sample fits in the memory there is."""


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"{name} '{value}': choose one of {', '.join(allowed)}.")
    return value


def autocast_for(precision: str, device: torch.device | str) -> str:
    """The UNet's autocast for a ``precision`` choice: half on CUDA by default, fp32 on the CPU.

    bf16 has fp32's range, so it is preferred where the GPU has it; fp16 (older cards) relies on
    the sampler's loss scaling to keep guidance gradients finite.
    """
    check_choice("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision == "fp32" or device.type != "cuda":
        return "none"
    bf16_ok = torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if bf16_ok else "fp16"
    if precision == "bf16" and not bf16_ok:
        raise InputError("precision 'bf16': this GPU has no bfloat16 support; choose auto or fp16.")
    return precision


# --- what one sample costs ---------------------------------------------------------------------------


def unet_elements(config, height: int, width: int) -> int:
    """Feature-map elements one UNet forward produces per sample: every block's input and output.

    Walks the same structure ``UNetModel`` builds (resolution halves per level, decoder inputs
    are concatenations with the skips), so it scales with width, depth and resolution exactly
    as the activations do.
    """
    hw = height * width
    ch = cfg_ch = config.channels(config.channel_mult[0])
    total = config.in_channels * hw + ch * hw
    skips = [ch * hw]
    ds = 1
    for level, mult in enumerate(config.channel_mult):
        n = hw // ds**2
        for _ in range(config.num_res_blocks):
            out = config.channels(mult)
            total += (ch + out) * n + (out * n if ds in config.attention_ds else 0)
            ch = out
            skips.append(ch * n)
        if level != config.levels - 1:
            total += ch * n + ch * n // 4
            ds *= 2
            skips.append(ch * hw // ds**2)
    n = hw // ds**2
    total += 3 * ch * n
    for level, mult in reversed(list(enumerate(config.channel_mult))):
        for i in range(config.num_res_blocks + 1):
            n = hw // ds**2
            out = config.channels(mult)
            total += ch * n + skips.pop() + out * n + (out * n if ds in config.attention_ds else 0)
            ch = out
            if level and i == config.num_res_blocks:
                total += 4 * ch * n
                ds //= 2
    total += 2 * cfg_ch * hw
    return int(total)


def clip_elements(clip) -> int:
    """Token activations of one view through CLIP's image tower: tokens x width x layers."""
    visual = getattr(getattr(clip, "model", None), "visual", None)
    transformer = getattr(visual, "transformer", None)
    try:
        patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else int(visual.patch_size)
        tokens = (clip.image_size // patch) ** 2 + 1
        return int(tokens * transformer.width * len(transformer.resblocks))
    except (AttributeError, TypeError):  # another architecture: ViT-B/16 at 224 px, the paper's
        return 197 * 768 * 12


def guidance_views(guidance) -> tuple[object | None, int, bool]:
    """(the CLIP bundle, views per sample, whether an LPIPS background loss is on)."""
    clip, views, lpips = None, 0, False
    for term in getattr(guidance, "terms", ()):
        if hasattr(term, "clip") and hasattr(term, "augmentation"):
            clip = term.clip
            aug = term.augmentation
            views += 1 + (aug.count if aug is not None else 0)
        if getattr(term, "weight_lpips", 0):
            lpips = True
    return clip, views, lpips


@dataclass(frozen=True)
class Cost:
    """Estimated bytes: ``fixed`` once per chunk, ``per_sample`` for each sample in it."""

    fixed: int
    per_sample: int

    def chunk(self, samples: int) -> int:
        return self.fixed + samples * self.per_sample


def estimate(model, guidance, height: int, width: int, autocast: str = "none", checkpointing: bool = False) -> Cost:
    """Bytes one guided step needs, for ``model`` at ``height`` x ``width`` with ``guidance``."""
    mode = "low" if checkpointing else "fast"
    unet_bytes = UNET_BYTES_PER_ELEMENT[mode] * unet_elements(model.config, height, width) * 4
    fixed = FIXED_BYTES
    if autocast != "none":
        unet_bytes *= HALF_FACTOR[mode]
        if not checkpointing:
            fixed += 2 * sum(p.numel() for p in model.parameters())
    clip, views, lpips = guidance_views(guidance)
    clip_bytes = CLIP_BYTES_PER_ELEMENT[mode] * views * clip_elements(clip) * 4 if clip is not None else 0
    lpips_bytes = LPIPS_BYTES_PER_PIXEL * height * width if lpips else 0
    return Cost(fixed=int(fixed), per_sample=int(math.ceil(unet_bytes + clip_bytes + lpips_bytes)))


# --- how much there is ------------------------------------------------------------------------------


def budget_cap() -> int | None:
    """``BLENDED_MEMORY_BUDGET_MB`` in bytes: an upper bound on what the planner may use."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return None
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not mb > 0 or math.isinf(mb):
        raise InputError(f"{BUDGET_ENV}='{raw}': set it to a positive number of MiB (e.g. 8000), or unset it.")
    return int(mb * 2**20)


def free_bytes(device: torch.device | str) -> int:
    """Memory a new allocation can use now: CUDA free plus what torch has cached; RAM available."""
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # torch's per-process fraction wants an index; "cuda" means the current one
            device = torch.device("cuda", torch.cuda.current_device())
        free, total = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device)
        available = free + reserved - torch.cuda.memory_allocated(device)
        # A per-process cap (set_per_process_memory_fraction) binds torch's allocator, not the card.
        fraction = torch.cuda.get_per_process_memory_fraction(device)
        if fraction < 1.0:
            available = min(available, int(fraction * total) - torch.cuda.memory_allocated(device))
        return int(max(0, available))
    import psutil

    return int(psutil.virtual_memory().available)


def budget(device: torch.device | str, free: int | None = None) -> int:
    """What the planner may plan for: ``free`` (or the device's free memory), capped by the env."""
    available = free_bytes(device) if free is None else int(free)
    cap = budget_cap()
    return available if cap is None else min(available, cap)


# --- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    chunk: int  # samples per chunk
    checkpointing: bool
    cost: Cost  # for the chosen checkpointing
    budget: int

    def describe(self) -> str:
        return (
            f"{self.chunk} sample(s) per chunk, checkpointing {'on' if self.checkpointing else 'off'}: "
            f"about {self.cost.chunk(self.chunk) / GiB:.2f} GiB of {self.budget / GiB:.2f} GiB"
        )


def fits(cost: Cost, budget_bytes: int) -> int:
    """How many samples fit in ``budget_bytes`` at ``cost`` (0 when not even one)."""
    room = budget_bytes * HEADROOM - cost.fixed
    return max(0, int(room // max(cost.per_sample, 1)))


def plan(
    samples: int,
    model,
    guidance,
    height: int,
    width: int,
    budget_bytes: int,
    memory: str = "auto",
    autocast: str = "none",
) -> Plan:
    """Chunk size and checkpointing for ``samples`` samples in ``budget_bytes``.

    ``fast`` never checkpoints; ``low`` always does; ``auto`` checkpoints only when one sample
    would not fit otherwise (more samples per chunk rarely pays for the recomputation on a GPU
    that one 256x256 sample already keeps busy). At least one sample per chunk is always
    planned: the caller decides what to do when even that does not fit.
    """
    check_choice("memory", memory, MEMORY_MODES)
    full = estimate(model, guidance, height, width, autocast, checkpointing=False)
    low = estimate(model, guidance, height, width, autocast, checkpointing=True)
    if memory == "fast" or (memory == "auto" and fits(full, budget_bytes) >= 1):
        checkpointing, cost = False, full
    else:
        checkpointing, cost = True, low
    chunk = min(samples, max(1, fits(cost, budget_bytes)))
    return Plan(chunk=chunk, checkpointing=checkpointing, cost=cost, budget=int(budget_bytes))


def too_little_memory(cost: Cost, budget_bytes: int, device, detail: str = "") -> OutOfMemory:
    where = "GPU memory" if torch.device(device).type == "cuda" else "RAM"
    return OutOfMemory(
        f"Not enough {where} for even one sample: it needs about {cost.chunk(1) / GiB:.1f} GiB with gradient "
        f"checkpointing, and {budget_bytes / GiB:.1f} GiB is free{detail}. Close other programs or models, use "
        "fewer augmentations, a smaller mask (a smaller context box) or precision bf16/fp16 on a GPU; "
        f"{BUDGET_ENV} caps the planner's budget, it cannot raise it."
    )


# --- switching checkpointing on for one run ----------------------------------------------------------


def _clip_towers(guidance):
    for term in getattr(guidance, "terms", ()):
        clip = getattr(term, "clip", None)
        visual = getattr(getattr(clip, "model", None), "visual", None)
        if hasattr(getattr(visual, "transformer", None), "grad_checkpointing") and hasattr(
            visual, "set_grad_checkpointing"
        ):
            yield visual


@contextlib.contextmanager
def checkpointing(model, guidance, enabled: bool):
    """Gradient checkpointing of the UNet's blocks and CLIP's image tower for the block.

    Both are non-reentrant (open_clip's own switch uses ``use_reentrant=False``), so the
    sampler's ``torch.autograd.grad`` works unchanged. The previous state is restored after.
    """
    unet = getattr(model, "unet", model)
    towers = list(_clip_towers(guidance))
    before = (getattr(unet, "checkpointing", False), [v.transformer.grad_checkpointing for v in towers])
    try:
        if hasattr(unet, "checkpointing"):
            unet.checkpointing = enabled
        for visual in towers:
            visual.set_grad_checkpointing(enabled)
        yield
    finally:
        if hasattr(unet, "checkpointing"):
            unet.checkpointing = before[0]
        for visual, was in zip(towers, before[1]):
            visual.set_grad_checkpointing(was)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


# --- reward models (ranking) ------------------------------------------------------------------------


def reward_cost(reward) -> Cost:
    """Scoring is gradient-free, so only a few layers' activations of the image tower live at once
    (the checkpointed factor of CLIP); the reward model's own weights are counted by the caller."""
    return Cost(FIXED_BYTES, int(CLIP_BYTES_PER_ELEMENT["low"] * reward.activation_elements() * 4))


def reward_chunk(reward, samples: int, budget_bytes: int) -> int:
    """Images per reward-model forward that fit ``budget_bytes`` (at least one)."""
    return max(1, min(int(samples), fits(reward_cost(reward), budget_bytes)))
