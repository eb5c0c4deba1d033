"""Memory planning: chunked sampling equals one batch, checkpointing equals plain autograd, an
out-of-memory error splits a chunk, half precision keeps guidance gradients finite."""

import logging
import math

import pytest
import torch

from blended import memory
from blended.augment import ExtendingAugmentation
from blended.errors import InputError
from blended.guidance import ClipGuidance, Guidance, GuidanceContext, RangeLoss
from blended.pixel.sampler import SamplerSettings, guided_step, sample
from blended.pixel.schedule import GaussianSchedule

# 5 steps from a lightly noised source: the tiny random UNet stays in range there, so batch-size
# dependent float rounding (oneDNN picks kernels by batch) is not amplified beyond 1e-5.
FAST = SamplerSettings(steps="50", skip_timesteps=45)
MAX_LAMBDA = 1e6  # the Blended CLIP Guidance node's maximum clip_lambda and range_lambda


@pytest.fixture(scope="module")
def scene(tiny_model):
    size = tiny_model.image_size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., 6:26, 4:28] = 1
    return image, mask


@pytest.fixture(scope="module")
def guidance(tiny_clip):
    return Guidance((ClipGuidance(tiny_clip, "a red ball", augmentation=ExtendingAugmentation(3)), RangeLoss()))


class BatchSizes:
    """Records the batch of every UNet call."""

    def __init__(self, model):
        self.sizes = []
        self.handle = model.register_forward_pre_hook(lambda m, args: self.sizes.append(args[0].shape[0]))

    def __enter__(self):
        return self.sizes

    def __exit__(self, *exc):
        self.handle.remove()


def budget_mb_for(chunk, model, guidance, size, checkpointing=False):
    """A budget (MiB) in which exactly ``chunk`` samples fit, by the planner's own estimate."""
    cost = memory.estimate(model, guidance, size, size, checkpointing=checkpointing)
    return (cost.fixed + (chunk + 0.5) * cost.per_sample) / memory.HEADROOM / 2**20


# --- chunking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_forced_budget_chunks_give_the_one_batch_images(tiny_model, guidance, scene, monkeypatch, chunk):
    image, mask = scene
    seeds = [11, 12, 13, 14, 15]
    one_batch = sample(tiny_model, image, mask, guidance, FAST, seeds, budget=1 << 40)
    monkeypatch.setenv(memory.BUDGET_ENV, f"{budget_mb_for(chunk, tiny_model, guidance, image.shape[-1]):.6f}")
    with BatchSizes(tiny_model) as sizes:
        chunked = sample(tiny_model, image, mask, guidance, FAST, seeds)
    expected = [min(chunk, len(seeds) - s) for s in range(0, len(seeds), chunk)]
    assert sizes == [c for c in expected for _ in range(5)]  # 5 steps per chunk
    torch.testing.assert_close(chunked, one_batch, atol=1e-5, rtol=1e-5)
    outside = (mask == 0).expand_as(chunked)
    assert torch.equal(chunked[outside], image.expand_as(chunked)[outside])


def test_progress_and_cancel_span_all_chunks(tiny_model, guidance, scene):
    image, mask = scene
    budget = int(budget_mb_for(2, tiny_model, guidance, image.shape[-1]) * 2**20)
    seen = []
    sample(tiny_model, image, mask, guidance, FAST, [1, 2, 3], callback=lambda i, n, x0: seen.append((i, n, len(x0))),
           budget=budget)
    assert [(i, n) for i, n, _ in seen] == [(i, 10) for i in range(10)]  # chunks of 2 + 1, 5 steps each
    assert [b for _, _, b in seen] == [2] * 5 + [1] * 5

    class Stop(Exception):
        pass

    def stop(i, n, x0):
        if i == 7:  # inside the second chunk
            raise Stop

    with pytest.raises(Stop):
        sample(tiny_model, image, mask, guidance, FAST, [1, 2, 3], callback=stop, budget=budget)


def test_env_budget_is_checked(tiny_model, guidance, scene, monkeypatch):
    image, mask = scene
    for bad in ("lots", "-5", "0", "inf"):
        monkeypatch.setenv(memory.BUDGET_ENV, bad)
        with pytest.raises(InputError, match=memory.BUDGET_ENV):
            sample(tiny_model, image, mask, guidance, FAST, [0])


