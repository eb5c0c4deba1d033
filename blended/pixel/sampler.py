"""The sampling loop: local CLIP-guided diffusion (Algorithm 1) and Blended Diffusion (Algorithm 2).

One UNet forward per step, with grad on x_t, serves both the guidance gradient (through x̂0) and
the step's mean; the reference code runs the UNet twice per step for the same numbers.

Blending uses the source noised to the level of x_{t-1}, the sample it is blended with. (The
reference code noises to level t, one step too noisy; at the last step that leaves noise in the
background, which is why it needed a final paste.) Here the last blend is with the clean source, so
pixels outside the mask come out exactly as given.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch

from .. import memory
from ..errors import InputError
from ..guidance import Guidance, GuidanceContext
from ..paste import paste
from ..seeds import cpu_generator
from .schedule import GaussianSchedule, extract

METHODS = ("ddpm", "ddim")
MODES = ("blended", "local")
AUTOCAST = ("none", "bf16", "fp16")
FP16_LOSS_SCALE = 1024.0

log = logging.getLogger("blended")

StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample, checked once when made: a SamplerSettings that exists is a valid one, and it
    carries the respaced schedule and the step counts the loop, the progress bar and the memory
    planner all need."""

    steps: str = "100"  # respacing of the 1000-step schedule: "100", "ddim50", "25,25,50"
    method: str = "ddpm"
    skip_timesteps: int = 25  # start from the source noised to step (steps - skip)
    mode: str = "blended"
    eta: float = 0.0  # DDIM only: 0 is deterministic
    enforce_background: bool = True  # paste source pixels outside the mask at the end
    clip_denoised: bool = False  # the paper's setting: guidance sees the unclipped x̂0
    autocast: str = "none"  # UNet precision on CUDA
    memory: str = "auto"  # fast: never checkpoint; low: always; auto: only when one sample would not fit

    def __post_init__(self):
        object.__setattr__(self, "steps", str(self.steps).strip())
        if self.method not in METHODS:
            raise InputError(f"method '{self.method}': choose one of {', '.join(METHODS)}.")
        if self.mode not in MODES:
            raise InputError(f"mode '{self.mode}': choose one of {', '.join(MODES)}.")
        if self.autocast not in AUTOCAST:
            raise InputError(f"autocast '{self.autocast}': choose one of {', '.join(AUTOCAST)}.")
        memory.check_choice("memory", self.memory, memory.MEMORY_MODES)
        if not self.eta >= 0:
            raise InputError(f"eta {self.eta} must be >= 0 (0 = deterministic DDIM).")
        num_steps = self.schedule.num_timesteps  # parses ``steps`` (its own message when malformed)
        if not 0 <= self.skip_timesteps < num_steps:
            raise InputError(
                f"skip_timesteps {self.skip_timesteps} must be between 0 and {num_steps - 1} for {num_steps} steps "
                f"('{self.steps}'); the paper skips 25 of 100."
            )

    @functools.cached_property
    def schedule(self) -> GaussianSchedule:
        return GaussianSchedule.linear(1000).respace(self.steps)

    @property
    def num_steps(self) -> int:
        """Steps of the respaced schedule."""
        return self.schedule.num_timesteps

    @property
    def guided_steps(self) -> int:
        """Steps each sample actually runs: the schedule less the skipped ones."""
        return self.num_steps - self.skip_timesteps


