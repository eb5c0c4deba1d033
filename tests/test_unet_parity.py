"""Our ADM UNet against OpenAI's guided_diffusion reference: same keys, same numbers.

The released checkpoints cannot be downloaded here, so their layouts are checked by building
OpenAI's models with the published flags on the meta device (no memory, no time) and comparing
key names and shapes with what we build from ``config_from_state_dict``.
"""

import dataclasses

import pytest
import torch
from guided_diffusion.script_util import create_model
from guided_diffusion.unet import UNetModel as OpenAIUNet

from blended.errors import InputError
from blended.pixel.checkpoint import config_from_state_dict
from blended.pixel.diffusion_model import DiffusionModel
from blended.pixel.unet import UNetConfig, UNetModel
from tests.support.tiny_unet import tiny_unet_config, tiny_unet_state_dict

# Branches the tiny models do not take: conv resampling, plain (non scale-shift) conditioning,
# num_heads instead of head width, both qkv orders, no learned sigma, attention at full resolution.
PLAIN = UNetConfig(
    image_size=16, model_channels=32, out_channels=3, num_res_blocks=2, attention_ds=(1, 2),
    channel_mult=(1, 2), num_head_channels=-1, num_heads=2, use_scale_shift_norm=False,
    resblock_updown=False,
)
NEW_ORDER = dataclasses.replace(PLAIN, num_head_channels=32, use_new_attention_order=True, num_classes=7)
CONFIGS = {
    "tiny": tiny_unet_config(),
    "tiny_class_cond": tiny_unet_config(class_cond=True),
    "plain_legacy_attention": PLAIN,
    "new_attention_order": NEW_ORDER,
}


def openai_model(cfg: UNetConfig) -> OpenAIUNet:
    return OpenAIUNet(
        image_size=cfg.image_size, in_channels=cfg.in_channels, model_channels=cfg.model_channels,
        out_channels=cfg.out_channels, num_res_blocks=cfg.num_res_blocks,
        attention_resolutions=cfg.attention_ds, dropout=0.0, channel_mult=cfg.channel_mult,
        num_classes=cfg.num_classes, num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
        use_scale_shift_norm=cfg.use_scale_shift_norm, resblock_updown=cfg.resblock_updown,
        use_new_attention_order=cfg.use_new_attention_order,
    ).eval()


def random_state_dict(model: torch.nn.Module, seed: int) -> dict:
    """Every tensor random, including OpenAI's zero-initialised output convs."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * (v[0].numel() ** -0.5 if v.ndim > 1 else 0.1)
            for k, v in model.state_dict().items()}


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    cfg = CONFIGS[request.param]
    ours = UNetModel(cfg).eval()
    theirs = openai_model(cfg)
    sd = tiny_unet_state_dict(0, cfg.num_classes is not None) if request.param.startswith("tiny") \
        else random_state_dict(ours, seed=3)
    ours.load_state_dict(sd, strict=True)
    theirs.load_state_dict(sd, strict=True)
    return cfg, ours, theirs


def test_identical_key_layout(pair):
    cfg, ours, theirs = pair
    assert shapes(ours.state_dict()) == shapes(theirs.state_dict())


def test_outputs_match_openai(pair):
    cfg, ours, theirs = pair
    torch.manual_seed(1)
    x = torch.randn(3, 3, cfg.image_size, cfg.image_size)
    y = torch.tensor([0, 5, cfg.num_classes - 1]) if cfg.num_classes else None
    for t in ([0.0, 1.0, 2.0], [10.0, 499.5, 999.0]):
        t = torch.tensor(t)
        with torch.no_grad():
            a, b = ours(x, t, y), theirs(x, t, y)
        assert a.shape == (3, cfg.out_channels, cfg.image_size, cfg.image_size)
        assert b.abs().mean() > 0.05  # the comparison is not between two near-zero outputs
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_input_gradients_match_openai(pair):
    """Guidance differentiates through the UNet w.r.t. its input: that gradient must agree too."""
    cfg, ours, theirs = pair
    torch.manual_seed(2)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    t = torch.tensor([50.0, 700.0])
    y = torch.tensor([1, 2]) if cfg.num_classes else None
    grads = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        (model(xi, t, y)[:, :3] ** 2).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_config_recovered_from_weights(pair):
    cfg, ours, _ = pair
    inferred = config_from_state_dict(ours.state_dict())
    # Head settings leave no trace in the weights; everything else must come back exactly.
    heads = dict(num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
                 use_new_attention_order=cfg.use_new_attention_order)
    assert dataclasses.replace(inferred, **heads) == cfg
    if cfg.num_head_channels == 64 and not cfg.use_new_attention_order:
        assert inferred == cfg


def test_attention_order_matters():
    """The two qkv orders give different results on the same weights, so mixing them up in a
    config (or ignoring the flag) would be caught by the parity test above."""
    legacy = UNetModel(dataclasses.replace(NEW_ORDER, use_new_attention_order=False)).eval()
    new = UNetModel(NEW_ORDER).eval()
    sd = random_state_dict(new, seed=4)
    legacy.load_state_dict(sd)
    new.load_state_dict(sd)
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([300.0])
    with torch.no_grad():
        assert (legacy(x, t) - new(x, t)).abs().max() > 1e-3


def test_zero_class_vector_for_class_model_without_label():
    """y=None on a class-conditional model equals OpenAI's model with the class embedding zeroed."""
    cfg = tiny_unet_config(class_cond=True)
    sd = tiny_unet_state_dict(0, class_cond=True)
    ours = DiffusionModel(UNetModel(cfg))
    ours.unet.load_state_dict(sd)
    theirs = openai_model(cfg)
    theirs.load_state_dict({**sd, "label_emb.weight": torch.zeros_like(sd["label_emb.weight"])})
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5.0, 600.0])
    with torch.no_grad():
        unconditional = ours(x, t)
        torch.testing.assert_close(unconditional, theirs(x, t, torch.tensor([17, 400])), rtol=0, atol=1e-5)
        assert (ours(x, t, torch.tensor([17, 400])) - unconditional).abs().max() > 1e-3