def test_cpu_refuses_up_front_when_one_checkpointed_sample_does_not_fit(tiny_model, guidance, scene):
    image, mask = scene
    low = memory.estimate(tiny_model, guidance, 32, 32, checkpointing=True)
    with pytest.raises(memory.OutOfMemory, match=r"needs about .* GiB .* GiB is free"):
        sample(tiny_model, image, mask, guidance, FAST, [0], budget=low.fixed)


def test_cpu_checkpoints_memory_fast_rather_than_be_killed(tiny_model, guidance, scene, caplog):
    image, mask = scene
    low = memory.estimate(tiny_model, guidance, 32, 32, checkpointing=True)
    budget = int((low.fixed + 1.5 * low.per_sample) / memory.HEADROOM)  # one checkpointed sample, not one full
    seen = []
    hook = tiny_model.register_forward_pre_hook(lambda m, a: seen.append(tiny_model.unet.checkpointing))
    try:
        with caplog.at_level(logging.WARNING, logger="blended"):
            sample(tiny_model, image, mask, guidance, SamplerSettings("50", skip_timesteps=45, memory="fast"), [0, 1],
                   budget=budget)
    finally:
        hook.remove()
    assert seen and all(seen) and "checkpointing" in caplog.text


# --- the planner --------------------------------------------------------------------------------------


def test_plan_checkpoints_only_when_one_sample_would_not_fit(tiny_model, guidance):
    full = memory.estimate(tiny_model, guidance, 32, 32)
    low = memory.estimate(tiny_model, guidance, 32, 32, checkpointing=True)
    assert low.per_sample < 0.5 * full.per_sample
    roomy = int((full.fixed + 4.5 * full.per_sample) / memory.HEADROOM)
    tight = int((low.fixed + 3.5 * low.per_sample) / memory.HEADROOM)  # < one full sample
    assert tight < full.chunk(1) / memory.HEADROOM
    auto = memory.plan(8, tiny_model, guidance, 32, 32, roomy)
    assert (auto.chunk, auto.checkpointing) == (4, False)
    squeezed = memory.plan(8, tiny_model, guidance, 32, 32, tight)
    assert (squeezed.chunk, squeezed.checkpointing) == (3, True)
    assert memory.plan(8, tiny_model, guidance, 32, 32, roomy, memory="low").checkpointing
    assert memory.plan(8, tiny_model, guidance, 32, 32, roomy, memory="low").chunk > 4
    fast = memory.plan(8, tiny_model, guidance, 32, 32, tight, memory="fast")
    assert (fast.chunk, fast.checkpointing) == (1, False)
    assert memory.plan(2, tiny_model, guidance, 32, 32, 1 << 40).chunk == 2
    with pytest.raises(InputError, match="memory 'huge': choose one of auto, fast, low"):
        memory.plan(2, tiny_model, guidance, 32, 32, 1 << 40, memory="huge")


def test_estimate_grows_with_resolution_views_and_precision(tiny_model, tiny_clip):
    def guided(count):
        return Guidance((ClipGuidance(tiny_clip, "a ball", augmentation=ExtendingAugmentation(count)),))

    base = memory.estimate(tiny_model, guided(2), 32, 32).per_sample
    assert memory.estimate(tiny_model, guided(2), 64, 64).per_sample > 3.5 * base - 1
    assert memory.estimate(tiny_model, guided(16), 32, 32).per_sample > base
    half = memory.estimate(tiny_model, guided(2), 32, 32, autocast="bf16")
    assert half.per_sample < base and half.fixed > memory.FIXED_BYTES  # the half copy of the weights


def test_unet_elements_match_the_feature_maps_of_a_forward(tiny_model):
    """The structural count is the number of block inputs and outputs a forward really produces."""
    unet = tiny_model.unet
    counted = []
    hooks = [
        m.register_forward_hook(lambda m, a, out: counted.append(a[0].numel() + out.numel()))
        for m in (*unet.input_blocks, unet.middle_block, *unet.output_blocks)
    ]
    try:
        with torch.no_grad():
            tiny_model(torch.zeros(1, 3, 32, 48), torch.zeros(1))
    finally:
        for h in hooks:
            h.remove()
    structural = memory.unet_elements(tiny_model.config, 32, 48)
    assert 0.8 < structural / sum(counted) < 2.0


