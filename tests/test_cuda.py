"""The library on a GPU (runs where CUDA is present; CI has none, the device machine does)."""

import pytest
import torch

from blended.guidance import ClipGuidance, Guidance, RangeLoss
from blended.pixel.sampler import SamplerSettings, sample
from tests.support.comfy_layout import edit_image

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
FAST = SamplerSettings(steps="6", skip_timesteps=1)


def tame_tiny_model():
    """The tiny random UNet with its output layer scaled down. At full scale its random learned
    variance drives samples to about 1e6 inside the mask, where float rounding differences between
    CPU and GPU grow to whole units and fp16 overflows; scaled, a 1e-4 change of the input moves
    the CPU result by about 2e-4, so a CPU/GPU comparison measures the arithmetic."""
    from blended.pixel.diffusion_model import DiffusionModel
    from blended.pixel.unet import UNetModel
    from tests.support.tiny_unet import tiny_unet_config, tiny_unet_state_dict

    unet = UNetModel(tiny_unet_config())
    unet.load_state_dict(tiny_unet_state_dict(seed=0), strict=True)
    with torch.no_grad():
        unet.out[-1].weight.mul_(0.1)
        unet.out[-1].bias.mul_(0.1)
    return DiffusionModel(unet)


@pytest.fixture(scope="module")
def on_gpu(tiny_clip):
    model = tame_tiny_model().to("cuda")
    guidance = Guidance((ClipGuidance(tiny_clip, "a red ball"), RangeLoss())).to("cuda")
    yield model, guidance
    tiny_clip.to("cpu")


def scene(size, device):
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, size, size, device=device)
    mask[..., 8:24, 8:24] = 1
    return image, mask


@cuda
@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_gpu_sampling_keeps_background_and_follows_cpu(on_gpu, autocast, tf32_off):
    model, guidance = on_gpu
    image, mask = scene(model.image_size, "cuda")
    settings = SamplerSettings(steps="6", skip_timesteps=1, autocast=autocast)
    out = sample(model, image, mask, guidance, settings, seeds=[0, 1])
    assert out.device.type == "cuda" and out.dtype == torch.float32
    keep = (mask == 0).expand_as(out)
    assert torch.equal(out[keep], image.expand_as(out)[keep])
    assert torch.isfinite(out).all()
    # noise comes from per-seed CPU generators, so GPU and CPU runs differ only by arithmetic
    cpu_model, cpu_guidance = model.to("cpu"), guidance.to("cpu")
    try:
        ref = sample(cpu_model, image.cpu(), mask.cpu(), cpu_guidance, FAST, seeds=[0, 1])
    finally:
        model.to("cuda"), guidance.to("cuda")
    inside = mask.cpu().bool().expand_as(ref)
    relative = ((out.cpu() - ref)[inside].abs().mean() / ref[inside].abs().mean()).item()
    print(f"{autocast}: mean |GPU - CPU| / mean |CPU| inside the mask = {relative:.2e}")
    assert relative < (1e-3 if autocast == "none" else 0.1)


@cuda
def test_any_size_edit_on_gpu_returns_comfy_tensors_on_cpu(on_gpu):
    model, guidance = on_gpu
    img = torch.rand(1, 40, 56, 3)
    mask = torch.zeros(1, 40, 56)
    mask[:, 10:30, 20:40] = 1
    out, paste = edit_image(model, img, mask, guidance, FAST, seeds=[0, 1], device="cuda")
    assert out.device.type == "cpu" and out.shape == (2, 40, 56, 3)
    assert torch.equal(out[:, mask[0] == 0], img[0][mask[0] == 0].expand(2, -1, -1))


# --- memory planning on a real GPU ---------------------------------------------------------------------


