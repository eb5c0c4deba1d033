"""The library on a GPU (runs where CUDA is present; CI has none, the device machine does)."""

import pytest
import torch

from blended.guidance import ClipGuidance, Guidance, RangeLoss
from blended.sampler import SamplerSettings, sample
from blended_diffusion_pack.nodes.edit import edit_image

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
FAST = SamplerSettings(steps="6", skip_timesteps=1)


@pytest.fixture(scope="module")
def on_gpu(tiny_model, tiny_clip):
    model = tiny_model.to("cuda")
    guidance = Guidance((ClipGuidance(tiny_clip, "a red ball"), RangeLoss())).to("cuda")
    yield model, guidance
    tiny_model.to("cpu")
    tiny_clip.to("cpu")


def scene(size, device):
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, size, size, device=device)
    mask[..., 8:24, 8:24] = 1
    return image, mask


@cuda
@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_gpu_sampling_keeps_background_and_follows_cpu(on_gpu, autocast):
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
    tol = 2e-3 if autocast == "none" else 0.15
    assert (out.cpu() - ref).abs().mean() < tol


@cuda
def test_any_size_edit_on_gpu_returns_comfy_tensors_on_cpu(on_gpu):
    model, guidance = on_gpu
    img = torch.rand(1, 40, 56, 3)
    mask = torch.zeros(1, 40, 56)
    mask[:, 10:30, 20:40] = 1
    out, paste = edit_image(model, img, mask, guidance, FAST, seeds=[0, 1], device="cuda")
    assert out.device.type == "cpu" and out.shape == (2, 40, 56, 3)
    assert torch.equal(out[:, mask[0] == 0], img[0][mask[0] == 0].expand(2, -1, -1))