def test_precision_choices(monkeypatch):
    for choice in memory.PRECISIONS:
        assert memory.autocast_for(choice, "cpu") == "none"  # the CPU stays fp32
    with pytest.raises(InputError, match="precision 'fp64': choose one of auto, bf16, fp16, fp32"):
        memory.autocast_for("fp64", "cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert memory.autocast_for("auto", "cuda") == "fp16"
    assert memory.autocast_for("fp32", "cuda") == "none"
    with pytest.raises(InputError, match="no bfloat16"):
        memory.autocast_for("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert memory.autocast_for("auto", "cuda") == "bf16"


# --- gradient checkpointing ---------------------------------------------------------------------------


def guidance_gradient(model, guidance, image, mask, autocast=None):
    sched = GaussianSchedule.linear(1000).respace("50")
    t = torch.tensor([40, 10])
    x = (image.expand(2, -1, -1, -1) + 0.3 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    x = x.detach().requires_grad_(True)
    ctx = GuidanceContext(mask.expand(2, -1, -1, -1), image.expand(2, -1, -1, -1),
                          generators=[torch.Generator().manual_seed(s) for s in (3, 4)])
    precision = torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False)
    with precision:
        out = model(x, sched.model_timesteps(t))
    p = sched.p_mean_variance(out.float(), x, t)
    return torch.autograd.grad(guidance.loss(p["pred_xstart"], ctx).sum(), x)[0]


def test_checkpointed_gradients_equal_plain(tiny_model, guidance, scene):
    image, mask = scene
    plain = guidance_gradient(tiny_model, guidance, image, mask)
    saved = []
    with memory.checkpointing(tiny_model, guidance, True):
        assert tiny_model.unet.checkpointing
        assert guidance.clip.clip.model.visual.transformer.grad_checkpointing
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            checkpointed = guidance_gradient(tiny_model, guidance, image, mask)
    assert not tiny_model.unet.checkpointing and not guidance.clip.clip.model.visual.transformer.grad_checkpointing
    torch.testing.assert_close(checkpointed, plain, atol=1e-5, rtol=1e-5)
    assert plain.abs().max() > 0
    # and it really kept less: the tensors saved for backward outside the recomputed blocks
    saved_plain = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_plain.append(t.numel()) or t, lambda t: t):
        guidance_gradient(tiny_model, guidance, image, mask)
    assert sum(saved) < 0.5 * sum(saved_plain)


def test_checkpointed_sampling_equals_plain(tiny_model, guidance, scene):
    image, mask = scene
    plain = sample(tiny_model, image, mask, guidance, FAST, [4, 5], budget=1 << 40)
    low = sample(tiny_model, image, mask, guidance, SamplerSettings("50", skip_timesteps=45, memory="low"), [4, 5],
                 budget=1 << 40)
    torch.testing.assert_close(low, plain, atol=1e-5, rtol=1e-5)


# --- out of memory ------------------------------------------------------------------------------------


class OomAbove(torch.nn.Module):
    """The tiny model, but a batch above ``k`` samples (or any batch without checkpointing when
    ``needs_checkpointing``) raises CUDA's out-of-memory error, as a small GPU would."""

    def __init__(self, model, k, needs_checkpointing=False):
        super().__init__()
        self.model, self.k, self.needs_checkpointing = model, k, needs_checkpointing
        self.config, self.image_size = model.config, model.image_size
        self.calls = []

    @property
    def unet(self):
        return self.model.unet

    def forward(self, x, t):
        self.calls.append((x.shape[0], self.model.unet.checkpointing))
        if x.shape[0] > self.k or (self.needs_checkpointing and not self.model.unet.checkpointing):
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch {x.shape[0]})")
        return self.model(x, t)


def test_out_of_memory_halves_the_chunk_and_loses_no_sample(tiny_model, guidance, scene, caplog):
    image, mask = scene
    seeds = [21, 22, 23, 24, 25, 26, 27]
    reference = sample(tiny_model, image, mask, guidance, FAST, seeds, budget=1 << 40)
    flaky = OomAbove(tiny_model, k=2)
    with caplog.at_level(logging.WARNING, logger="blended"):
        out = sample(flaky, image, mask, guidance, FAST, seeds, budget=1 << 40)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)  # every sample, in order, once
    assert "retrying as 4 + 3" in caplog.text and "retrying as 2 + 2" in caplog.text
    completed = [b for b, _ in flaky.calls if b <= 2]
    assert sum(completed) == len(seeds) * 5  # each sample ran its 5 steps exactly once