@pytest.fixture
def tf32_off():
    """Batch-size dependent kernel choices stay within float32 rounding only without TF32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture
def memory_cap():
    """Caps this process's CUDA allocations at ``allowed`` bytes above what is allocated now."""
    total = torch.cuda.get_device_properties(0).total_memory

    def cap(allowed: int) -> None:
        torch.cuda.empty_cache()
        limit = torch.cuda.memory_allocated() + allowed
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total))

    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


@cuda
def test_capped_gpu_runs_the_batch_in_chunks_with_the_one_batch_images(on_gpu, memory_cap, tf32_off):
    from blended import memory

    model, guidance = on_gpu
    image, mask = scene(model.image_size, "cuda")
    settings = SamplerSettings(steps="50", skip_timesteps=45)
    seeds = list(range(6))
    one_batch = sample(model, image, mask, guidance, settings, seeds)
    cost = memory.estimate(model, guidance, model.image_size, model.image_size)
    memory_cap(int((cost.fixed + 2.5 * cost.per_sample) / memory.HEADROOM))
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        chunked = sample(model, image, mask, guidance, settings, seeds)
    finally:
        hook.remove()
    assert sorted(set(sizes)) == [2], sizes  # the cap, read through the allocator, forced chunks of 2
    torch.testing.assert_close(chunked, one_batch, atol=1e-4, rtol=1e-4)


@cuda
def test_free_memory_reads_a_device_named_without_index(memory_cap):
    from blended import memory

    memory_cap(2 * 2**30)
    assert memory.free_bytes("cuda") == memory.free_bytes(torch.device("cuda", torch.cuda.current_device()))
    assert 0 < memory.free_bytes("cuda") <= 2 * 2**30 + 2**20


def real_size(device="cuda"):
    """ADM-256 (552M parameters) and ViT-B/16 at their real sizes, random weights."""
    from blended.augment import ExtendingAugmentation
    from tests.support.sized_models import full_size_clip, make_model

    model = make_model("adm256", device)
    guidance = Guidance((ClipGuidance(full_size_clip(device), "a red ball", augmentation=ExtendingAugmentation(8)),
                         RangeLoss()))
    return model, guidance


@cuda
def test_real_size_batch_8_fits_a_12_gib_cap(memory_cap):
    model, guidance = real_size()
    image, mask = scene(256, "cuda")
    mask[..., 64:192, 64:192] = 1
    memory_cap(12 * 2**30 - torch.cuda.memory_allocated())  # a 12 GiB card, weights included
    torch.cuda.reset_peak_memory_stats()
    settings = SamplerSettings(steps="100", skip_timesteps=97, autocast="bf16")  # 3 guided steps
    out = sample(model, image, mask, guidance, settings, list(range(8)))
    assert out.shape[0] == 8 and torch.isfinite(out).all()
    assert torch.cuda.max_memory_allocated() <= 12 * 2**30


@cuda
def test_real_out_of_memory_halves_chunks_and_returns_every_sample(memory_cap, monkeypatch, caplog):
    """The planner is told one sample costs nothing, so it plans all 8 at once in fp32; the real
    CUDA out-of-memory errors must split the chunk until it fits, losing nothing."""
    import logging

    from blended import memory
    from blended.pixel import sampler

    model, guidance = real_size()
    image, mask = scene(256, "cuda")
    mask[..., 64:192, 64:192] = 1
    memory_cap(12 * 2**30)
    monkeypatch.setattr(sampler.memory, "estimate", lambda *a, **k: memory.Cost(fixed=0, per_sample=1))
    settings = SamplerSettings(steps="100", skip_timesteps=98)  # 2 guided steps
    with caplog.at_level(logging.WARNING, logger="blended"):
        out = sample(model, image, mask, guidance, settings, list(range(8)))
    assert "out of memory with 8 samples per chunk" in caplog.text
    assert out.shape[0] == 8 and torch.isfinite(out).all()
    alone = sample(model, image, mask, guidance, settings, [5])
    torch.testing.assert_close(out[5:6], alone, atol=2e-3, rtol=2e-3)