# --- the released checkpoints' layouts -------------------------------------------------------------

# Flags from the guided-diffusion README for each released model.
RELEASED = {
    "256x256_diffusion_uncond.pt": dict(image_size=256, num_channels=256, num_res_blocks=2, class_cond=False,
                                        num_head_channels=64),
    "256x256_diffusion.pt": dict(image_size=256, num_channels=256, num_res_blocks=2, class_cond=True,
                                 num_head_channels=64),
    "512x512_diffusion.pt": dict(image_size=512, num_channels=256, num_res_blocks=2, class_cond=True,
                                 num_head_channels=64),
    "128x128_diffusion.pt": dict(image_size=128, num_channels=256, num_res_blocks=2, class_cond=True,
                                 num_heads=4),
    "64x64_diffusion.pt": dict(image_size=64, num_channels=192, num_res_blocks=3, class_cond=True,
                               num_head_channels=64, use_new_attention_order=True),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_layouts_on_meta_device(name):
    flags = dict(attention_resolutions="32,16,8", learn_sigma=True, resblock_updown=True,
                 use_scale_shift_norm=True, **RELEASED[name])
    with torch.device("meta"):
        theirs = create_model(**flags)
        sd = theirs.state_dict()
        cfg = config_from_state_dict(sd)
        ours = UNetModel(cfg)
    assert shapes(ours.state_dict()) == shapes(sd)
    assert cfg.image_size == flags["image_size"]
    assert cfg.attention_ds == tuple(sorted(flags["image_size"] // r for r in (32, 16, 8)))
    assert cfg.num_classes == (1000 if flags["class_cond"] else None)
    assert cfg.learn_sigma and cfg.use_scale_shift_norm and cfg.resblock_updown
    # Attention heads are not in the weights; the known releases must still come out right.
    ours_attn = [m for m in ours.modules() if type(m).__name__ == "AttentionBlock"]
    theirs_attn = [m for m in theirs.modules() if type(m).__name__ == "AttentionBlock"]
    assert [m.num_heads for m in ours_attn] == [m.num_heads for m in theirs_attn]
    assert cfg.use_new_attention_order == flags.get("use_new_attention_order", False)


def test_256_uncond_matches_published_parameter_count():
    with torch.device("meta"):
        model = UNetModel(UNetConfig())  # the defaults are the 256x256 unconditional model
    assert sum(p.numel() for p in model.parameters()) == 552_814_086


# --- DiffusionModel --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    unet = UNetModel(tiny_unet_config())
    unet.load_state_dict(tiny_unet_state_dict(0))
    return DiffusionModel(unet)


def test_diffusion_model_is_frozen_and_describes_itself(tiny):
    assert not tiny.training and not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training
    assert (tiny.image_size, tiny.learn_sigma, tiny.num_classes) == (32, True, None)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    tiny(x, torch.tensor([3.0, 4.0]))[:, :3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffusion_model_accepts_other_sizes_and_scalar_timestep(tiny):
    x = torch.randn(1, 3, 24, 40)  # multiples of 4 for a 3-level model
    out = tiny(x, 10.0)
    assert out.shape == (1, 6, 24, 40)


@pytest.mark.parametrize("shape, words", [
    ((1, 3, 30, 32), ["30", "multiples of 4"]),
    ((1, 4, 32, 32), ["3-channel"]),
    ((3, 32, 32), ["[batch, 3, height, width]"]),
])
def test_diffusion_model_rejects_bad_images(tiny, shape, words):
    with pytest.raises(InputError) as e:
        tiny(torch.randn(shape), torch.tensor([1.0]))
    for w in words:
        assert w in str(e.value)


def test_diffusion_model_rejects_bad_labels_and_timesteps(tiny):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(InputError, match="unconditional"):
        tiny(x, torch.tensor([1.0, 2.0]), torch.tensor([1, 2]))
    with pytest.raises(InputError, match="one per image"):
        tiny(x, torch.tensor([1.0, 2.0, 3.0]))
    cond = DiffusionModel(UNetModel(tiny_unet_config(class_cond=True)))
    with pytest.raises(InputError, match="0..999"):
        cond(x, torch.tensor([1.0, 2.0]), torch.tensor([3, 1000]))
    with pytest.raises(InputError, match="integers"):
        cond(x, torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0]))