def test_out_of_memory_falls_back_to_one_checkpointed_sample(tiny_model, guidance, scene, caplog):
    image, mask = scene
    reference = sample(tiny_model, image, mask, guidance, FAST, [1, 2], budget=1 << 40)
    flaky = OomAbove(tiny_model, k=1, needs_checkpointing=True)
    with caplog.at_level(logging.WARNING, logger="blended"):
        out = sample(flaky, image, mask, guidance, SamplerSettings("50", skip_timesteps=45, memory="fast"), [1, 2],
                     budget=1 << 40)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    assert "with gradient checkpointing" in caplog.text
    assert not tiny_model.unet.checkpointing  # switched back off after the run


def test_out_of_memory_with_one_checkpointed_sample_says_what_to_change(tiny_model, guidance, scene):
    image, mask = scene
    hopeless = OomAbove(tiny_model, k=0)
    with pytest.raises(memory.OutOfMemory) as info:
        sample(hopeless, image, mask, guidance, FAST, [1, 2, 3], budget=1 << 40)
    message = str(info.value)
    assert "needs about" in message and "is free" in message and "Tried to allocate 2.00 GiB" in message
    assert "fewer augmentations" in message
    sizes = [b for b, _ in hopeless.calls]
    assert sizes == [3, 2, 1, 1]  # 3 -> 2 + 1 -> 1 + 1 -> the first one, checkpointed: give up


# --- half precision -----------------------------------------------------------------------------------


def sampler_gradient(model, guidance, image, mask, autocast):
    """The guidance gradient exactly as the sampler computes it for a step (loss scaling included)."""
    sched = GaussianSchedule.linear(1000).respace("50")
    t = torch.tensor([40, 10])
    x = image.expand(2, -1, -1, -1) + 0.3 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ctx = GuidanceContext(mask.expand(2, -1, -1, -1), image.expand(2, -1, -1, -1),
                          generators=[torch.Generator().manual_seed(s) for s in (3, 4)])
    return guided_step(model, guidance, sched, x, t, ctx, SamplerSettings("50", autocast=autocast))[1]


@pytest.fixture(scope="module")
def strongest(tiny_clip):
    """The guidance node's maxima: clip_lambda 1e6 and range_lambda 1e6."""
    return Guidance((ClipGuidance(tiny_clip, "a red ball", weight=MAX_LAMBDA, augmentation=ExtendingAugmentation(4)),
                     RangeLoss(MAX_LAMBDA)))


@pytest.mark.parametrize("autocast", ["fp16", "bf16"])
def test_half_precision_guidance_gradients_stay_finite_at_max_lambda(tiny_model, strongest, scene, autocast):
    image, mask = scene
    grad = sampler_gradient(tiny_model, strongest, image, mask, autocast)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    reference = sampler_gradient(tiny_model, strongest, image, mask, "none")
    cos = torch.nn.functional.cosine_similarity(grad.flatten(1), reference.flatten(1))
    assert (cos > 0.9).all(), cos  # the same direction as fp32's, within half precision
    # A whole edit at clip_lambda's maximum (with both maxima the sampling itself diverges, fp32 too).
    clip_max = Guidance((strongest.terms[0], RangeLoss()))
    settings = SamplerSettings("50", skip_timesteps=45, autocast=autocast)
    out = sample(tiny_model, image, mask, clip_max, settings, [0, 1], budget=1 << 40)
    ref = sample(tiny_model, image, mask, clip_max, SamplerSettings("50", skip_timesteps=45), [0, 1], budget=1 << 40)
    assert torch.isfinite(out).all() and (out - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_fp16_without_loss_scaling_overflows_at_max_lambda(tiny_model, strongest, scene, monkeypatch):
    """Why the sampler scales the loss: the same step in fp16 without it is not finite."""
    import blended.pixel.sampler

    image, mask = scene
    monkeypatch.setattr(blended.pixel.sampler, "FP16_LOSS_SCALE", math.inf)  # scaling off
    assert not torch.isfinite(sampler_gradient(tiny_model, strongest, image, mask, "fp16")).all()