def ddpm_step(p: dict, t: torch.Tensor, grad: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Guided ancestral step: the mean moves against the loss gradient, scaled by the variance."""
    mean = p["mean"] - p["variance"] * grad
    nonzero = (t != 0).to(mean.dtype).view(-1, *([1] * (mean.dim() - 1)))
    return mean + nonzero * (0.5 * p["log_variance"]).exp() * noise


def ddim_step(
    sched: GaussianSchedule,
    p: dict,
    x_t: torch.Tensor,
    t: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    eta: float,
) -> torch.Tensor:
    """Guided DDIM step: the gradient shifts eps (score conditioning), then eq. 12 of the DDIM paper."""
    abar = extract(sched.alphas_cumprod, t, x_t)
    abar_prev = extract(sched.alphas_cumprod_prev, t, x_t)
    eps = sched.predict_eps_from_xstart(x_t, t, p["pred_xstart"]) + (1 - abar).sqrt() * grad
    x0 = sched.predict_xstart_from_eps(x_t, t, eps)
    eps = sched.predict_eps_from_xstart(x_t, t, x0)
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    mean = x0 * abar_prev.sqrt() + (1 - abar_prev - sigma**2).sqrt() * eps
    nonzero = (t != 0).to(mean.dtype).view(-1, *([1] * (mean.dim() - 1)))
    return mean + nonzero * sigma * noise


class SeedNoise:
    """Per-sample CPU generators: a sample's result depends on its seed, not on batch or device."""

    def __init__(self, seeds: list[int], shape: tuple, device, dtype):
        self.generators = [cpu_generator(s) for s in seeds]
        self.shape, self.device, self.dtype = shape, device, dtype

    def __call__(self) -> torch.Tensor:
        draws = [torch.randn(self.shape, generator=g) for g in self.generators]
        return torch.stack(draws).to(self.device, self.dtype)


def _broadcast(x: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise InputError(f"{name} has a batch of {x.shape[0]}; give 1 (shared) or one per sample ({batch}).")


def sample(
    model: torch.nn.Module,
    image: torch.Tensor,
    mask: torch.Tensor,
    guidance: Guidance,
    settings: SamplerSettings,
    seeds: list[int],
    callback: StepCallback | None = None,
    budget: int | None = None,
) -> torch.Tensor:
    """Edit ``image`` inside ``mask``: one sample per seed, images in [-1, 1] at the input's size.

    The samples run in chunks that fit ``budget`` bytes (default: the device's free memory,
    capped by ``BLENDED_MEMORY_BUDGET_MB``). Every sample draws its noise and augmentations from
    its own seed, so its result does not depend on the chunking. ``callback(step, steps, x̂0)``
    counts the steps of all chunks together.
    """
    source, mask = _checked_batch(image, mask, seeds)
    plan = _memory_plan(model, guidance, settings, source, budget)
    # A queue of (first sample, samples, checkpointing): a chunk that runs out of memory is split.
    batch = len(seeds)
    queue = [(start, min(plan.chunk, batch - start), plan.checkpointing) for start in range(0, batch, plan.chunk)]
    out = torch.empty_like(source)
    done_chunks = 0
    while queue:
        start, count, checkpointed = queue.pop(0)
        part = slice(start, start + count)
        progress = _chunk_callback(callback, settings.guided_steps, done_chunks, len(queue))
        failed = _try_chunk(model, source, mask, guidance, settings, seeds, out, part, checkpointed, progress)
        if failed is None:
            done_chunks += 1
        else:
            queue[:0] = _retry_smaller(model, guidance, settings, source, (start, count, checkpointed), failed)
    return out


def _checked_batch(image: torch.Tensor, mask: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, mask), one per seed: the shapes checked before any memory is spent on them, and an
    empty mask refused (it would sample for nothing and return the input)."""
    if not seeds:
        raise InputError("no seeds given: ask for at least one sample.")
    if image.dim() != 4 or image.shape[1] != 3:
        raise InputError(f"image must be [B,3,H,W] in [-1,1], got {tuple(image.shape)}.")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:]:
        raise InputError(
            f"mask must be [B,1,H,W] matching the image {tuple(image.shape[-2:])}, got {tuple(mask.shape)}."
        )
    batch = len(seeds)
    source = _broadcast(image, batch, "image").float()
    mask = _broadcast(mask.to(source), batch, "mask")
    if not (mask > 0).any():
        raise InputError("mask is empty: paint the area to edit (white = edit).")
    return source, mask


def _memory_plan(model, guidance: Guidance, settings: SamplerSettings, source: torch.Tensor,
                 budget: int | None) -> memory.Plan:
    """Samples per chunk and whether to checkpoint, for ``budget`` bytes (default: what is free)."""
    device = source.device
    batch, (height, width) = source.shape[0], source.shape[-2:]
    available = memory.budget(device) if budget is None else int(budget)
    plan = memory.plan(batch, model, guidance, height, width, available, settings.memory, settings.autocast)
    if device.type != "cuda" and memory.fits(plan.cost, available) < 1:
        # No recoverable out-of-memory error here (the CPU's is the OS killing the process): fall
        # back to checkpointing before starting, or stop with the figures.
        plan = memory.plan(batch, model, guidance, height, width, available, "low", settings.autocast)
        if memory.fits(plan.cost, available) < 1:
            raise memory.too_little_memory(plan.cost, available, device)
        log.warning("one sample does not fit in %.1f GiB without checkpointing; checkpointing", available / 2**30)
    return plan


def _chunk_callback(callback: StepCallback | None, steps: int, done: int, left: int) -> StepCallback:
    """The caller's ``callback`` counting the steps of all chunks: ``done`` chunks ran before this
    one and ``left`` wait after it, so the bar neither restarts per chunk nor overshoots."""

    def chunk_callback(n: int, _steps: int, x0: torch.Tensor) -> None:
        if callback is not None:
            callback(done * steps + n, (done + 1 + left) * steps, x0)

    return chunk_callback


def _try_chunk(model, source, mask, guidance, settings, seeds, out, part: slice, checkpointed: bool,
               callback: StepCallback) -> str | None:
    """Sample ``part`` of the batch into ``out``; None, or the first line of the out-of-memory error.
    The error is not kept: once this returns, the failed chunk's tensors (held by its traceback) are free."""
    try:
        with memory.checkpointing(model, guidance, checkpointed):
            out[part] = _sample_chunk(
                model, source[part], mask[part], guidance, settings, settings.schedule, seeds[part], callback
            )
    except torch.OutOfMemoryError as exc:
        return str(exc).splitlines()[0][:200]
    return None


def _retry_smaller(model, guidance: Guidance, settings: SamplerSettings, source: torch.Tensor,
                   chunk: tuple[int, int, bool], failed: str) -> list[tuple[int, int, bool]]:
    """What to queue in place of a chunk that ran out of memory: its two halves, or one sample with
    gradient checkpointing; a checkpointed single sample that does not fit stops with the figures."""
    start, count, checkpointed = chunk
    device = source.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if count > 1:
        half = (count + 1) // 2
        log.warning("out of memory with %d samples per chunk; retrying as %d + %d", count, half, count - half)
        return [(start, half, checkpointed), (start + half, count - half, checkpointed)]
    if not checkpointed:
        log.warning("out of memory with one sample; retrying it with gradient checkpointing")
        return [(start, 1, True)]
    height, width = source.shape[-2:]
    low = memory.estimate(model, guidance, height, width, settings.autocast, checkpointing=True)
    free = memory.free_bytes(device)
    raise memory.too_little_memory(low, free, device, f" ({failed})")


def _sample_chunk(
    model: torch.nn.Module,
    source: torch.Tensor,
    mask: torch.Tensor,
    guidance: Guidance,
    settings: SamplerSettings,
    sched: GaussianSchedule,
    seeds: list[int],
    callback: StepCallback,
) -> torch.Tensor:
    """The sampling loop for one chunk of samples, which all fit in memory together."""
    batch, device = len(seeds), source.device
    noise = SeedNoise(seeds, tuple(source.shape[1:]), device, source.dtype)
    aug_generators = [cpu_generator(int(s) + 0x5EED) for s in seeds]
    ctx = GuidanceContext(mask=mask, source=source, generators=aug_generators)

    indices = list(range(settings.guided_steps))[::-1]
    t0 = torch.full((batch,), indices[0], device=device, dtype=torch.long)
    x = sched.q_sample(source, t0, noise())
    for n, i in enumerate(indices):
        t = torch.full((batch,), i, device=device, dtype=torch.long)
        ctx.step = i
        p, grad = guided_step(model, guidance, sched, x, t, ctx, settings)
        if settings.method == "ddpm":
            x = ddpm_step(p, t, grad, noise())
        else:
            x = ddim_step(sched, p, x, t, grad, noise(), settings.eta)
        if settings.mode == "blended":
            background = sched.q_sample(source, t - 1, noise()) if i > 0 else source
            x = paste(x, background, mask)
        callback(n, len(indices), p["pred_xstart"])
    if settings.enforce_background:
        x = paste(x, source, mask)
    return x.detach()


def guided_step(
    model: torch.nn.Module,
    guidance: Guidance,
    sched: GaussianSchedule,
    x: torch.Tensor,
    t: torch.Tensor,
    ctx: GuidanceContext,
    settings: SamplerSettings,
) -> tuple[dict, torch.Tensor]:
    """One UNet forward with grad on x_t: the step's p(x_{t-1}|x_t) (detached) and the guidance
    gradient d(loss)/d(x_t), zero without guidance terms."""
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.autocast)
    guided = bool(guidance.terms)
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(guided)
        precision = torch.autocast(x.device.type, dtype=autocast) if autocast else contextlib.nullcontext()
        with precision:
            out = model(x_in, sched.model_timesteps(t))
        p = sched.p_mean_variance(out.float(), x_in, t, settings.clip_denoised)
        if guided:
            loss = guidance.loss(p["pred_xstart"], ctx)
            scale = _loss_scale(loss) if autocast == torch.float16 else 1.0
            grad = torch.autograd.grad(loss.sum() * scale, x_in)[0] / scale
        else:
            grad = torch.zeros_like(x)
    return {k: v.detach() for k, v in p.items()}, grad


def _loss_scale(loss: torch.Tensor) -> float:
    """fp16 tops out at 65504: a loss weighted by a large lambda (up to 1e6) can overflow the UNet's
    backward in half precision. Gradients are linear in the loss, so large losses are scaled down
    to about ``FP16_LOSS_SCALE`` for the backward and the gradient scaled back up in fp32."""
    peak = float(loss.detach().abs().max())
    return min(1.0, FP16_LOSS_SCALE / peak) if math.isfinite(peak) and peak > 0 else 1.0
